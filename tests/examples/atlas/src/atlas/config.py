"""Settings, read from the environment when the app starts."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import make_url

__all__ = ["Settings", "configure_logging", "psycopg2_url"]


@dataclass(frozen=True)
class Settings:
    """Everything atlas needs to run a command."""

    database_url: str
    anthropic_api_key: str | None
    #: ``None``: the SDK's default (it reads ANTHROPIC_BASE_URL itself too).
    anthropic_base_url: str | None = None
    claude_model: str = "claude-sonnet-4-6"
    discovery_max_tokens: int = 8000
    masterplan_max_tokens: int = 64000
    #: Seconds for one Claude call; a whole 120-task plan in one call takes minutes.
    llm_timeout_s: float = 600.0
    llm_max_retries: int = 2
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        database_url = env.get("ATLAS_DATABASE_URL")
        if not database_url:
            raise RuntimeError("ATLAS_DATABASE_URL is not set")
        return cls(
            database_url=database_url,
            anthropic_api_key=env.get("ANTHROPIC_API_KEY"),
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
            claude_model=env.get("ATLAS_CLAUDE_MODEL", cls.claude_model),
            log_level=env.get("ATLAS_LOG_LEVEL", cls.log_level),
        )


def psycopg2_url(url: str) -> str:
    """The URL SQLAlchemy needs for psycopg2: a plain ``postgresql://`` URL gets the driver name."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def configure_logging(level: str) -> None:
    """Atlas logs at ``level``; a process that has not configured logging gets a console handler."""
    logging.getLogger("atlas").setLevel(level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
