"""The LLM traffic watcher: every exchange with an LLM API, recorded from outside the application.

While an :class:`HttpWatch` is entered, ``send`` of ``httpx.Client``, ``httpx.AsyncClient``,
``httpx2.Client`` and ``httpx2.AsyncClient`` is patched at class level. Every SDK generation
sends through one of them (anthropic ≥ 1.17 and openai ≥ 2 through httpx2; anthropic 0.x and
openai 1.x through httpx), always as ``client.send(request, stream=...)``. ``send`` sits above
the transports, so vcrpy's cassettes (patched ``handle_request``) and respx's fault injection
(patched connection pools) keep working, and what they answer is observed too::

    client.send(request)                     ← patched here: an LLMExchange is added
      └── transport.handle_request           ← vcrpy replays here
            └── httpcore(2) pool             ← respx injects faults here

Only LLM endpoints are recorded (:func:`llm_endpoint`); anything else passes untouched.
An exchange is added to the timeline when the request is sent and completed in place: the
status and headers when they arrive, the body as the application reads it (the response's
byte stream is wrapped, so a streamed answer is parsed chunk by chunk, in bounded memory),
and the outcome when the body ends, is closed, or fails.

A call made with ``stream=False`` is sent with ``stream=True`` and then read exactly as
``send`` itself reads it (``read()``, closing the response if that fails), so even a body cut
in the middle of a plain JSON answer leaves its status, headers and first bytes on record.

A bug in this bookkeeping never breaks the application's call: it is swallowed and noted in
the exchange's ``watch_error``. The application's own exceptions propagate unchanged.

Not seen: Bedrock's and Vertex's URLs (they are not the endpoints above), bodies encoded as
``br`` or ``zstd`` (noted in ``watch_error``), and a client subclass whose own ``send`` never
calls the base class's.
"""

from __future__ import annotations

import asyncio
import codecs
import contextvars
import hashlib
import importlib
import importlib.util
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from harness.observe.code import AppCode, exception_info
from harness.observe.timeline import LLMExchange, Timeline
from harness.redaction import REDACTED, redact_text, redact_value
from harness.sdk import HTTP_LIBRARIES

__all__ = ["KEPT_HEADERS", "Endpoint", "HttpWatch", "llm_endpoint"]

#: Response headers an exchange keeps; every other header (cookies, organization ids) is dropped.
KEPT_HEADERS = ("content-type", "request-id", "retry-after", "retry-after-ms", "x-request-id")
#: A body that is not an event stream is buffered to be decoded at its end, up to this size.
_MAX_BODY_BYTES = 16 * 1024 * 1024
#: One SSE line may not grow beyond this (a stream that never ends its lines is not parsed further).
_MAX_LINE_CHARS = 4 * 1024 * 1024
#: Text deltas kept apart before they are joined (memory: one string, not thousands).
_TEXT_PARTS = 256
#: Characters of an unexpected body kept in ``body_head``.
_HEAD_CHARS = 300
#: Query parameters whose value is never kept in a URL (``?key=`` and friends).
_SECRET_QUERY_WORDS = ("key", "token", "secret", "password", "sig", "auth", "credential")

# Set while a watched ``send`` runs, so a send nested inside it (a second layer of our own
# patch, or a client that sends through another client) is not recorded twice.
_INSIDE_SEND: contextvars.ContextVar[bool] = contextvars.ContextVar("harness_inside_send", default=False)


@dataclass(frozen=True)
class Endpoint:
    """An LLM API endpoint the watcher records."""

    #: ``anthropic`` or ``openai``.
    provider: str
    #: ``messages``, ``chat``, ``responses`` or ``embeddings``.
    api: str


#: Path endings of the endpoints recorded (a gateway's prefix before them is fine).
_ENDPOINTS: tuple[tuple[str, Endpoint], ...] = (
    ("/v1/messages", Endpoint("anthropic", "messages")),
    ("/chat/completions", Endpoint("openai", "chat")),
    ("/responses", Endpoint("openai", "responses")),
    ("/embeddings", Endpoint("openai", "embeddings")),
)


def llm_endpoint(method: str, url: str) -> Endpoint | None:
    """The LLM endpoint a request goes to (``None``: not one the watcher records)."""
    if method.upper() != "POST":
        return None
    path = urlsplit(url).path.rstrip("/")
    for ending, endpoint in _ENDPOINTS:
        if path.endswith(ending):
            return endpoint
    return None


# -- what the exchange records ---------------------------------------------------------------


def _safe_url(url: str) -> str:
    """``url`` without user info and without the values of secret-looking query parameters."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (name, REDACTED if any(word in name.lower() for word in _SECRET_QUERY_WORDS) else value)
                for name, value in pairs
            ],
            safe="*",
        )
    return redact_text(urlunsplit(parts._replace(netloc=netloc, query=query)))


def _request_body(request: Any) -> tuple[Any, bytes | None]:
    """(decoded JSON body or ``None``, raw body bytes or ``None`` when it cannot be read without consuming it)."""
    try:
        raw = request.content
    except Exception:  # noqa: BLE001 - a streaming upload: reading it here would consume it
        return None, None
    if not raw:
        return None, b""
    if request.headers.get("content-encoding", "").lower() == "gzip":
        try:
            raw = zlib.decompress(raw, 16 + zlib.MAX_WBITS)
        except zlib.error:
            return None, raw
    try:
        return json.loads(raw), raw
    except ValueError:
        return None, raw


def _digest(body: Any, raw: bytes | None) -> str:
    """The same request sent twice has the same digest (JSON key order does not matter)."""
    if body is not None:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    else:
        canonical = redact_text((raw or b"").decode("utf-8", "replace")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _max_tokens(body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _head(text: str) -> str:
    return redact_text(text[:_HEAD_CHARS])


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- reading the answer ----------------------------------------------------------------------


class _Answer:
    """What the API answered, built from a whole JSON document or from stream events in order."""

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.saw_text = False
        #: Characters of text so far (what a progress line shows while a stream is read).
        self.chars = 0
        self.stop_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.stream_error = False
        self.stopped = False
        self.vectors: int | None = None
        #: A stream event or body that was not JSON: its first characters.
        self.bad_payload: str | None = None

    # -- pieces shared by documents and events ---------------------------------------------

    def _text(self, value: Any) -> None:
        if isinstance(value, str):
            parts = self.text_parts
            parts.append(value)
            self.saw_text = True
            self.chars += len(value)
            if len(parts) >= _TEXT_PARTS:  # thousands of small str objects cost more than the text itself
                self.text_parts = ["".join(parts)]

    def _usage(self, usage: Any) -> None:
        if isinstance(usage, Mapping):
            self.usage.update(usage)

    def _model(self, value: Any) -> None:
        if isinstance(value, str) and value:
            self.model = value

    def _error(self, error: Any) -> None:
        if isinstance(error, Mapping):
            kind = error.get("type") or error.get("code")
            self.error_type = str(kind) if kind is not None else None
            message = error.get("message")
            self.error_message = redact_text(str(message)) if message is not None else None

    # -- whole documents -------------------------------------------------------------------

    def document(self, doc: Any) -> bool:
        """Read a whole JSON body; ``False`` when it is not a shape any LLM API answers with."""
        if not isinstance(doc, Mapping):
            return False
        kind = doc.get("type")
        if kind == "error" or (isinstance(doc.get("error"), Mapping) and "choices" not in doc):
            self._error(doc.get("error"))
            return True
        if kind == "message":  # Anthropic Messages
            self._model(doc.get("model"))
            for block in doc.get("content") or ():
                if isinstance(block, Mapping) and block.get("type") == "text":
                    self._text(block.get("text"))
            self.stop_reason = doc.get("stop_reason")
            self._usage(doc.get("usage"))
            return True
        obj = doc.get("object")
        if obj == "list" and isinstance(doc.get("data"), list):  # OpenAI Embeddings
            self.vectors = len(doc["data"])
            self._model(doc.get("model"))
            self._usage(doc.get("usage"))
            return True
        if obj == "response":  # OpenAI Responses
            self._response(doc)
            return True
        if isinstance(doc.get("choices"), list):  # OpenAI Chat Completions
            self._model(doc.get("model"))
            choice = doc["choices"][0] if doc["choices"] else {}
            message = choice.get("message") if isinstance(choice, Mapping) else None
            if isinstance(message, Mapping):
                self._text(message.get("content"))
            if isinstance(choice, Mapping):
                self.stop_reason = choice.get("finish_reason")
            self._usage(doc.get("usage"))
            return True
        return False

    def _response(self, response: Mapping[str, Any]) -> None:
        """An OpenAI Responses object (a whole answer, or the last event of a stream)."""
        self._model(response.get("model"))
        self._usage(response.get("usage"))
        if not self.saw_text:
            for item in response.get("output") or ():
                if isinstance(item, Mapping) and item.get("type") == "message":
                    for part in item.get("content") or ():
                        if isinstance(part, Mapping) and part.get("type") == "output_text":
                            self._text(part.get("text"))
        details = response.get("incomplete_details")
        status = response.get("status")
        if isinstance(details, Mapping) and details.get("reason"):
            self.stop_reason = str(details["reason"])
        elif isinstance(status, str):
            self.stop_reason = status
        if isinstance(response.get("error"), Mapping):
            self._error(response["error"])

    # -- stream events ---------------------------------------------------------------------

    def event(self, name: str | None, payload: str) -> None:
        """One server-sent event: its ``event:`` name (``None`` when absent) and its ``data``."""
        if payload.strip() == "[DONE]":
            self.stopped = True
            return
        try:
            data = json.loads(payload)
        except ValueError:
            if self.bad_payload is None:
                self.bad_payload = _head(payload)
            return
        if not isinstance(data, Mapping):
            return
        kind = data.get("type") if isinstance(data.get("type"), str) else name
        handler = _EVENT_HANDLERS.get(kind or "")
        if handler is not None:
            handler(self, data)
        elif isinstance(data.get("choices"), list) or "usage" in data:  # an OpenAI chat chunk
            self._chat_chunk(data)
        elif isinstance(data.get("error"), Mapping):  # OpenAI's in-stream error has no event name
            self._stream_failed(data)

    def _message_start(self, data: Mapping[str, Any]) -> None:
        message = data.get("message")
        if isinstance(message, Mapping):
            self._model(message.get("model"))
            self._usage(message.get("usage"))

    def _block_start(self, data: Mapping[str, Any]) -> None:
        block = data.get("content_block")
        if isinstance(block, Mapping) and block.get("type") == "text":
            self._text(block.get("text"))

    def _block_delta(self, data: Mapping[str, Any]) -> None:
        delta = data.get("delta")
        if isinstance(delta, Mapping) and delta.get("type") == "text_delta":
            self._text(delta.get("text"))

    def _message_delta(self, data: Mapping[str, Any]) -> None:
        delta = data.get("delta")
        if isinstance(delta, Mapping) and "stop_reason" in delta:
            self.stop_reason = delta.get("stop_reason")
        self._usage(data.get("usage"))

    def _message_stop(self, data: Mapping[str, Any]) -> None:
        self.stopped = True

    def _stream_failed(self, data: Mapping[str, Any]) -> None:
        self.stream_error = True
        self._error(data.get("error") if isinstance(data.get("error"), Mapping) else data)

    def _chat_chunk(self, data: Mapping[str, Any]) -> None:
        self._model(data.get("model"))
        choices = data.get("choices") or ()
        for choice in choices:
            if isinstance(choice, Mapping) and choice.get("index", 0) == 0:
                delta = choice.get("delta")
                if isinstance(delta, Mapping):
                    self._text(delta.get("content"))
                if choice.get("finish_reason") is not None:
                    self.stop_reason = choice.get("finish_reason")
        self._usage(data.get("usage"))

    def _output_text_delta(self, data: Mapping[str, Any]) -> None:
        self._text(data.get("delta"))

    def _response_finished(self, data: Mapping[str, Any]) -> None:
        response = data.get("response")
        if isinstance(response, Mapping):
            self._response(response)
        if data.get("type") == "response.failed":
            self.stream_error = True
        else:
            self.stopped = True

    def _ignore(self, data: Mapping[str, Any]) -> None:
        pass

    @property
    def text(self) -> str | None:
        return "".join(self.text_parts) if self.saw_text else None


_EVENT_HANDLERS: dict[str, Callable[[_Answer, Mapping[str, Any]], None]] = {
    # Anthropic Messages
    "message_start": _Answer._message_start,
    "content_block_start": _Answer._block_start,
    "content_block_delta": _Answer._block_delta,
    "content_block_stop": _Answer._ignore,
    "message_delta": _Answer._message_delta,
    "message_stop": _Answer._message_stop,
    "ping": _Answer._ignore,
    "error": _Answer._stream_failed,
    # OpenAI Responses
    "response.output_text.delta": _Answer._output_text_delta,
    "response.completed": _Answer._response_finished,
    "response.incomplete": _Answer._response_finished,
    "response.failed": _Answer._response_finished,
}


class _EventStream:
    """An incremental ``text/event-stream`` parser: text in, ``(event name, data)`` out."""

    def __init__(self, answer: _Answer) -> None:
        self._answer = answer
        self._pending = ""
        self._name: str | None = None
        self._data: list[str] = []
        self.events = 0

    def feed(self, text: str) -> None:
        if not text:
            return
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        if len(self._pending) > _MAX_LINE_CHARS:
            raise ValueError(f"an event-stream line longer than {_MAX_LINE_CHARS} characters")
        for line in lines:
            self._line(line.removesuffix("\r"))

    def flush(self) -> None:
        """The stream ended: a last line or event without its terminator still counts."""
        if self._pending:
            pending, self._pending = self._pending, ""
            self._line(pending.rstrip("\r"))
        self._dispatch()

    def _line(self, line: str) -> None:
        if not line:
            self._dispatch()
        elif line.startswith("data:"):
            self._data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif line.startswith("event:"):
            self._name = line[6:].strip()
        # ``id:``, ``retry:`` and ``:`` comments carry nothing the exchange keeps.

    def _dispatch(self) -> None:
        if self._data:
            self.events += 1
            self._answer.event(self._name, "\n".join(self._data))
        self._name = None
        self._data = []


def _decompressor(encoding: str) -> Any | None:
    """A zlib decompressor for the body's ``content-encoding`` (``None``: identity)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ValueError(f"content-encoding {encoding!r} is not decoded by the watcher")


# -- one exchange ----------------------------------------------------------------------------


class _Exchange:
    """One watched request: the events recording it (one per watching timeline) and the reading of its answer."""

    def __init__(self, events: list[tuple[LLMExchange, AppCode | None]], started: float) -> None:
        self._events = events
        self._started = started
        self._lock = threading.Lock()
        self._finished = False
        self._broken = False
        self._answer = _Answer()
        self._sse: _EventStream | None = None
        self._decoder: Any = None
        self._text_decoder: Any = None
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._overflow = False

    @classmethod
    def open(cls, watches: Iterable[HttpWatch], request: Any, transport: str, blocking_loop: bool) -> _Exchange | None:
        """Start recording ``request`` if it goes to an LLM endpoint (``None``: not watched)."""
        method = str(request.method)
        url = str(request.url)
        endpoint = llm_endpoint(method, url)
        if endpoint is None:
            return None
        started = time.perf_counter()
        problem: str | None = None
        body: Any = None
        raw: bytes | None = None
        try:
            body, raw = _request_body(request)
            body = redact_value(body) if body is not None else None
        except Exception as exc:  # noqa: BLE001 - a watcher bug is noted, never raised
            problem = f"request body: {type(exc).__name__}: {exc}"
        fields_ = {
            "provider": endpoint.provider,
            "api": endpoint.api,
            "method": method.upper(),
            "url": _safe_url(url),
            "request": body,
            "request_digest": _digest(body, raw),
            "model": body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None,
            "max_tokens": _max_tokens(body),
            "streamed": isinstance(body, dict) and body.get("stream") is True,
            "transport": transport,
            "blocking_loop": blocking_loop,
        }
        events: list[tuple[LLMExchange, AppCode | None]] = []
        seen: set[int] = set()
        for watch in watches:
            if id(watch.timeline) in seen:
                continue
            seen.add(id(watch.timeline))
            caller = None
            if watch.code is not None:
                try:
                    caller = watch.code.innermost_in_stack(skip=1)
                except Exception as exc:  # noqa: BLE001 - a watcher bug is noted, never raised
                    problem = problem or f"caller: {type(exc).__name__}: {exc}"
            event = LLMExchange(**fields_, caller=caller, watch_error=problem, at=started)
            events.append((watch.timeline.add(event), watch.code))
        exchange = cls(events, started)
        _REGISTRY.remember(exchange)
        return exchange

    # -- bookkeeping that never raises -------------------------------------------------------

    def _set(self, **values: Any) -> None:
        for event, _code in self._events:
            for name, value in values.items():
                setattr(event, name, value)

    def _note(self, step: str, exc: BaseException) -> None:
        """A bug in the watcher itself: noted on the exchange, and the answer is not read further."""
        self._broken = True
        message = redact_text(f"{step}: {type(exc).__name__}: {exc}")[:300]
        for event, _code in self._events:
            if event.watch_error is None:
                event.watch_error = message

    def responded(self, response: Any, stream_class: type) -> None:
        """Headers arrived: keep status and headers, and watch the body as it is read."""
        try:
            headers = {name: redact_text(response.headers[name]) for name in KEPT_HEADERS if name in response.headers}
            self._set(status=int(response.status_code), headers=headers)
            content_type = response.headers.get("content-type", "").lower()
            if "text/event-stream" in content_type:
                self._sse = _EventStream(self._answer)
            self._text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            if response.is_stream_consumed or response.is_closed:
                # The body was read before the client saw it (a response built from bytes): read it whole.
                self._take(response.content)
                self.ended()
                return
            # Wrapped first: even a body the watcher cannot decode still ends, fails or is closed on record.
            response.stream = stream_class(response.stream, self)
            self._decoder = _decompressor(response.headers.get("content-encoding", ""))
        except Exception as exc:  # noqa: BLE001 - a watcher bug is noted, never raised
            self._note("response", exc)

    def feed(self, chunk: bytes) -> None:
        """Bytes of the body as the application reads them (before content decoding)."""
        if self._broken or self._finished:
            return
        try:
            if self._decoder is not None:
                chunk = self._decoder.decompress(chunk)
            self._take(chunk)
        except Exception as exc:  # noqa: BLE001 - a watcher bug is noted, never raised
            self._note("body", exc)

    def _take(self, data: bytes) -> None:
        if self._sse is not None:
            self._sse.feed(self._text_decoder.decode(data))
            for event, _code in self._events:
                event.received_chars = self._answer.chars
        elif not self._overflow:
            self._body_bytes += len(data)
            if self._body_bytes > _MAX_BODY_BYTES:
                self._overflow = True
                self._body = self._body[:1]
            else:
                self._body.append(data)

    def ended(self) -> None:
        """The body was read to its end."""
        self._finish(reached_end=True, error=None)

    def closed(self) -> None:
        """The application closed the response (after its end, or before it: the stream is then incomplete)."""
        self._finish(reached_end=False, error=None)

    def failed(self, exc: BaseException) -> None:
        """The transport failed: no answer, or a body cut short."""
        self._finish(reached_end=False, error=exc)

    def abandoned(self) -> None:
        """Watching ended while the body was neither read to its end nor closed: incomplete, no latency."""
        self._finish(reached_end=False, error=None, abandoned=True)

    def _finish(self, *, reached_end: bool, error: BaseException | None, abandoned: bool = False) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        _REGISTRY.forget(self)
        try:
            if not abandoned:
                self._set(latency_s=time.perf_counter() - self._started)
            if error is not None:
                for event, code in self._events:
                    event.error = exception_info(error, code)
            if not self._broken:
                self._conclude(reached_end)
        except Exception as exc:  # noqa: BLE001 - a watcher bug is noted, never raised
            self._note("finish", exc)
        finally:
            self._body = []

    def _conclude(self, reached_end: bool) -> None:
        answer = self._answer
        values: dict[str, Any] = {}
        if self._sse is not None:
            if reached_end:
                if self._decoder is not None:
                    self._sse.feed(self._text_decoder.decode(self._decoder.flush()))
                self._sse.feed(self._text_decoder.decode(b"", final=True))
                self._sse.flush()
            values["complete"] = answer.stopped and not answer.stream_error
            values["body_is_json"] = answer.bad_payload is None if self._sse.events else None
            values["body_head"] = answer.bad_payload
        elif reached_end:
            self._read_document(values)
            values["complete"] = True
        elif self._body:
            self._read_document(values)
        values.update(
            text=answer.text,
            received_chars=answer.chars,
            stop_reason=answer.stop_reason,
            usage=dict(answer.usage),
            answered_model=answer.model,
            api_error_type=answer.error_type,
            api_error_message=answer.error_message,
            stream_error=answer.stream_error,
            vectors=answer.vectors,
        )
        self._set(**values)

    def _read_document(self, values: dict[str, Any]) -> None:
        raw = b"".join(self._body)
        if self._decoder is not None:
            raw += self._decoder.flush()
        text = raw.decode("utf-8", "replace")
        if self._overflow:
            values["body_head"] = _head(text)
            self._note("body", ValueError(f"a body over {_MAX_BODY_BYTES} bytes is not decoded"))
            return
        try:
            document = json.loads(text)
        except ValueError:
            document = None
            known = False
        else:
            known = self._answer.document(document)
        values["body_is_json"] = known
        values["body_head"] = None if known else _head(text)


# -- the patches -----------------------------------------------------------------------------


def _sync_stream_class(base: type) -> type:
    class WatchedSyncStream(base):  # type: ignore[valid-type,misc]
        """The response body, passed through chunk by chunk while the exchange reads it."""

        def __init__(self, inner: Any, exchange: _Exchange) -> None:
            self._inner = inner
            self._exchange = exchange

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self._inner:
                    self._exchange.feed(chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                self._exchange.failed(exc)
                raise
            self._exchange.ended()

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._exchange.closed()

        def __getattr__(self, name: str) -> Any:  # ``elapsed`` and whatever else the client reads back
            return getattr(self._inner, name)

    return WatchedSyncStream


def _async_stream_class(base: type) -> type:
    class WatchedAsyncStream(base):  # type: ignore[valid-type,misc]
        """The response body, passed through chunk by chunk while the exchange reads it."""

        def __init__(self, inner: Any, exchange: _Exchange) -> None:
            self._inner = inner
            self._exchange = exchange

        async def __aiter__(self) -> Any:
            try:
                async for chunk in self._inner:
                    self._exchange.feed(chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                self._exchange.failed(exc)
                raise
            self._exchange.ended()

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._exchange.closed()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    return WatchedAsyncStream


def _open_exchange(request: Any, transport: str, blocking_loop: bool) -> _Exchange | None:
    watches = _REGISTRY.watches
    if not watches or _INSIDE_SEND.get():
        return None
    try:
        return _Exchange.open(watches, request, transport, blocking_loop)
    except Exception:  # noqa: BLE001 - the watcher never breaks a call; an unreadable request is not recorded
        return None


def _patched_sync_send(original: Callable[..., Any], library: str, stream_class: type) -> Callable[..., Any]:
    transport = f"{library}/sync"

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not _REGISTRY.watches:
            return original(self, request, *args, **kwargs)
        exchange = _open_exchange(request, transport, _loop_running_here())
        if exchange is None:
            return original(self, request, *args, **kwargs)
        # Always ask for the body unread, so it is read through the exchange; then read it
        # exactly as ``send`` itself would have.
        wants_stream = kwargs.get("stream", False)
        kwargs["stream"] = True
        token = _INSIDE_SEND.set(True)
        try:
            response = original(self, request, *args, **kwargs)
        except BaseException as exc:
            exchange.failed(exc)
            raise
        finally:
            _INSIDE_SEND.reset(token)
        exchange.responded(response, stream_class)
        if not wants_stream:
            try:
                response.read()
            except BaseException:
                response.close()
                raise
        return response

    send._harness_http_watch = True  # type: ignore[attr-defined]
    return send


def _patched_async_send(original: Callable[..., Any], library: str, stream_class: type) -> Callable[..., Any]:
    transport = f"{library}/async"

    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not _REGISTRY.watches:
            return await original(self, request, *args, **kwargs)
        exchange = _open_exchange(request, transport, False)
        if exchange is None:
            return await original(self, request, *args, **kwargs)
        wants_stream = kwargs.get("stream", False)
        kwargs["stream"] = True
        token = _INSIDE_SEND.set(True)
        try:
            response = await original(self, request, *args, **kwargs)
        except BaseException as exc:
            exchange.failed(exc)
            raise
        finally:
            _INSIDE_SEND.reset(token)
        exchange.responded(response, stream_class)
        if not wants_stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    send._harness_http_watch = True  # type: ignore[attr-defined]
    return send


@dataclass(frozen=True)
class _Patch:
    owner: type
    original: Callable[..., Any]
    replacement: Callable[..., Any]


class _Registry:
    """The process's active watches and the patches they share (installed with the first, removed with the last)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Read without the lock by every send: a tuple, replaced whole.
        self.watches: tuple[HttpWatch, ...] = ()
        self.depth: dict[int, int] = {}
        self.patches: list[_Patch] = []
        #: Exchanges whose answer is still being read.
        self.open: set[_Exchange] = set()

    def remember(self, exchange: _Exchange) -> None:
        with self.lock:
            self.open.add(exchange)

    def forget(self, exchange: _Exchange) -> None:
        with self.lock:
            self.open.discard(exchange)

    def enter(self, watch: HttpWatch) -> None:
        with self.lock:
            depth = self.depth.get(id(watch), 0)
            self.depth[id(watch)] = depth + 1
            if depth:
                return
            if not self.watches:
                self._install()
            self.watches = (*self.watches, watch)

    def exit(self, watch: HttpWatch) -> list[_Exchange]:
        """Leave ``watch``; when it was the last, the exchanges still open (to be finished as abandoned)."""
        with self.lock:
            depth = self.depth.get(id(watch), 0)
            if depth == 0:
                return []
            if depth > 1:
                self.depth[id(watch)] = depth - 1
                return []
            del self.depth[id(watch)]
            self.watches = tuple(w for w in self.watches if w is not watch)
            if self.watches:
                return []
            self._uninstall()
            left, self.open = list(self.open), set()
            return left

    def _install(self) -> None:
        for library in HTTP_LIBRARIES:
            try:
                module = importlib.import_module(library) if importlib.util.find_spec(library) else None
            except Exception:  # noqa: BLE001 - a library that cannot be imported cannot be sending either
                module = None
            if module is None:
                continue
            pairs = (
                (module.Client, _patched_sync_send, _sync_stream_class(module.SyncByteStream)),
                (module.AsyncClient, _patched_async_send, _async_stream_class(module.AsyncByteStream)),
            )
            for owner, patcher, stream_class in pairs:
                current = owner.__dict__["send"]
                if getattr(current, "_harness_http_watch", False):
                    continue  # left in place under someone else's patch; it is inert without watches
                replacement = patcher(current, library, stream_class)
                owner.send = replacement
                self.patches.append(_Patch(owner, current, replacement))

    def _uninstall(self) -> None:
        for patch in reversed(self.patches):
            # Someone patched over ours meanwhile: leave ours beneath theirs (it passes calls through).
            if patch.owner.__dict__.get("send") is patch.replacement:
                patch.owner.send = patch.original  # type: ignore[method-assign]
        self.patches = [p for p in self.patches if p.owner.__dict__.get("send") is p.replacement]


_REGISTRY = _Registry()


class HttpWatch:
    """Records every LLM exchange into ``timeline`` while entered; ``code`` names the app's calling line.

    Entering installs the patches (process-wide, shared by every active watch; each
    exchange is recorded once per distinct timeline); leaving the last active watch removes
    them. Re-entering an entered watch nests. Exchanges still open when the last watch is
    left (a stream the application neither read to its end nor closed) are finished as
    incomplete, with no latency.
    """

    def __init__(self, timeline: Timeline, code: AppCode | None = None) -> None:
        self.timeline = timeline
        self.code = code

    def __enter__(self) -> Self:
        _REGISTRY.enter(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for exchange in _REGISTRY.exit(self):
            exchange.abandoned()

    @property
    def active(self) -> bool:
        """The watch is entered (its timeline receives exchanges)."""
        return self in _REGISTRY.watches
