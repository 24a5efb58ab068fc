"""Stage env: the settings the flow needs are present, well-formed, and not placeholders.

Values are only ever shown masked (:func:`harness.redaction.mask`, :func:`redact_url`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.config import Settings, sqlalchemy_url
from harness.redaction import mask, redact_url
from probes.core import Check, Finding, Level, ProbeSkipped, Stage

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
    "database URL is set",
    "Set the application's database URL variable (DATABASE_URL, or the one database-url-env names) to the "
    "PostgreSQL URL it writes to, e.g. postgresql://user:pass@host:5432/db.",
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
    "database URL is a PostgreSQL URL",
    "Write the database URL as postgresql://user:password@host:port/database (postgresql+psycopg:// also works).",
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


#: Probe points of the env stage: one per setting, so each setting's checks are decided on their own.
DATABASE_URL_POINT, ANTHROPIC_KEY_POINT, OPENAI_KEY_POINT = "database-url", "anthropic-key", "openai-key"


@dataclass(frozen=True)
class _Key:
    """One API key setting: its variable, the check that it is set, the prefix real keys have."""

    variable: str
    attribute: str
    missing: Check
    prefix: str
    point: str

    def value(self, settings: Settings) -> str | None:
        return getattr(settings, self.attribute)

    def shape_problem(self, value: str) -> str | None:
        if not value.startswith(self.prefix) or (self.prefix == "sk-" and value.startswith("sk-ant-")):
            return f"{self.variable} does not start with {self.prefix}."
        return None


_KEYS = (
    _Key("ANTHROPIC_API_KEY", "anthropic_api_key", ENV002, "sk-ant-", ANTHROPIC_KEY_POINT),
    _Key("OPENAI_API_KEY", "openai_api_key", ENV003, "sk-", OPENAI_KEY_POINT),
)


def url_set(url: str | None, url_variable: str) -> list[Finding]:
    """ENV001: the database URL is set."""
    return [ENV001.finding(f"{url_variable} is not set.", variable=url_variable)] if url is None else []


def url_form(url: str, url_variable: str) -> list[Finding]:
    """ENV004: the database URL parses as a PostgreSQL URL."""
    try:
        sqlalchemy_url(url)
    except ValueError as exc:
        return [
            ENV004.finding(
                f"{url_variable} does not parse as a PostgreSQL URL: {exc}.", variable=url_variable, value=redact_url(url)
            )
        ]
    return []


def url_placeholder(url: str, url_variable: str) -> list[Finding]:
    """ENV005 for the database URL: not a template's value."""
    if any(part in url for part in _PLACEHOLDER_URL_PARTS):
        return [ENV005.finding(f"{url_variable} looks like a template value.", variable=url_variable, value=redact_url(url))]
    return []


def key_set(key: _Key, value: str | None) -> list[Finding]:
    """ENV002 / ENV003: the key is set."""
    return [key.missing.finding(f"{key.variable} is not set.", variable=key.variable)] if value is None else []


def key_placeholder(key: _Key, value: str) -> list[Finding]:
    """ENV005 for a key: not a template's value."""
    if looks_like_placeholder(value):
        return [ENV005.finding(f"{key.variable} looks like a template value.", variable=key.variable, value=mask(value))]
    return []


def key_shape(key: _Key, value: str) -> list[Finding]:
    """ENV006: a real (not placeholder) key has its provider's prefix."""
    problem = key.shape_problem(value)
    if problem is None:
        return []
    return [ENV006.finding(problem, variable=key.variable, value=mask(value), expected=key.prefix)]


def check_settings(settings: Settings, *, url_variable: str = "DATABASE_URL") -> list[Finding]:
    """Every env finding for ``settings``, each setting judged on its own (what the probes below decide, in one list).

    A check that does not apply to a setting (the URL's form when it is unset, a placeholder
    key's shape) gives no finding here; the probes record it as not applicable.
    """
    url = settings.database_url
    findings = url_set(url, url_variable)
    if url is not None:
        form = url_form(url, url_variable)
        findings += form or url_placeholder(url, url_variable)
    for key in _KEYS:
        value = key.value(settings)
        findings += key_set(key, value)
        if value is not None:
            placeholder = key_placeholder(key, value)
            findings += placeholder or key_shape(key, value)
    return findings


def classify(exc: BaseException, point: str) -> Finding:
    """Any exception in this stage is a harness bug."""
    return ENV900.finding(f"The env checks crashed: {type(exc).__name__}: {exc}", error=type(exc).__name__)


# -- probes ----------------------------------------------------------------------------------

from probes.registry import probe  # noqa: E402  (registration sits beside the checks)


def _url(ctx: Any) -> tuple[str | None, str]:
    return ctx.settings.database_url, ctx.target.config.database_url_env


def _url_unset(ctx: Any) -> str | None:
    url, variable = _url(ctx)
    return f"{variable} is not set" if url is None else None


@probe(Stage.ENV, emits=(ENV001,), point=DATABASE_URL_POINT)
def database_url_set(ctx: Any) -> list[Finding]:
    """The database URL is set."""
    return url_set(*_url(ctx))


@probe(Stage.ENV, emits=(ENV004,), point=DATABASE_URL_POINT, applies=_url_unset)
def database_url_form(ctx: Any) -> list[Finding]:
    """The database URL parses as a PostgreSQL URL."""
    url, variable = _url(ctx)
    return url_form(url or "", variable)


@probe(Stage.ENV, emits=(ENV005,), point=DATABASE_URL_POINT, applies=_url_unset, requires=(ENV004,))
def database_url_placeholder(ctx: Any) -> list[Finding]:
    """The database URL is not a template's value."""
    url, variable = _url(ctx)
    return url_placeholder(url or "", variable)


def _key_not_judged(ctx: Any, key: _Key, *, needs_value: bool = False, needs_real: bool = False) -> str | None:
    """Why a key's check is not decided in this run (``None``: it is); :class:`ProbeSkipped` under ``--llm off``.

    ``ctx.llm`` is the run's LLM mode: with ``off`` no call is made (skipped, by choice); with
    ``replay`` the answers come from a cassette and no key is used (not applicable).
    """
    mode = getattr(ctx, "llm", "full")
    if mode == "off":
        raise ProbeSkipped("--llm off: no LLM call is made, so no key is needed")
    if mode == "replay":
        return "answers are replayed from a cassette: no API key is used (--llm ping checks the keys)"
    value = key.value(ctx.settings)
    if needs_value and value is None:
        return f"{key.variable} is not set"
    if needs_real and value is not None and looks_like_placeholder(value):
        return f"{key.variable} is a placeholder: it has no shape to check"
    return None


def _register_key_probes(key: _Key) -> None:
    """ENV002/ENV003, ENV005 and ENV006 for one key, each decided at the key's own point."""

    def is_set(ctx: Any) -> list[Finding]:
        return key_set(key, key.value(ctx.settings))

    def not_placeholder(ctx: Any) -> list[Finding]:
        return key_placeholder(key, key.value(ctx.settings) or "")

    def has_shape(ctx: Any) -> list[Finding]:
        return key_shape(key, key.value(ctx.settings) or "")

    name = key.variable.lower()
    for function, check, needs, doc in (
        (is_set, key.missing, {}, "is set"),
        (not_placeholder, ENV005, {"needs_value": True}, "is not a placeholder"),
        (has_shape, ENV006, {"needs_value": True, "needs_real": True}, "has its provider's shape"),
    ):
        function.__qualname__ = f"{name}_{function.__name__}"
        function.__doc__ = f"{key.variable} {doc}."

        def applies(ctx: Any, needs: dict[str, bool] = needs) -> str | None:
            return _key_not_judged(ctx, key, **needs)

        probe(Stage.ENV, emits=(check,), point=key.point, applies=applies)(function)


for _key in _KEYS:
    _register_key_probes(_key)
