"""Bounded retries of transient failures, every attempt recorded.

What counts as transient is decided here only: for LLM calls a rate limit, an overloaded
API, a server error, a timeout or a connection failure; for the database a connection
that could not be made or was dropped, and a serialization failure (SQLSTATE 40001) or
deadlock (40P01). Everything else fails at once. The policy (attempts, backoff, jitter,
the longest ``retry-after`` worth waiting for) is :class:`harness.config.Retries`.

Each attempt becomes an :class:`Attempt` handed to an observer (the flow logs it with
:func:`log_attempt`), so a log can show how many attempts a call took, how long it waited
and what they cost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from harness.config import RETRIES, Retries
from harness.redaction import redact_text

__all__ = [
    "Attempt",
    "backoff_delay",
    "is_transient_db_error",
    "is_transient_llm_error",
    "log_attempt",
    "retry_after_seconds",
    "retry_async",
]

T = TypeVar("T")

#: Texts of connection errors that no retry will fix (wrong password, no such database, ...).
_PERMANENT_CONNECT_ERRORS = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
)
#: SQLSTATEs worth another attempt: serialization failure, deadlock; class 08 is connection trouble.
#: Serialization failure, deadlock, and the server shutting down or restarting under the transaction.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03"}


@dataclass(frozen=True)
class Attempt:
    """One attempt at a call: what happened, how long the flow waited before the next one, what it cost."""

    #: Probe point of the call (``"masterplan.batch-2"``).
    point: str
    #: ``"llm"`` or ``"persist"``.
    stage: str
    #: 1 for the first attempt.
    number: int
    #: ``"ok"``, ``"retry"`` (failed, another attempt follows) or ``"gave_up"`` (failed, no more attempts).
    outcome: str
    #: Seconds waited after this attempt before the next one (0 when none follows).
    wait_s: float = 0.0
    error_type: str | None = None
    error: str | None = None
    #: The server's ``retry-after``, in seconds, when it sent one.
    retry_after_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "stage": self.stage,
            "number": self.number,
            "outcome": self.outcome,
            "wait_s": round(self.wait_s, 3),
            "error_type": self.error_type,
            "error": self.error,
            "retry_after_s": self.retry_after_s,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }


def log_attempt(attempt: Attempt) -> None:
    """Log one attempt: ``call_attempt`` (info when it failed and another follows, debug when it answered)."""
    from harness.logs import get_logger

    log = get_logger("harness.flow")
    fields = {key: value for key, value in attempt.to_dict().items() if value is not None}
    if attempt.outcome == "ok":
        log.debug("call_attempt", **fields)
    else:
        log.info("call_attempt", **fields)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not other for other in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_transient_llm_error(exc: BaseException) -> bool:
    """A rate limit, overload, server error, timeout or connection failure of an LLM SDK."""
    import anthropic
    import openai

    # A replayed cassette that lacks the request surfaces as a connection error: retrying cannot help.
    if any(type(e).__name__ == "CannotOverwriteExistingCassetteException" for e in _chain(exc)):
        return False
    transient: tuple[type[BaseException], ...] = (
        anthropic.RateLimitError,
        anthropic.InternalServerError,
        anthropic.APITimeoutError,
        anthropic.APIConnectionError,
        openai.RateLimitError,
        openai.InternalServerError,
        openai.APITimeoutError,
        openai.APIConnectionError,
    )
    if isinstance(exc, transient):  # OverloadedError (529) is an InternalServerError
        return True
    return isinstance(exc, anthropic.APIStatusError) and getattr(exc, "status_code", None) == 529


def is_transient_db_error(exc: BaseException) -> bool:
    """A dropped or refused connection, a serialization failure or a deadlock — not bad credentials."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _TRANSIENT_SQLSTATES or (sqlstate or "").startswith("08"):
        return True
    if exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError) and sqlstate is None:
        text = str(exc.orig).lower()
        return not any(marker in text for marker in _PERMANENT_CONNECT_ERRORS)
    return False


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait a failed response asks for (``retry-after-ms`` or ``retry-after``), if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_delay(policy: Retries, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """The jittered exponential wait after failed attempt ``attempt`` (from 1)."""
    full = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return full * (1 - policy.jitter * rand())


def _usage(result: Any) -> dict[str, Any]:
    return {
        "input_tokens": getattr(result, "input_tokens", None),
        "output_tokens": getattr(result, "output_tokens", None),
        "cost_usd": getattr(result, "cost_usd", None),
    }


def _decide(
    exc: BaseException, number: int, policy: Retries, transient: Callable[[BaseException], bool]
) -> tuple[bool, float, float | None]:
    """Whether to try again after ``exc``, how long to wait first, and the server's retry-after."""
    retry_after = retry_after_seconds(exc)
    if not transient(exc) or number >= policy.attempts:
        return False, 0.0, retry_after
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return False, 0.0, retry_after  # longer than we are willing to wait: fail now, say why
        return True, retry_after, retry_after
    return True, backoff_delay(policy, number), None


def _failed(point: str, stage: str, number: int, exc: BaseException, again: bool, wait: float, ra: float | None):
    return Attempt(
        point=point,
        stage=stage,
        number=number,
        outcome="retry" if again else "gave_up",
        wait_s=wait,
        error_type=type(exc).__name__,
        error=redact_text(str(exc))[:300],
        retry_after_s=ra,
    )


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    point: str,
    stage: str,
    policy: Retries = RETRIES,
    transient: Callable[[BaseException], bool] = is_transient_llm_error,
    observe: Callable[[Attempt], None] | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Await ``call()`` until it succeeds, fails permanently, or runs out of attempts; the last error is raised."""
    number = 0
    while True:
        number += 1
        try:
            result = await call()
        except Exception as exc:
            again, wait, retry_after = _decide(exc, number, policy, transient)
            if observe is not None:
                observe(_failed(point, stage, number, exc, again, wait, retry_after))
            if not again:
                raise
            await sleep(wait)
            continue
        if observe is not None:
            observe(Attempt(point=point, stage=stage, number=number, outcome="ok", **_usage(result)))
        return result
