"""Stage auth: the request carries the identity the flow needs.

The identity comes from flags or the environment, or from a bearer token (an HS256 JWT,
as a socket.io handshake would carry) verified with a configured secret: ``sub`` (or
``user_id``) is the user id, ``sid`` (or ``session_id``) the session id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from probes.core import Check, Finding, Level, Stage

__all__ = [
    "AUTH001",
    "AUTH002",
    "AUTH003",
    "AUTH004",
    "AUTH900",
    "CHECKS",
    "IDENTITY_CHECKS",
    "Identity",
    "TokenInvalid",
    "check_identity",
    "classify",
    "identity_from_token",
]

AUTH001 = Check(
    "AUTH001",
    Stage.AUTH,
    Level.ERROR,
    "request carries a user id",
    "Authenticate the WebSocket before running /masterplan: without conversation.user_id the command raises "
    "ValueError and nothing is generated or saved. (Pass --user-id or --token to diagnose.)",
)
AUTH002 = Check(
    "AUTH002",
    Stage.AUTH,
    Level.ERROR,
    "request carries a session id",
    "Store the socket.io session id in conversation.metadata['sid']: discovery and masterplan rows are keyed by it "
    "and progress events are routed by it. (Pass --session-id or --token to diagnose.)",
)
AUTH003 = Check(
    "AUTH003",
    Stage.AUTH,
    Level.ERROR,
    "bearer token valid",
    "The token's signature, format or expiry is wrong: issue a fresh token, and check both sides use the same secret.",
)
AUTH004 = Check(
    "AUTH004",
    Stage.AUTH,
    Level.WARNING,
    "progress events reach the session",
    "The command ran without an event sink, so the user's session never hears of progress, the saved plan or a "
    "failure: pass the WebSocket manager (events=) to the chat commands.",
)
AUTH900 = Check(
    "AUTH900", Stage.AUTH, Level.ERROR, "request accepted", "The command rejected the request; see the evidence."
)

#: The checks of the request's identity, run before the flow starts.
#: The identity checks, token first: a token that does not verify leaves both ids undecided.
IDENTITY_CHECKS = (AUTH003, AUTH001, AUTH002)
CHECKS = (AUTH001, AUTH002, AUTH003, AUTH004, AUTH900)


@dataclass(frozen=True)
class Identity:
    """Who the command runs for."""

    user_id: str | None
    session_id: str | None
    #: Where the identity came from ("flags", "environment", "token"), for the report.
    source: str = "flags"


class TokenInvalid(ValueError):
    """A bearer token that does not verify; the message says why without showing the token."""


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def identity_from_token(token: str, secret: str, *, now: float | None = None) -> Identity:
    """Verify an HS256 JWT with ``secret`` and read the identity from its claims."""
    token = token.strip().removeprefix("Bearer ").strip()
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("not a JWT (expected three dot-separated parts)")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims: dict[str, Any] = json.loads(_b64decode(parts[1]))
        signature = _b64decode(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenInvalid("the token's parts are not base64url JSON") from None
    if header.get("alg") != "HS256":
        raise TokenInvalid(f"unsupported algorithm {header.get('alg')!r} (HS256 expected)")
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise TokenInvalid("the signature does not verify with the configured secret")
    expires = claims.get("exp")
    if isinstance(expires, (int, float)) and expires < (time.time() if now is None else now):
        raise TokenInvalid("the token has expired")
    user_id = claims.get("sub") or claims.get("user_id")
    session_id = claims.get("sid") or claims.get("session_id")
    return Identity(str(user_id) if user_id else None, str(session_id) if session_id else None, source="token")


def check_identity(identity: Identity, token_error: str | None = None) -> list[Finding]:
    """The token (if any) verified; user id and session id are both present."""
    if token_error is not None:
        return [AUTH003.finding(f"The bearer token is not valid: {token_error}.", reason=token_error)]
    findings = []
    if not identity.user_id:
        findings.append(
            AUTH001.finding(
                "The request has no user id: the command would raise ValueError before generating anything.",
                source=identity.source,
            )
        )
    if not identity.session_id:
        findings.append(
            AUTH002.finding(
                "The request has no session id: rows could not be keyed to the chat and progress would reach no one.",
                source=identity.source,
            )
        )
    return findings


def classify(exc: BaseException, point: str) -> Finding:
    """Explain an exception the command raised while checking who asked."""
    missing = getattr(exc, "missing", None)
    if missing == "user id":
        return AUTH001.finding("The command refused the request: it has no user id.", error=str(exc))
    if missing == "session id":
        return AUTH002.finding("The command refused the request: it has no session id.", error=str(exc))
    return AUTH900.finding(f"The command refused the request: {exc}", error_type=type(exc).__name__, error=str(exc))


# -- probes ----------------------------------------------------------------------------------

from probes.registry import Scope, probe  # noqa: E402  (registration sits beside the checks)


def _no_token(ctx: Any) -> str | None:
    return None if ctx.token_given or ctx.token_error is not None else "no bearer token given (--token)"


@probe(Stage.AUTH, emits=(AUTH003,), applies=_no_token)
def bearer_token(ctx: Any) -> list[Finding]:
    """The bearer token verifies (only when one was given: without one there is nothing to verify)."""
    return check_identity(ctx.identity, ctx.token_error)[:1] if ctx.token_error is not None else []


@probe(Stage.AUTH, emits=(AUTH001, AUTH002), requires=(AUTH003,), independent=True)
def request_identity(ctx: Any) -> list[Finding]:
    """The request carries a user id and a session id (each judged on its own)."""
    return check_identity(ctx.identity)


def _no_event_points(ctx: Any, ended: Any) -> str | None:
    if not ctx.target.config.points.get("events"):
        return "no events point configured ([tool.masterplan-harness.points] events)"
    return None


@probe(Stage.AUTH, scope=Scope.ENDED, emits=(AUTH004,), applies=_no_event_points, needs=("points.events",))
def progress_reaches_session(ctx: Any, ended: Any) -> list[Finding]:
    """Progress events reached the user's session: an ``events`` point was called during the flow."""
    from harness.observe.timeline import PointCalled

    emitted = [call for call in ctx.timeline.of(PointCalled) if call.stage == "events"]
    if emitted:
        return []
    return [
        AUTH004.finding(
            "The command ran without emitting a single progress event: the user's session never hears of progress.",
            point="chat",
            events_emitted=0,
            event_points=list(ctx.target.config.points.get("events", ())),
        )
    ]
