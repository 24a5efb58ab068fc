"""A local HTTP server that speaks the Anthropic Messages and OpenAI Embeddings wire formats.

No machine here reaches the real LLM APIs, so cassettes are made by pointing the real
``anthropic`` and ``openai`` SDKs at this server. It answers from a script: a queue of
replies per endpoint, consumed in order. Every reply type reproduces a shape the real
APIs produce (and the SDKs were verified to accept): plain and streamed messages,
truncated streams, in-stream errors, HTTP errors with the vendor's error body, non-JSON
bodies, slow answers, and embeddings.

Responses also carry what the real APIs send and a recorder must not keep: request ids,
an organization id and cookies (``set-cookie``, sent back by the SDKs' cookie jars).

Usage::

    script = WireScript(anthropic=[MessageReply('{"domain": "x"}')])
    with WireServer(script) as server:
        client = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url)
        ...
    assert not server.remaining()["anthropic"]
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import struct
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self, TypeAlias

from harness.config import TIMEOUTS

# The API's error type per status and the embedding vectors are decided once, in the package (harness.faults).
from harness.faults import ANTHROPIC_ERROR_TYPES, embedding_for

__all__ = [
    "ANTHROPIC_MESSAGES_PATH",
    "DEFAULT_MESSAGE_MODEL",
    "OPENAI_EMBEDDINGS_PATH",
    "Delayed",
    "EmbeddingReply",
    "ErrorReply",
    "MessageReply",
    "RawReply",
    "ReceivedRequest",
    "Reply",
    "StreamErrorReply",
    "WireScript",
    "WireServer",
]

ANTHROPIC_MESSAGES_PATH = "/v1/messages"
OPENAI_EMBEDDINGS_PATH = "/v1/embeddings"

#: Model reported when a Messages request names none (the real API would reject it).
DEFAULT_MESSAGE_MODEL = "claude-sonnet-4-5"

_DEFAULT_ERROR_MESSAGES: Mapping[int, str] = {
    400: "messages: at least one message is required",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "model: claude-does-not-exist",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}

#: Filler streamed before an in-stream error when the reply names no text of its own.
_FILLER = '{\n  "project_name": "Untitled project",\n  "description": "An application whose plan was being written when the stream failed.",\n  "phases": [\n'


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class MessageReply:
    """A successful Anthropic message: JSON, or an SSE stream when the request asks for one.

    ``cut_stream`` ends a stream after its text deltas, with no ``content_block_stop``,
    ``message_delta`` or ``message_stop``, but a well-formed HTTP body: the SDK then
    returns normally with ``stop_reason=None``. ``drop_connection`` instead closes the
    TCP connection in the middle of the HTTP body, as a network failure would.
    Token counts default to estimates (output: ``len(text) // 4``; input: a quarter of
    the request body's length); ``model`` defaults to the model the request named.

    ``thinking`` answers as a model with extended thinking does: a ``thinking`` block (streamed
    as ``thinking_delta`` events and one ``signature_delta``) before the text block. ``padded``
    writes each event's JSON with spaces after its separators, as the API writes its ``ping``
    (``data: {"type": "ping"}``).
    """

    text: str
    stop_reason: str = "end_turn"
    input_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None
    cut_stream: bool = False
    chunk_chars: int = 400
    headers: Mapping[str, str] = field(default_factory=dict)
    drop_connection: bool = False
    thinking: str = ""
    padded: bool = False

    def __post_init__(self) -> None:
        if self.chunk_chars < 1:
            raise ValueError("chunk_chars must be at least 1")

    @property
    def signature(self) -> str:
        """The signature the API sends for a thinking block (opaque base64; derived from the thinking here)."""
        return base64.b64encode(hashlib.sha256(self.thinking.encode()).digest() * 4).decode()


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error with the vendor's error body (Anthropic's or OpenAI's shape, by endpoint).

    ``code`` only appears in OpenAI bodies (``error.code``, e.g. ``invalid_api_key``).
    """

    status: int
    error_type: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None

    @classmethod
    def for_status(
        cls, status: int, message: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> ErrorReply:
        """The error the Anthropic API sends for ``status`` (a 429 gets ``retry-after: 1``)."""
        extra = dict(headers or {})
        if status == 429:
            extra.setdefault("retry-after", "1")
        return cls(
            status=status,
            error_type=ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
            message=message or _DEFAULT_ERROR_MESSAGES.get(status, "Internal server error"),
            headers=extra,
        )


@dataclass(frozen=True)
class StreamErrorReply:
    """An SSE stream that starts normally, streams ``after_chars`` of text, then sends ``event: error``."""

    error_type: str = "overloaded_error"
    message: str = "Overloaded"
    after_chars: int = 0
    text: str = ""
    chunk_chars: int = 400


@dataclass(frozen=True)
class RawReply:
    """Any body with any status and content type: HTML error pages, truncated JSON, ..."""

    status: int = 200
    body: bytes = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    content_type: str = "text/html; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddingReply:
    """OpenAI embeddings for every input string, derived from a hash of the string.

    Identical text gives an identical (unit-length) vector. A ``dimensions`` field in the
    request wins over this default, as it does with the real API.
    """

    dimensions: int = 64
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delayed:
    """Wait ``seconds`` before serving ``reply`` (to make a client time out)."""

    reply: Reply
    seconds: float


Reply: TypeAlias = MessageReply | ErrorReply | StreamErrorReply | RawReply | EmbeddingReply | Delayed
"""Anything a script can hold."""


@dataclass
class WireScript:
    """Replies to serve, in order, per API."""

    anthropic: list[Reply] = field(default_factory=list)
    openai: list[Reply] = field(default_factory=list)


class ReceivedRequest(NamedTuple):
    """One request as the server saw it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    #: The decoded JSON body; the raw text when it is not JSON; ``None`` when empty.
    body: Any


# --------------------------------------------------------------------------- embeddings


def _embedding_inputs(raw: Any) -> list[str]:
    """The input strings of an embeddings request (token arrays are hashed by their repr)."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        if raw and all(isinstance(item, int) for item in raw):
            return [repr(raw)]
        return [item if isinstance(item, str) else repr(item) for item in raw]
    raise ValueError("'input' must be a string or an array")


# --------------------------------------------------------------------------- server


class _ScriptError(Exception):
    """The script cannot answer a request; the client gets a 500 saying why."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    wire: WireServer


class WireServer:
    """Threaded local server answering ``POST /v1/messages`` and ``POST /v1/embeddings`` from a script.

    Bound to 127.0.0.1 on a free port; use as a context manager (or ``start``/``close``).
    ``seed`` makes ids deterministic, so two recordings of the same script agree.
    With ``compress``, JSON and raw bodies are gzip-encoded when the client accepts it.
    """

    def __init__(
        self,
        script: WireScript | None = None,
        *,
        seed: int = 0,
        compress: bool = False,
        timeout: float = TIMEOUTS.wire_server,
    ) -> None:
        self.seed = seed
        self.compress = compress
        self.timeout = timeout
        #: Every request received, in arrival order.
        self.requests: list[ReceivedRequest] = []
        #: Requests that found their endpoint's queue empty (each was answered with a 500).
        self.exhausted: list[ReceivedRequest] = []
        self._queues: dict[str, deque[Reply]] = {"anthropic": deque(), "openai": deque()}
        self._lock = threading.Lock()
        self._counter = 0
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: Stands in for the account the real API would name in ``anthropic-organization-id``.
        self.organization_id = str(uuid.UUID(bytes=hashlib.sha256(f"org:{seed}".encode()).digest()[:16], version=4))
        if script is not None:
            self.load(script)

    # -- script --------------------------------------------------------------------

    def load(self, script: WireScript) -> None:
        """Append ``script``'s replies to the queues (usable while serving)."""
        with self._lock:
            self._queues["anthropic"].extend(script.anthropic)
            self._queues["openai"].extend(script.openai)

    def reset(self) -> None:
        """Forget queued replies, received requests and exhausted requests (ids keep counting)."""
        with self._lock:
            for queue in self._queues.values():
                queue.clear()
            self.requests.clear()
            self.exhausted.clear()

    def remaining(self) -> dict[str, list[Reply]]:
        """Replies not yet consumed, per API."""
        with self._lock:
            return {api: list(queue) for api, queue in self._queues.items()}

    def _next_reply(self, api: str) -> Reply | None:
        with self._lock:
            queue = self._queues[api]
            return queue.popleft() if queue else None

    def _fresh(self, prefix: str, length: int) -> str:
        """A new id like the vendors' (``msg_01…``), deterministic for a given seed."""
        with self._lock:
            self._counter += 1
            counter = self._counter
        digest = hashlib.sha256(f"{self.seed}:{prefix}:{counter}".encode()).digest()
        alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        number = int.from_bytes(digest, "big")
        chars = []
        for _ in range(length):
            number, index = divmod(number, len(alphabet))
            chars.append(alphabet[index])
        return prefix + "".join(chars)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the OpenAI SDK wants ``base_url + "/v1"``)."""
        if self._httpd is None:
            raise RuntimeError("the wire server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> WireServer:
        """Bind and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("the wire server is already running")
        handler = type("WireHandler", (_WireHandler,), {"timeout": self.timeout})
        httpd = _HTTPServer(("127.0.0.1", 0), handler)
        httpd.wire = self
        httpd.timeout = self.timeout
        self._closing.clear()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="wire-server", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and drop open connections (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._closing.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(self.timeout)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _WireHandler(BaseHTTPRequestHandler):
    """Serves one connection; all state lives on the :class:`WireServer`."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    #: Whether the stream being written spaces its JSON (a message reply's ``padded``; reset per request).
    _padded = False

    # -- plumbing --------------------------------------------------------------------

    @property
    def wire(self) -> WireServer:
        return self.server.wire

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle's algorithm and delayed ACKs add ~40 ms to each small write.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.wire._lock:
            self.wire._connections.add(self.connection)

    def finish(self) -> None:
        with self.wire._lock:
            self.wire._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the client went away (e.g. it timed out first); nothing to answer

    def version_string(self) -> str:
        return "cloudflare"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    # -- dispatch --------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._padded = False
        raw = self._read_body()
        if raw and "gzip" in self.headers.get("content-encoding", "").lower():
            raw = gzip.decompress(raw)
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        received = ReceivedRequest(self.command, path, headers, body)
        with self.wire._lock:
            self.wire.requests.append(received)

        if self.command == "POST" and path == ANTHROPIC_MESSAGES_PATH:
            api = "anthropic"
        elif self.command == "POST" and path == OPENAI_EMBEDDINGS_PATH:
            api = "openai"
        else:
            self._send_error_body("anthropic", 404, "not_found_error", "Not Found", {}, None)
            return

        reply = self.wire._next_reply(api)
        if reply is None:
            with self.wire._lock:
                self.wire.exhausted.append(received)
                served = sum(1 for r in self.wire.requests if r.path == path)
            message = (
                f"wire script exhausted: no {api} reply left for {self.command} {path} "
                f"(request #{served} to this endpoint)"
            )
            self._send_script_error(api, message)
            return
        try:
            self._serve(api, reply, body, raw)
        except _ScriptError as exc:
            self._send_script_error(api, str(exc))

    def _serve(self, api: str, reply: Reply, body: Any, raw: bytes) -> None:
        if isinstance(reply, Delayed):
            if self.wire._closing.wait(reply.seconds):
                self.close_connection = True
                return
            self._serve(api, reply.reply, body, raw)
        elif isinstance(reply, ErrorReply):
            self._send_error_body(api, reply.status, reply.error_type, reply.message, reply.headers, reply.code)
        elif isinstance(reply, RawReply):
            self._send_bytes(reply.status, reply.body, reply.content_type, self._vendor_headers(api, reply.headers))
        elif api == "anthropic" and isinstance(reply, MessageReply):
            self._serve_message(reply, body, raw)
        elif api == "anthropic" and isinstance(reply, StreamErrorReply):
            self._serve_stream_error(reply, body, raw)
        elif api == "openai" and isinstance(reply, EmbeddingReply):
            self._serve_embeddings(reply, body)
        else:
            raise _ScriptError(f"wire script error: a {type(reply).__name__} cannot answer {self.command} {self.path}")

    # -- common response pieces ------------------------------------------------------

    def _vendor_headers(self, api: str, extra: Mapping[str, str]) -> list[tuple[str, str]]:
        """Identifying headers the vendor sends (ids, organization, cookies), then ``extra``."""
        cookie = self.wire._fresh("", 43)
        cf_bm = self.wire._fresh("", 40)
        if api == "anthropic":
            headers = [
                ("request-id", self.wire._fresh("req_011C", 20)),
                ("anthropic-organization-id", self.wire.organization_id),
                ("anthropic-ratelimit-requests-limit", "4000"),
                ("anthropic-ratelimit-requests-remaining", "3999"),
                ("anthropic-ratelimit-tokens-limit", "2000000"),
                ("anthropic-ratelimit-tokens-remaining", "1999000"),
            ]
        else:
            headers = [
                ("x-request-id", self.wire._fresh("req_", 32)),
                ("openai-organization", "user-" + self.wire.organization_id.replace("-", "")[:24]),
                ("openai-project", "proj_" + self.wire.organization_id.replace("-", "")[:24]),
                ("openai-version", "2020-10-01"),
                ("openai-processing-ms", "42"),
                ("x-ratelimit-limit-requests", "3000"),
                ("x-ratelimit-remaining-requests", "2999"),
            ]
        # No Secure attribute, so the SDKs' cookie jars send them back over plain http.
        headers.append(
            ("set-cookie", f"_cfuvid={cookie}-1700000000000-0.0.1.1-604800000; path=/; HttpOnly; SameSite=None")
        )
        headers.append(("set-cookie", f"__cf_bm={cf_bm}; path=/; HttpOnly; SameSite=None"))
        headers.extend((name.lower(), str(value)) for name, value in extra.items())
        return headers

    def _status_line(self, status: int) -> None:
        message = {529: "Overloaded"}.get(status)
        self.send_response(status, message)

    def _send_bytes(self, status: int, payload: bytes, content_type: str, headers: Iterable[tuple[str, str]]) -> None:
        encoding = None
        if self.wire.compress and payload and "gzip" in self.headers.get("accept-encoding", "").lower():
            payload = gzip.compress(payload, mtime=0)
            encoding = "gzip"
        self._status_line(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        if encoding:
            self.send_header("content-encoding", encoding)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_json(self, api: str, status: int, document: Any, extra: Mapping[str, str]) -> None:
        payload = json.dumps(document, ensure_ascii=False).encode()
        self._send_bytes(status, payload, "application/json", self._vendor_headers(api, extra))

    def _send_error_body(
        self, api: str, status: int, error_type: str, message: str, extra: Mapping[str, str], code: str | None
    ) -> None:
        if api == "openai":
            document: dict[str, Any] = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        else:
            document = {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": self.wire._fresh("req_011C", 20),
            }
        self._send_json(api, status, document, extra)

    def _send_script_error(self, api: str, message: str) -> None:
        error_type = "server_error" if api == "openai" else "api_error"
        self._send_error_body(api, 500, error_type, message, {}, None)

    # -- Anthropic -------------------------------------------------------------------

    @staticmethod
    def _requested_model(body: Any) -> str:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else DEFAULT_MESSAGE_MODEL

    def _usage(self, input_tokens: int, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _message(
        self, model: str, content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "id": self.wire._fresh("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    def _wants_stream(self, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    def _serve_message(self, reply: MessageReply, body: Any, raw: bytes) -> None:
        model = reply.model or self._requested_model(body)
        input_tokens = reply.input_tokens if reply.input_tokens is not None else max(1, len(raw) // 4)
        output_tokens = reply.output_tokens if reply.output_tokens is not None else max(1, len(reply.text) // 4)
        if not self._wants_stream(body):
            thought = [{"type": "thinking", "thinking": reply.thinking, "signature": reply.signature}]
            message = self._message(
                model,
                [*(thought if reply.thinking else []), {"type": "text", "text": reply.text}],
                reply.stop_reason,
                self._usage(input_tokens, output_tokens),
            )
            self._send_json("anthropic", 200, message, reply.headers)
            return

        self._padded = reply.padded
        self._open_stream(reply.headers)
        index = 0
        if reply.thinking:
            self._stream_thinking(model, input_tokens, reply)
            index = 1
        else:
            self._stream_preamble(model, input_tokens)
        self._stream_text(reply.text, reply.chunk_chars, index)
        if reply.drop_connection:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if not reply.cut_stream:
            self._event("content_block_stop", {"type": "content_block_stop", "index": index})
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
            self._event("message_stop", {"type": "message_stop"})
        self._close_stream()

    def _serve_stream_error(self, reply: StreamErrorReply, body: Any, raw: bytes) -> None:
        text = reply.text or _FILLER * (reply.after_chars // len(_FILLER) + 1)
        self._open_stream({})
        self._stream_preamble(self._requested_model(body), max(1, len(raw) // 4))
        self._stream_text(text[: reply.after_chars], reply.chunk_chars)
        self._event("error", {"type": "error", "error": {"type": reply.error_type, "message": reply.message}})
        self._close_stream()

    def _open_stream(self, extra: Mapping[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in self._vendor_headers("anthropic", extra):
            self.send_header(name, value)
        self.end_headers()

    def _stream_preamble(self, model: str, input_tokens: int) -> None:
        start = self._message(model, [], None, self._usage(input_tokens, 1))
        self._event("message_start", {"type": "message_start", "message": start})
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        self._event("ping", {"type": "ping"})

    def _stream_thinking(self, model: str, input_tokens: int, reply: MessageReply) -> None:
        """message_start, the thinking block (its deltas and signature), then the text block's start."""
        start = self._message(model, [], None, self._usage(input_tokens, 1))
        self._event("message_start", {"type": "message_start", "message": start})
        block = {"type": "thinking", "thinking": "", "signature": ""}
        self._event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        self._event("ping", {"type": "ping"})
        for offset in range(0, len(reply.thinking), reply.chunk_chars):
            delta = {"type": "thinking_delta", "thinking": reply.thinking[offset : offset + reply.chunk_chars]}
            self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        signature = {"type": "signature_delta", "signature": reply.signature}
        self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": signature})
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        text_block = {"type": "text", "text": ""}
        self._event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": text_block})

    def _stream_text(self, text: str, chunk_chars: int, index: int = 0) -> None:
        for start in range(0, len(text), chunk_chars):
            delta = {"type": "text_delta", "text": text[start : start + chunk_chars]}
            self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _event(self, name: str, data: Mapping[str, Any]) -> None:
        separators = (", ", ": ") if self._padded else (",", ":")
        frame = f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=separators)}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        self.wfile.flush()

    def _close_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- OpenAI ----------------------------------------------------------------------

    def _serve_embeddings(self, reply: EmbeddingReply, body: Any) -> None:
        if not isinstance(body, dict) or "input" not in body:
            self._send_error_body("openai", 400, "invalid_request_error", "'input' is a required property", {}, None)
            return
        try:
            inputs = _embedding_inputs(body["input"])
        except ValueError as exc:
            self._send_error_body("openai", 400, "invalid_request_error", str(exc), {}, None)
            return
        requested = body.get("dimensions")
        dimensions = requested if isinstance(requested, int) else reply.dimensions
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = embedding_for(text, dimensions)
            encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(max(1, len(text) // 4) for text in inputs)
        named = body.get("model")
        model = named if isinstance(named, str) else "text-embedding-3-small"
        document = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self._send_json("openai", 200, document, {"openai-model": model, **reply.headers})
