"""Configuration from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import make_url

__all__ = ["Settings", "async_database_url"]


@dataclass(frozen=True)
class Settings:
    database_url: str
    anthropic_api_key: str | None
    anthropic_base_url: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    model: str = "claude-sonnet-4-6"
    embedding_model: str = "text-embedding-3-small"
    discovery_max_tokens: int = 4096
    skeleton_max_tokens: int = 8192
    batch_max_tokens: int = 16000
    #: Most tasks asked for in one call.
    batch_size: int = 50
    #: Seconds: a whole non-streamed answer, or the gap between two stream events.
    llm_timeout_s: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        if not env.get("BEACON_DB_URL"):
            raise RuntimeError("BEACON_DB_URL is not set")
        return cls(
            database_url=env["BEACON_DB_URL"],
            anthropic_api_key=env.get("ANTHROPIC_API_KEY"),
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
            model=env.get("BEACON_MODEL", cls.model),
            batch_size=int(env.get("BEACON_BATCH_SIZE", cls.batch_size)),
        )


def async_database_url(url: str) -> str:
    """``postgresql://`` as SQLAlchemy's async psycopg (3) URL."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)
