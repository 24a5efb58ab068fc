"""Redaction: the one place that decides what is secret and how it is hidden.

Two nets, both always on:

* *known* secrets — values registered with :func:`register_secret` (API keys and
  database passwords read from settings) are replaced wherever they appear;
* *secret-shaped* text — API-key shapes, bearer tokens, passwords in URLs and DSNs —
  is replaced even when nobody registered it.

Reports, logs, cassettes and console output all pass through here.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "IDENTIFIER_PATTERNS",
    "REDACTED",
    "SECRET_PATTERNS",
    "find_secrets",
    "mask",
    "redact_identifiers",
    "redact_text",
    "redact_url",
    "redact_value",
    "register_secret",
]

REDACTED = "***"

#: Shapes of secrets, each with the group that holds the secret itself.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Not inside a word: "task-management-service" or "desk-booking-system" is not a key.
    ("anthropic-key", re.compile(r"(?<![A-Za-z0-9])(sk-ant-[A-Za-z0-9_\-]{8,})")),
    ("openai-key", re.compile(r"(?<![A-Za-z0-9])(sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{16,})")),
    ("bearer-token", re.compile(r"(?i)bearer\s+([A-Za-z0-9_\-\.=:+/]{8,})")),
    ("url-password", re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:([^@\s/]+)@")),
    ("dsn-password", re.compile(r"(?i)\bpassword\s*=\s*'?([^\s']+)")),
)

#: Identifiers that are not secrets but name an account or a request (kept out of cassettes).
IDENTIFIER_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("request-id", re.compile(r"(?<![A-Za-z0-9])req_([A-Za-z0-9]{12,})")),
    ("organization-id", re.compile(r"(?<![A-Za-z0-9])org-([A-Za-z0-9]{12,})")),
    ("project-id", re.compile(r"(?<![A-Za-z0-9])proj_([A-Za-z0-9]{12,})")),
)

_known: set[str] = set()
_known_lock = threading.Lock()
#: Registered values shorter than this are not redacted verbatim (they would match noise).
_MIN_KNOWN_LENGTH = 6


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is redacted wherever it later appears."""
    if value and len(value) >= _MIN_KNOWN_LENGTH:
        with _known_lock:
            _known.add(value)


def _known_secrets() -> list[str]:
    with _known_lock:
        return sorted(_known, key=len, reverse=True)


def redact_text(text: str) -> str:
    """``text`` with every known and secret-shaped value replaced by ``***``."""
    for secret in _known_secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    for _name, pattern in SECRET_PATTERNS:
        text = pattern.sub(_replace_group_one, text)
    return text


def redact_identifiers(text: str) -> str:
    """``text`` with request, organization and project ids replaced (their prefix kept: ``req_***``)."""
    for _name, pattern in IDENTIFIER_PATTERNS:
        text = pattern.sub(_replace_group_one, text)
    return text


def _replace_group_one(match: re.Match[str]) -> str:
    start, end = match.span(1)
    whole_start = match.start(0)
    whole = match.group(0)
    if match.group(1) == REDACTED:
        return whole
    return whole[: start - whole_start] + REDACTED + whole[end - whole_start :]


def redact_value(value: Any) -> Any:
    """A copy of ``value`` (str, mapping, sequence, scalar) with secrets redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(item) for item in value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact_text(str(value))


def redact_url(url: str) -> str:
    """A URL with its password replaced; the rest (user, host, database) kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None:
        return redact_text(url)
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return redact_text(urlunsplit(parts._replace(netloc=f"{userinfo}:{REDACTED}@{netloc[1]}")))


def mask(secret: str | None) -> str:
    """How a secret is shown to a person: its shape, never its value."""
    if not secret:
        return "(not set)"
    prefix = ""
    for candidate in ("sk-ant-", "sk-proj-", "sk-"):
        if secret.startswith(candidate):
            prefix = candidate
            break
    return f"{prefix}{REDACTED} ({len(secret)} chars)"


def find_secrets(text: str) -> list[tuple[str, int]]:
    """Secret-shaped or known values still present in ``text``: (kind, offset) pairs."""
    hits: list[tuple[str, int]] = []
    for secret in _known_secrets():
        start = text.find(secret)
        if start >= 0:
            hits.append(("known-secret", start))
    for name, pattern in SECRET_PATTERNS:
        for match in pattern.finditer(text):
            if match.group(1) != REDACTED:
                hits.append((name, match.start(1)))
    return sorted(hits, key=lambda hit: hit[1])
