"""Stage env: the settings the flow needs are present, well-formed, and not placeholders.

Values are only ever shown masked (:func:`harness.redaction.mask`, :func:`redact_url`).
"""

from __future__ import annotations

import re
from typing import Any

from harness.config import Settings, sqlalchemy_url
from harness.redaction import mask, redact_url
from probes.core import Check, Finding, Level, Stage

__all__ = [
    "CHECKS",
    "ENV001",
    "ENV002",
    "ENV003",
    "ENV004",
    "ENV005",
    "ENV006",
    "ENV900",
    "check_settings",
    "classify",
    "looks_like_placeholder",
]

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
ENV005 = Check(
    "ENV005",
    Stage.ENV,
    Level.ERROR,
    "settings are not placeholders",
    "Replace the placeholder value (copied from an example .env?) with the real one for this environment.",
)
ENV006 = Check(
    "ENV006",
    Stage.ENV,
    Level.WARNING,
    "API keys have the provider's shape",
    "Anthropic keys start with sk-ant-, OpenAI keys with sk-: check the two keys are not swapped or truncated.",
)
ENV900 = Check(
    "ENV900", Stage.ENV, Level.ERROR, "env checks ran", "This is a bug in the harness; report it with the evidence."
)

CHECKS = (ENV001, ENV002, ENV003, ENV004, ENV005, ENV006, ENV900)

_PLACEHOLDER = re.compile(
    r"(?ix)^(?:"
    r"changeme|change[-_]me|todo|tbd|fixme|xxx+|\.\.\.|none|null|undefined|dummy|example|placeholder|secret"
    r"|your[-_ ].*|<.*>|\{\{.*\}\}|\$\{.*\}|sk-(?:ant-)?(?:x+|\.\.\.|your.*|replace.*)"
    r")$"
)
_PLACEHOLDER_URL_PARTS = ("user:password@", "username:password@", "<", "your-", "example.com", "changeme")


def looks_like_placeholder(value: str) -> bool:
    """True for values copied from templates rather than real settings."""
    return bool(_PLACEHOLDER.match(value.strip()))


def check_settings(settings: Settings, *, url_variable: str = "DATABASE_URL") -> list[Finding]:
    """Required settings present; the database URL parses as PostgreSQL; nothing is a placeholder."""
    findings: list[Finding] = []
    url = settings.database_url
    if url is None:
        findings.append(ENV001.finding(f"{url_variable} is not set.", variable=url_variable))
    else:
        try:
            sqlalchemy_url(url)
        except ValueError as exc:
            findings.append(
                ENV004.finding(
                    f"{url_variable} does not parse as a PostgreSQL URL: {exc}.",
                    variable=url_variable,
                    value=redact_url(url),
                )
            )
        else:
            if any(part in url for part in _PLACEHOLDER_URL_PARTS):
                findings.append(
                    ENV005.finding(
                        f"{url_variable} looks like a template value.", variable=url_variable, value=redact_url(url)
                    )
                )

    keys = (
        ("ANTHROPIC_API_KEY", settings.anthropic_api_key, ENV002, "sk-ant-"),
        ("OPENAI_API_KEY", settings.openai_api_key, ENV003, "sk-"),
    )
    for variable, value, missing_check, prefix in keys:
        if value is None:
            findings.append(missing_check.finding(f"{variable} is not set.", variable=variable))
        elif looks_like_placeholder(value):
            findings.append(
                ENV005.finding(f"{variable} looks like a template value.", variable=variable, value=mask(value))
            )
        elif not value.startswith(prefix) or (variable == "OPENAI_API_KEY" and value.startswith("sk-ant-")):
            findings.append(
                ENV006.finding(
                    f"{variable} does not start with {prefix}.", variable=variable, value=mask(value), expected=prefix
                )
            )
    return findings


def classify(exc: BaseException, point: str) -> Finding:
    """Any exception in this stage is a harness bug."""
    return ENV900.finding(f"The env checks crashed: {type(exc).__name__}: {exc}", error=type(exc).__name__)


# -- probes ----------------------------------------------------------------------------------

from probes.registry import probe  # noqa: E402  (registration sits beside the checks)


@probe(Stage.ENV, emits=CHECKS[:-1], independent=True)
def settings_present(ctx: Any) -> list[Finding]:
    """Required settings present, well formed and not placeholders (each judged on its own)."""
    return check_settings(ctx.settings, url_variable=ctx.target.config.database_url_env)
