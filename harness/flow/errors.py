"""Errors the flow raises itself (SDK, database and contract errors pass through as they are).

::

    FlowError
    ├── MissingIdentity        the request has no user id or no session id
    ├── MissingCredentials     an LLM call was needed but its API key is not set
    ├── CommittedRowsMissing   rows this generation committed earlier are gone
    ├── DiscoveryNotFound      a discovery id that is not in the database
    ├── LLMTruncated           the answer stopped before it was complete
    └── NonJSONResponse        the API answered 200 with something that is not its JSON
"""

from __future__ import annotations

__all__ = [
    "CommittedRowsMissing",
    "DiscoveryNotFound",
    "FlowError",
    "LLMTruncated",
    "MissingCredentials",
    "MissingIdentity",
    "NonJSONResponse",
]


class FlowError(Exception):
    """Base of the errors the flow raises itself."""


class MissingIdentity(FlowError):
    """The chat request carries no user id or no session id."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"the request has no {missing}")
        self.missing = missing


class DiscoveryNotFound(FlowError):
    """The discovery to build a plan from is not in the database."""

    def __init__(self, discovery_id: object) -> None:
        super().__init__(f"discovery not found: {discovery_id}")
        self.discovery_id = discovery_id


class LLMTruncated(FlowError):
    """The LLM's answer ended early (``max_tokens``, or a stream cut with no stop reason)."""

    def __init__(self, point: str, stop_reason: str | None, output_tokens: int | None) -> None:
        why = "no stop reason (stream cut)" if stop_reason is None else f"stop_reason={stop_reason}"
        super().__init__(f"{point} answer truncated: {why}")
        self.point = point
        self.stop_reason = stop_reason
        self.output_tokens = output_tokens


class NonJSONResponse(FlowError):
    """The API answered with a body that is not its JSON (an HTML error page from a proxy, say)."""

    def __init__(self, body: str) -> None:
        super().__init__(f"the API answered with a non-JSON body ({len(body)} chars)")
        self.body_chars = len(body)
        self.head = body[:120]


class MissingCredentials(FlowError):
    """An LLM call is needed but its API key is not configured."""

    def __init__(self, variable: str) -> None:
        super().__init__(f"{variable} is not set")
        self.variable = variable


class CommittedRowsMissing(FlowError):
    """Rows committed earlier in this generation are no longer there.

    Seen when a server that runs with ``synchronous_commit = off`` crashes: it may lose
    transactions it had already reported committed.
    """

    def __init__(self, masterplan_id: object, what: str) -> None:
        super().__init__(
            f"{what} of masterplan {masterplan_id}, committed earlier, is gone: the database lost a committed "
            "transaction (a crash with synchronous_commit=off?) or something else deleted it"
        )
        self.masterplan_id = masterplan_id
        self.what = what
