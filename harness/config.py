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
    "GENERATION_MODES",
    "MODELS_ENV_PREFIX",
    "RETRIES",
    "TIMEOUTS",
    "EnvFileError",
    "Models",
    "Retries",
    "Settings",
    "Timeouts",
    "load_env_file",
    "models_from_env",
    "plain_url",
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
    #: An application's migrations applied from empty to a disposable database (DB012).
    migrations: float = 300.0


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
    #: ``"batched"`` (a skeleton, then tasks in batches, saved as they come) or ``"single"`` (one call).
    generation_mode: str = "batched"
    #: Most tasks asked for in one batch call (the seed's recommendation: at most 50).
    batch_max_tasks: int = 50
    #: Output-token ceiling of the skeleton call (batched mode).
    skeleton_max_tokens: int = 8192
    #: Output-token ceiling of one batch call (batched mode).
    batch_max_tokens: int = 16000


DEFAULT_MODELS = Models()

#: Prefix of the environment variables that override :class:`Models` fields (``MASTERPLAN_GENERATION_MODE``).
MODELS_ENV_PREFIX = "MASTERPLAN_"


def models_from_env(environ: Mapping[str, str], base: Models = DEFAULT_MODELS) -> Models:
    """``base`` with each field a ``MASTERPLAN_<FIELD>`` variable sets; ``ValueError`` naming a bad one."""
    from dataclasses import fields

    changes: dict[str, object] = {}
    for item in fields(Models):
        name = MODELS_ENV_PREFIX + item.name.upper()
        raw = environ.get(name)
        if raw is None or not raw.strip():
            continue
        if isinstance(getattr(base, item.name), int):
            try:
                changes[item.name] = int(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a whole number") from None
        else:
            changes[item.name] = raw.strip()
    mode = changes.get("generation_mode", base.generation_mode)
    if mode not in GENERATION_MODES:
        raise ValueError(f"{MODELS_ENV_PREFIX}GENERATION_MODE={mode!r}: expected one of {', '.join(GENERATION_MODES)}")
    return replace(base, **changes)


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
    #: The flow's own bounded retries of transient LLM and database errors.
    retries: Retries = field(default_factory=lambda: RETRIES)

    #: Environment variable for each setting above.
    ENV_NAMES = {
        "database_url": "DATABASE_URL",
        "anthropic_api_key": "ANTHROPIC_API_KEY",
        "openai_api_key": "OPENAI_API_KEY",
        "anthropic_base_url": "ANTHROPIC_BASE_URL",
        "openai_base_url": "OPENAI_BASE_URL",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, database_url_env: str = "DATABASE_URL") -> Settings:
        """Read settings from ``environ`` (default: the process environment); blanks count as missing.

        ``database_url_env`` is where the application under diagnosis reads its database URL.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for attr, name in cls.ENV_NAMES.items():
            if attr == "database_url":
                name = database_url_env
            raw = environ.get(name)
            values[attr] = raw.strip() if raw and raw.strip() else None
        values["models"] = models_from_env(environ)
        return cls(**values)  # type: ignore[arg-type]

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


def plain_url(database_url: str) -> str:
    """``database_url`` as an application reads it: ``postgresql://`` with no driver named (password kept)."""
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url(database_url)).set(drivername="postgresql").render_as_string(hide_password=False)


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


#: How a masterplan can be generated (see :attr:`Models.generation_mode`).
GENERATION_MODES = ("batched", "single")


@dataclass(frozen=True)
class Retries:
    """Bounded retries with exponential backoff and jitter: the one place they are configured.

    Attempt ``n`` (from 1) that fails transiently waits ``min(max_delay, base_delay * 2**(n-1))``
    scaled by a random factor in ``[1 - jitter, 1]`` — or the server's ``retry-after`` when it
    sends one. A ``retry-after`` longer than ``max_retry_after`` is not waited for: the call
    fails at once and says so.
    """

    #: Attempts per call, the first included (1 means no retry).
    attempts: int = 3
    #: Wait after the first failed attempt, in seconds.
    base_delay: float = 0.5
    #: Longest wait between two attempts, in seconds.
    max_delay: float = 8.0
    #: Fraction of each backoff wait that is random (0: none, 1: anywhere from 0 to the full wait).
    jitter: float = 0.5
    #: Longest ``retry-after`` the flow is willing to honour, in seconds.
    max_retry_after: float = 20.0


RETRIES = Retries()
