"""Stage auth: the request carries the identity the flow needs."""

from __future__ import annotations

from dataclasses import dataclass

from probes.core import Check, Finding, Level, Stage

__all__ = ["AUTH001", "AUTH002", "AUTH900", "CHECKS", "Identity", "check_identity", "classify"]

AUTH001 = Check(
    "AUTH001",
    Stage.AUTH,
    Level.ERROR,
    "request carries a user id",
    "Authenticate the WebSocket before running /masterplan: without conversation.user_id the command raises "
    "ValueError and nothing is generated or saved.",
)
AUTH002 = Check(
    "AUTH002",
    Stage.AUTH,
    Level.ERROR,
    "request carries a session id",
    "Store the socket.io session id in conversation.metadata['sid']: discovery and masterplan rows are keyed by it "
    "and progress events are routed by it.",
)
AUTH900 = Check(
    "AUTH900", Stage.AUTH, Level.ERROR, "request accepted", "The command rejected the request; see the evidence."
)

CHECKS = (AUTH001, AUTH002, AUTH900)


@dataclass(frozen=True)
class Identity:
    """Who the command runs for."""

    user_id: str | None
    session_id: str | None


def check_identity(identity: Identity) -> list[Finding]:
    """User id and session id are both present."""
    findings = []
    if not identity.user_id:
        findings.append(AUTH001.finding("The request has no user id.", user_id=None))
    if not identity.session_id:
        findings.append(AUTH002.finding("The request has no session id.", session_id=None))
    return findings


def classify(exc: BaseException, point: str) -> Finding:
    """Explain an exception the command raised while checking who asked."""
    missing = getattr(exc, "missing", None)
    if missing == "user id":
        return AUTH001.finding("The command refused the request: it has no user id.", error=str(exc))
    if missing == "session id":
        return AUTH002.finding("The command refused the request: it has no session id.", error=str(exc))
    return AUTH900.finding(f"The command refused the request: {exc}", error_type=type(exc).__name__, error=str(exc))
