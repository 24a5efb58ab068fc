"""Fault injection on the SDKs' real HTTP layer, for faults easier to inject than to record.

The ``anthropic`` and ``openai`` SDKs send through httpx2 → httpcore2 (anthropic ≥ 1, openai ≥ 3)
or httpx → httpcore (the generations before; see :mod:`harness.sdk`). :class:`LLMFaults`
patches the connection pools of every installed httpcore generation with respx
(``respx.mock(using="httpcore2")`` and ``using="httpcore"``), so the real SDK builds the
request, parses the answer, raises its own exception classes and streams SSE — only the
socket is replaced. Both generations answer from the same queues, in order::

    with LLMFaults.mocking() as faults:
        faults.on_messages(faults.status(529))
        run = run_flow(settings, request)        # discovery meets an overloaded API

The pytest plugin wraps this as the ``llm_faults`` fixture. respx is a test dependency
(``pip install masterplan-harness[test]``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import math
import struct
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["ANTHROPIC_ERROR_TYPES", "Answer", "LLMFaults", "RecordedCall", "embedding_for"]

#: The ``error.type`` the Anthropic API uses for each HTTP status (the test suite's stand-in server uses this table too).
ANTHROPIC_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

#: What an endpoint does with one request: build the response (``api``, request JSON) or raise.
Answer = Callable[[str, Any], Any]


def embedding_for(text: str, dimensions: int = 64) -> list[float]:
    """A deterministic vector for ``text``: unit length, exact in float32 (identical text, identical vector)."""
    if dimensions < 1:
        raise ValueError("dimensions must be at least 1")
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        for offset in range(0, len(digest), 4):
            values.append(int.from_bytes(digest[offset : offset + 4], "little") / 2**31 - 1.0)
        block += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    unit = [v / norm for v in values]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *unit)))


@dataclass(frozen=True)
class RecordedCall:
    """One request the SDK sent to a faked endpoint."""

    api: str
    url: str
    #: The decoded JSON body (``None`` when empty).
    body: Any


class _TransportFault(Exception):
    """Raised by an answer for a failure below HTTP; the responder re-raises it as its httpcore generation's class."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _register_httpcore2_mocker() -> None:
    """respx knows httpcore (1.x); teach it httpcore2's identical pool classes, once per process."""
    from respx.mocks import HTTPCoreMocker, Mocker

    if "httpcore2" in Mocker.registry:  # pytest-httpx2, if installed, registers the same thing
        return

    class HTTPCore2Mocker(HTTPCoreMocker):
        name = "httpcore2"
        targets = [target.replace("httpcore.", "httpcore2.", 1) for target in HTTPCoreMocker.targets]


class LLMFaults:
    """Scripted answers and faults for the Messages and Embeddings endpoints, served in order."""

    def __init__(
        self,
        routers: dict[str, Any],
        *,
        anthropic_base_url: str = "https://api.anthropic.com",
        openai_base_url: str = "https://api.openai.com/v1",
    ) -> None:
        """``routers`` maps each httpcore generation's module name to the respx router patching it."""
        self._queues: dict[str, deque[Answer]] = {"anthropic": deque(), "openai": deque()}
        #: Every request the SDKs sent, in order.
        self.calls: list[RecordedCall] = []
        self._counter = 0
        for httpcore, router in routers.items():
            router.post(anthropic_base_url.rstrip("/") + "/v1/messages").mock(
                side_effect=self._responder("anthropic", httpcore)
            )
            router.post(openai_base_url.rstrip("/") + "/embeddings").mock(
                side_effect=self._responder("openai", httpcore)
            )

    @classmethod
    @contextmanager
    def mocking(cls, **base_urls: str) -> Iterator[LLMFaults]:
        """Patch the SDKs' HTTP layer for the block; any other HTTP request through httpx or httpx2 fails loudly."""
        import respx

        from harness.sdk import httpcore_modules

        with ExitStack() as stack:
            routers = {}
            for httpcore in httpcore_modules():
                if httpcore.__name__ == "httpcore2":
                    _register_httpcore2_mocker()
                routers[httpcore.__name__] = stack.enter_context(
                    respx.mock(using=httpcore.__name__, assert_all_called=False)
                )
            yield cls(routers, **base_urls)

    # -- scripting ---------------------------------------------------------------------------

    def on_messages(self, *answers: Answer) -> LLMFaults:
        """Queue answers for the next Anthropic Messages calls."""
        self._queues["anthropic"].extend(answers)
        return self

    def on_embeddings(self, *answers: Answer) -> LLMFaults:
        """Queue answers for the next OpenAI Embeddings calls."""
        self._queues["openai"].extend(answers)
        return self

    def remaining(self) -> dict[str, int]:
        """Answers not yet used, per API."""
        return {api: len(queue) for api, queue in self._queues.items()}

    # -- answers -----------------------------------------------------------------------------

    def message(self, text: str, *, stop_reason: str | None = "end_turn", output_tokens: int | None = None) -> Answer:
        """A successful answer: JSON, or a full SSE stream when the request asks to stream."""

        def answer(api: str, body: Any) -> Any:
            tokens = output_tokens if output_tokens is not None else max(1, len(text) // 4)
            if isinstance(body, dict) and body.get("stream"):
                events = self._stream_start(body) + self._deltas(text)
                events += [
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    (
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                            "usage": {"output_tokens": tokens},
                        },
                    ),
                    ("message_stop", {"type": "message_stop"}),
                ]
                return self._sse(events)
            content = [{"type": "text", "text": text}]
            return self._json(200, self._message_doc(body, content, stop_reason, tokens))

        return answer

    def stream_cut(self, text: str) -> Answer:
        """An SSE stream that ends after its text with no stop events (the SDK returns ``stop_reason=None``)."""
        return lambda api, body: self._sse(self._stream_start(body) + self._deltas(text))

    def stream_error(
        self, error_type: str = "overloaded_error", *, text: str = "", message: str = "Overloaded"
    ) -> Answer:
        """An SSE stream that sends ``text`` and then ``event: error`` (the SDK raises with status 200)."""
        error = ("error", {"type": "error", "error": {"type": error_type, "message": message}})
        return lambda api, body: self._sse(self._stream_start(body) + self._deltas(text) + [error])

    def status(self, code: int, *, message: str | None = None, retry_after: float | None = None) -> Answer:
        """An HTTP error with the vendor's error body for ``code`` (``retry-after`` when given)."""

        def answer(api: str, body: Any) -> Any:
            headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
            text = message or f"injected {code}"
            if api == "openai":
                document: dict[str, Any] = {
                    "error": {"message": text, "type": "server_error", "param": None, "code": None}
                }
            else:
                error_type = ANTHROPIC_ERROR_TYPES.get(code, "api_error")
                document = {"type": "error", "error": {"type": error_type, "message": text}}
            return self._json(code, document, headers)

        return answer

    def raw(self, body: bytes, *, status: int = 200, content_type: str = "text/html; charset=utf-8") -> Answer:
        """Any body: an HTML error page from a proxy, a truncated JSON document, ..."""
        import httpx

        return lambda api, request_body: httpx.Response(status, content=body, headers={"content-type": content_type})

    def timeout(self) -> Answer:
        """The answer never comes in time (httpcore's ``ReadTimeout``; the SDK raises its timeout error)."""

        def answer(api: str, body: Any) -> Any:
            raise _TransportFault("ReadTimeout", "injected read timeout")

        return answer

    def connection_refused(self) -> Answer:
        """Nothing listens (httpcore's ``ConnectError``; the SDK raises its connection error)."""

        def answer(api: str, body: Any) -> Any:
            raise _TransportFault("ConnectError", "injected: connection refused")

        return answer

    def embeddings(self, dimensions: int = 64) -> Answer:
        """Embeddings for every input: :func:`embedding_for` each (the vectors the suite's stand-in server returns)."""

        def answer(api: str, body: Any) -> Any:
            inputs = body.get("input") if isinstance(body, dict) else None
            inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
            as_base64 = isinstance(body, dict) and body.get("encoding_format") == "base64"
            data = []
            for index, text in enumerate(inputs):
                vector = embedding_for(str(text), dimensions)
                packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                data.append({"object": "embedding", "index": index, "embedding": packed if as_base64 else vector})
            tokens = sum(max(1, len(str(text)) // 4) for text in inputs)
            model = body.get("model") if isinstance(body, dict) else None
            document = {
                "object": "list",
                "data": data,
                "model": model or "text-embedding-3-small",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
            return self._json(200, document)

        return answer

    # -- plumbing ----------------------------------------------------------------------------

    def _responder(self, api: str, httpcore: str) -> Callable[[Any], Any]:
        def respond(request: Any) -> Any:
            try:
                return answer(request)
            except _TransportFault as fault:  # as the SDK's own transport would raise it
                raise getattr(importlib.import_module(httpcore), fault.kind)(str(fault)) from None

        def answer(request: Any) -> Any:
            try:
                body = json.loads(request.content) if request.content else None
            except ValueError:
                body = request.content.decode("utf-8", "replace")
            self.calls.append(RecordedCall(api, str(request.url), body))
            queue = self._queues[api]
            if not queue:
                return self.status(500, message=f"llm_faults: no {api} answer left for call #{len(self.calls)}")(
                    api, body
                )
            return queue.popleft()(api, body)

        return respond

    def _next_id(self) -> str:
        self._counter += 1
        return f"msg_fault{self._counter:016d}"

    def _message_doc(self, body: Any, content: list, stop_reason: str | None, output_tokens: int) -> dict[str, Any]:
        model = body.get("model") if isinstance(body, dict) else None
        return {
            "id": self._next_id(),
            "type": "message",
            "role": "assistant",
            "model": model or "claude-sonnet-4-6",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": max(1, len(json.dumps(body)) // 4), "output_tokens": output_tokens},
        }

    def _stream_start(self, body: Any) -> list[tuple[str, Any]]:
        return [
            ("message_start", {"type": "message_start", "message": self._message_doc(body, [], None, 1)}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
        ]

    @staticmethod
    def _deltas(text: str, size: int = 400) -> list[tuple[str, Any]]:
        return [
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text[i : i + size]},
                },
            )
            for i in range(0, len(text), size)
        ]

    @staticmethod
    def _sse(events: list[tuple[str, Any]]) -> Any:
        import httpx

        payload = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()
        return httpx.Response(200, content=payload, headers={"content-type": "text/event-stream; charset=utf-8"})

    @staticmethod
    def _json(status: int, document: Any, headers: dict[str, str] | None = None) -> Any:
        import httpx

        return httpx.Response(status, json=document, headers=headers or {})
