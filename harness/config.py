"""Settings and timeouts: the one place where either is decided.

Settings come from the process environment (or a mapping standing in for it). Every
network operation in the project takes its bound from :data:`TIMEOUTS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

__all__ = [
    "DEFAULT_MODELS",
    "TIMEOUTS",
    "EnvFileError",
    "Models",
    "Settings",
    "Timeouts",
    "load_env_file",
    "sqlalchemy_url",
]


@dataclass(frozen=True)
class Timeouts:
    """Upper bounds, in seconds, for everything that waits on something else."""

    #: TCP/auth handshake with PostgreSQL (psycopg's minimum is 2 s).
    db_connect: float = 2.0
    #: ``statement_timeout`` for every query a probe runs.
    db_statement: float = 5.0
    #: Whole HTTP exchange with an LLM API (non-streaming) or between stream events.
    llm_request: float = 120.0
    #: Connecting to an LLM API.
    llm_connect: float = 10.0
    #: One probe's checks, end to end.
    probe: float = 30.0
    #: Starting a disposable PostgreSQL cluster until it accepts connections.
    postgres_start: float = 30.0
    #: Stopping a disposable PostgreSQL cluster before it is killed.
    postgres_stop: float = 10.0
    #: Asking a Docker engine whether it is there at all.
    docker_ping: float = 2.0
    #: The local recording server answering one request.
    wire_server: float = 10.0


TIMEOUTS = Timeouts()


@dataclass(frozen=True)
class Models:
    """Model names the flow asks for."""

    #: Anthropic model for discovery and masterplan generation.
    generation: str = "claude-sonnet-4-6"
    #: OpenAI model for example retrieval.
    embedding: str = "text-embedding-3-small"
    #: Output-token ceiling of the discovery call.
    discovery_max_tokens: int = 8192
    #: Output-token ceiling of a masterplan call.
    masterplan_max_tokens: int = 32000


DEFAULT_MODELS = Models()


@dataclass(frozen=True)
class Settings:
    """What the flow needs from its environment; every field may be missing."""

    database_url: str | None = None
    anthropic_api_key: str | None = None
    openai_api_key: str | None = None
    #: Base URLs of API-compatible servers; ``None`` means the vendors' own endpoints.
    anthropic_base_url: str | None = None
    openai_base_url: str | None = None
    models: Models = DEFAULT_MODELS
    timeouts: Timeouts = field(default=TIMEOUTS)
    #: Retries the SDKs make themselves; the harness wants every attempt visible, so 0.
    sdk_max_retries: int = 0

    #: Environment variable for each setting above.
    ENV_NAMES = {
        "database_url": "DATABASE_URL",
        "anthropic_api_key": "ANTHROPIC_API_KEY",
        "openai_api_key": "OPENAI_API_KEY",
        "anthropic_base_url": "ANTHROPIC_BASE_URL",
        "openai_base_url": "OPENAI_BASE_URL",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default: the process environment); blanks count as missing."""
        environ = os.environ if environ is None else environ
        values = {}
        for attr, name in cls.ENV_NAMES.items():
            raw = environ.get(name)
            values[attr] = raw.strip() if raw and raw.strip() else None
        return cls(**values)

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields replaced."""
        return replace(self, **changes)


#: Schemes users write in ``DATABASE_URL`` that all mean "PostgreSQL via psycopg 3" here.
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}


def sqlalchemy_url(database_url: str) -> str:
    """``DATABASE_URL`` in the form SQLAlchemy needs (psycopg 3); ``ValueError`` if it is not PostgreSQL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ValueError("not a URL of the form scheme://user:password@host:port/database") from None
    if url.drivername not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL (scheme {url.drivername!r})")
    if not url.database:
        raise ValueError("the URL names no database")
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class EnvFileError(ValueError):
    """An env file that cannot be read or parsed; the message names the file and line."""


def load_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of a dotenv-style file (comments, blank lines, ``export`` and quotes allowed).

    Precedence, decided here: values from the file override the process environment, because
    naming a file means "diagnose *that* environment".
    """
    from pathlib import Path

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvFileError(f"{path}: no such env file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvFileError(f"{path}: cannot be read ({type(exc).__name__})") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise EnvFileError(f"{path}:{number}: not a KEY=VALUE line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values
