"""Stage env: the settings the flow needs are present and well-formed."""

from __future__ import annotations

from harness.config import Settings, sqlalchemy_url
from harness.redaction import mask, redact_url
from probes.core import Check, Finding, Level, Stage

__all__ = ["CHECKS", "ENV001", "ENV002", "ENV003", "ENV004", "ENV900", "check_settings", "classify"]

ENV001 = Check(
    "ENV001",
    Stage.ENV,
    Level.ERROR,
    "DATABASE_URL is set",
    "Set DATABASE_URL to the PostgreSQL URL the application writes to, e.g. postgresql://user:pass@host:5432/db.",
)
ENV002 = Check(
    "ENV002",
    Stage.ENV,
    Level.ERROR,
    "ANTHROPIC_API_KEY is set",
    "Set ANTHROPIC_API_KEY; discovery and masterplan generation cannot call Claude without it.",
)
ENV003 = Check(
    "ENV003",
    Stage.ENV,
    Level.WARNING,
    "OPENAI_API_KEY is set",
    "Set OPENAI_API_KEY; without it example retrieval is skipped and plans are generated without examples.",
)
ENV004 = Check(
    "ENV004",
    Stage.ENV,
    Level.ERROR,
    "DATABASE_URL is a PostgreSQL URL",
    "Write DATABASE_URL as postgresql://user:password@host:port/database (postgresql+psycopg:// also works).",
)
ENV900 = Check(
    "ENV900", Stage.ENV, Level.ERROR, "env checks ran", "This is a bug in the harness; report it with the evidence."
)

CHECKS = (ENV001, ENV002, ENV003, ENV004, ENV900)


def check_settings(settings: Settings) -> list[Finding]:
    """Required settings present; DATABASE_URL parses as PostgreSQL. Values are shown masked."""
    findings: list[Finding] = []
    if settings.database_url is None:
        findings.append(ENV001.finding("DATABASE_URL is not set.", variable="DATABASE_URL"))
    else:
        try:
            sqlalchemy_url(settings.database_url)
        except Exception as exc:
            findings.append(
                ENV004.finding(
                    f"DATABASE_URL does not parse as a PostgreSQL URL: {exc}.",
                    variable="DATABASE_URL",
                    value=redact_url(settings.database_url),
                )
            )
    if settings.anthropic_api_key is None:
        findings.append(ENV002.finding("ANTHROPIC_API_KEY is not set.", variable="ANTHROPIC_API_KEY"))
    if settings.openai_api_key is None:
        findings.append(
            ENV003.finding("OPENAI_API_KEY is not set.", variable="OPENAI_API_KEY", value=mask(settings.openai_api_key))
        )
    return findings


def classify(exc: BaseException, point: str) -> Finding:
    """Any exception in this stage is a harness bug."""
    return ENV900.finding(f"The env checks crashed: {type(exc).__name__}: {exc}", error=type(exc).__name__)
