"""The timeline: what the watchers saw while one flow ran, in the order it happened.

The watchers (:mod:`harness.observe.http`, :mod:`harness.observe.orm`,
:mod:`harness.observe.points`) only *record*; nothing is judged while the application runs.
When the flow has returned (or raised), the probes read the timeline and judge it — so the
application runs exactly as it would in production, and the first failing stage is the
earliest failing event, whatever the application did afterwards.

::

    Event                       (seq: position in the run, at: perf_counter)
    ├── LLMExchange             one HTTP request to an LLM API and what came back
    ├── UnitOpened              a unit of work began (a Session, or a Connection outside one)
    ├── RowsWritten             INSERT/UPDATE/DELETE rows sent on a unit's connection
    ├── UntrackedWrite          a write whose rows cannot be known (raw SQL text)
    ├── UnitCommitted           a unit's transaction committed: its pending rows are durable
    ├── UnitRolledBack          a unit's transaction rolled back (with the exception in flight, if any)
    ├── UnitClosed              a unit ended; rows flushed and never committed are listed
    ├── PointCalled             one call of an application function named in ``points``
    ├── LoopStalled             the asyncio loop stood still longer than the threshold
    └── FlowEnded               the flow callable returned or raised

Every event is a plain dataclass; what is secret never enters one (headers are filtered,
bodies are kept only for LLM endpoints, URLs lose their passwords). Exceptions are kept as
:class:`ExceptionInfo` with the live object beside it for classification; the live object
is never serialised.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

__all__ = [
    "CodeLocation",
    "Event",
    "ExceptionInfo",
    "FlowEnded",
    "LLMExchange",
    "LoopStalled",
    "PointCalled",
    "RowWrite",
    "RowsWritten",
    "Timeline",
    "UnitClosed",
    "UnitCommitted",
    "UnitOpened",
    "UnitRolledBack",
    "UntrackedWrite",
]


@dataclass(frozen=True)
class CodeLocation:
    """A line of the application's own code: ``services/discovery_agent.py:205`` in ``_parse``."""

    #: Path relative to the application's root (the folder its packages live in).
    file: str
    line: int
    function: str
    #: The source line, stripped (``None`` where the source cannot be read).
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "function": self.function, "code": self.code}


@dataclass(frozen=True)
class ExceptionInfo:
    """An exception the application raised, caught or swallowed, as the report shows it."""

    type: str
    #: ``str(exc)``, redacted and cut to a readable length.
    message: str
    #: Innermost frame of the application's own code in its traceback (``None``: none of its code).
    location: CodeLocation | None
    #: The live exception, for classifiers; never serialised.
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.type}: {self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "location": self.location.to_dict() if self.location else None,
        }


@dataclass
class Event:
    """Something a watcher saw; ``seq`` orders events of one run, ``at`` is ``time.perf_counter()``."""

    seq: int = field(default=-1, kw_only=True)
    at: float = field(default_factory=time.perf_counter, kw_only=True)


# -- LLM traffic -----------------------------------------------------------------------------


@dataclass
class LLMExchange(Event):
    """One HTTP exchange with an LLM API, as it crossed the wire (any SDK generation, any transport).

    Added to the timeline when the request is sent and completed in place as the answer arrives
    (a streamed answer when the application has read it to the end or closed it). Fields below
    ``status`` stay ``None`` until known.
    """

    #: ``anthropic``, ``openai`` or ``unknown``.
    provider: str
    #: ``messages`` (Anthropic), ``chat`` / ``responses`` (OpenAI), ``embeddings``, or the last path segment.
    api: str
    method: str
    #: The URL without credentials or query secrets.
    url: str
    #: The decoded JSON request body (``None`` when not JSON).
    request: Any
    #: Digest of the canonical request body: the same request sent again (a retry) has the same digest.
    request_digest: str
    model: str | None
    max_tokens: int | None
    #: The request asked for a stream (``"stream": true``).
    streamed: bool
    #: The application's line that made the call (innermost frame of its code on the stack).
    caller: CodeLocation | None = None
    #: ``httpx`` or ``httpx2``; ``sync`` or ``async``.
    transport: str = ""
    #: The call ran in a thread that was running an asyncio loop (a sync call blocking it).
    blocking_loop: bool = False

    status: int | None = None
    #: Response headers worth keeping: ``retry-after`` (and OpenAI's ``retry-after-ms``), ``request-id``,
    #: ``x-request-id``, ``content-type``.
    headers: dict[str, str] = field(default_factory=dict)
    #: The answer's text (text blocks / message content joined); partial for a cut stream.
    text: str | None = None
    #: Characters of answer text received so far: grows while a stream is read (``text`` is set at its end).
    received_chars: int = 0
    #: As the API said it: ``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``; ``stop``, ``length``;
    #: Responses: ``completed``, or the reason it is ``incomplete`` (``max_output_tokens``).
    stop_reason: str | None = None
    #: Every usage field the API sent (cache fields included), merged across stream events.
    usage: dict[str, Any] = field(default_factory=dict)
    #: The model the API says answered.
    answered_model: str | None = None
    #: ``error.type`` and ``error.message`` of an error body or of an SSE ``error`` event.
    api_error_type: str | None = None
    api_error_message: str | None = None
    #: The response body decoded as the API's JSON (or the stream's events) without complaint.
    body_is_json: bool | None = None
    #: First characters of a body that is not the API's JSON (an HTML error page, a truncated body).
    body_head: str | None = None
    #: A stream: an ``error`` event arrived.
    stream_error: bool = False
    #: The exchange reached its end: a non-stream body fully read, or a stream's ``message_stop`` / ``[DONE]``.
    complete: bool = False
    #: The transport failed (connection refused, timeout, a cassette without this request, a cut body).
    error: ExceptionInfo | None = None
    #: Seconds from sending the request to the end of the answer (or the error).
    latency_s: float | None = None
    #: Embeddings: how many vectors came back.
    vectors: int | None = None
    #: The watcher itself failed while recording this exchange (the application's call was unaffected).
    watch_error: str | None = None

    @property
    def answered(self) -> bool:
        """A 2xx answer with no transport error and no stream error event."""
        return self.error is None and self.status is not None and 200 <= self.status < 300 and not self.stream_error

    @property
    def truncated(self) -> bool:
        """The answer stopped at the token limit (``max_tokens`` / ``length`` / Responses' ``max_output_tokens``)."""
        return self.stop_reason in ("max_tokens", "length", "max_output_tokens")

    @property
    def output_tokens(self) -> int | None:
        value = self.usage.get("output_tokens", self.usage.get("completion_tokens"))
        return value if isinstance(value, int) else None

    @property
    def input_tokens(self) -> int | None:
        value = self.usage.get("input_tokens", self.usage.get("prompt_tokens"))
        return value if isinstance(value, int) else None


# -- database writes -------------------------------------------------------------------------

UnitKind = Literal["session", "connection"]


@dataclass(frozen=True)
class RowWrite:
    """One row an INSERT, UPDATE or DELETE touched, as the application sent it."""

    #: ``Table.fullname``: ``schema.name`` when the model names a schema, else ``name``.
    table: str
    op: Literal["insert", "update", "delete"]
    #: Primary-key values in the table's primary-key column order; ``None`` when they cannot be known.
    key: tuple[Any, ...] | None
    #: Column **name** → value as the application sent it (defaults computed client-side included).
    values: Mapping[str, Any] = field(default_factory=dict)
    #: For an UPDATE or DELETE whose rows are not known by key: its WHERE clause, as SQL.
    where: str | None = None


@dataclass
class UnitOpened(Event):
    """A unit of work began: a Session's first transaction, or a Connection transaction outside any Session."""

    unit: str
    kind: UnitKind
    #: Where the application opened it (created the Session / began the Connection).
    location: CodeLocation | None
    #: The database it writes to, password removed.
    database_url: str | None = None


@dataclass
class RowsWritten(Event):
    """Rows sent to the database on a unit's connection; pending until the unit commits."""

    unit: str
    writes: tuple[RowWrite, ...]
    location: CodeLocation | None
    #: ``flush`` (the ORM's unit of work) or ``execute`` (a Core or bulk statement).
    via: Literal["flush", "execute"] = "execute"


@dataclass
class UntrackedWrite(Event):
    """A write whose rows cannot be known from outside (raw SQL text): reported, never guessed."""

    unit: str
    #: The statement's first characters, redacted.
    sql: str
    #: Tables it names that belong to the application's metadata (best effort).
    tables: tuple[str, ...]
    location: CodeLocation | None


@dataclass
class UnitCommitted(Event):
    """A unit's transaction committed; ``writes`` became durable with it (net of rolled-back savepoints)."""

    unit: str
    writes: tuple[RowWrite, ...]
    location: CodeLocation | None
    #: 1 for the unit's first commit, 2 for its second, ...
    number: int = 1


@dataclass
class UnitRolledBack(Event):
    """A unit's transaction rolled back and ``discarded`` its pending writes."""

    unit: str
    discarded: tuple[RowWrite, ...]
    location: CodeLocation | None
    #: The exception being handled when the rollback ran (``sys.exc_info()``), if any.
    error: ExceptionInfo | None = None
    #: Only a savepoint (``begin_nested``) was rolled back: its writes are discarded, the unit goes on.
    savepoint: bool = False


@dataclass
class UnitClosed(Event):
    """A unit ended; ``uncommitted`` were flushed and neither committed nor rolled back explicitly."""

    unit: str
    uncommitted: tuple[RowWrite, ...]
    location: CodeLocation | None


# -- the application's own functions ---------------------------------------------------------


@dataclass
class PointCalled(Event):
    """One call of a function named in ``[tool.masterplan-harness.points]`` (completed in place on return)."""

    #: ``llm``, ``parse``, ``persist`` or ``load``.
    stage: str
    #: ``module:Qualname`` as configured.
    name: str
    #: Where the function is defined.
    defined_at: CodeLocation | None
    #: A call nested in another point call has its parent's ``seq``.
    parent: int | None = None
    returned: bool = False
    #: What it returned, for the checks that need it (an ORM object of a ``load`` point, ``None``...).
    result: Any = field(default=None, compare=False, repr=False)
    error: ExceptionInfo | None = None
    ended_at: float | None = None


@dataclass
class LoopStalled(Event):
    """The asyncio loop did not run for ``stalled_s`` seconds; ``blocking`` is where it was stuck."""

    stalled_s: float
    blocking: CodeLocation | None
    #: The whole stack of the blocked thread at the worst moment, innermost last (``file:line``).
    stack: tuple[str, ...] = ()


@dataclass
class FlowEnded(Event):
    """The flow callable came back: with a value, or with an exception."""

    returned: Any = field(default=None, compare=False, repr=False)
    error: ExceptionInfo | None = None


E = TypeVar("E", bound=Event)


class Timeline:
    """The events of one run, in order; safe to append to from any thread."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.started_at = time.perf_counter()
        #: The end of what the application printed and logged during the run (redacted).
        self.output = ""

    def add(self, event: E) -> E:
        """Append ``event``, giving it the next ``seq``; returns it (to be completed in place)."""
        with self._lock:
            event.seq = next(self._seq)
            self._events.append(event)
        return event

    def __iter__(self) -> Iterator[Event]:
        with self._lock:
            return iter(list(self._events))

    def __len__(self) -> int:
        return len(self._events)

    def of(self, kind: type[E]) -> list[E]:
        """Every event of one kind, in order."""
        return [event for event in self if isinstance(event, kind)]

    def ended(self) -> FlowEnded | None:
        """How the flow came back (``None`` while it runs)."""
        ended = self.of(FlowEnded)
        return ended[-1] if ended else None
