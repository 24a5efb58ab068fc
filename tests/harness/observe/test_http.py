"""The LLM traffic watcher against the real SDKs, over real HTTP, to the local stand-in APIs."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import pytest

import harness.observe.http as http_watch
from harness.cassettes import recording, replaying
from harness.faults import LLMFaults
from harness.observe.code import AppCode
from harness.observe.http import HttpWatch, llm_endpoint
from harness.observe.timeline import LLMExchange, Timeline
from tests.support.wire_server import (
    EmbeddingReply,
    ErrorReply,
    MessageReply,
    RawReply,
    StreamErrorReply,
    WireScript,
    WireServer,
)

FAKE_ANTHROPIC_KEY = "sk-ant-test-3b8f0e1d7c6a5b4e"
FAKE_OPENAI_KEY = "sk-proj-test-9a8b7c6d5e4f3a2b"
HERE = AppCode([Path(__file__).parent])
MESSAGES = [{"role": "user", "content": "Plan a bookshop"}]
PLAN = '{"project_name": "Bookshop", "phases": [' + ", ".join(f'{{"n": {i}}}' for i in range(60)) + "]}"


@pytest.fixture
def server() -> Iterator[WireServer]:
    """A stand-in API server with an empty script (tests load their replies)."""
    with WireServer() as wire:
        yield wire


def sync_client(server: WireServer, *, max_retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=FAKE_ANTHROPIC_KEY, base_url=server.base_url, max_retries=max_retries, timeout=10.0
    )


def async_client(server: WireServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=FAKE_ANTHROPIC_KEY, base_url=server.base_url, max_retries=0, timeout=10.0)


def streamed_message(client: anthropic.Anthropic) -> anthropic.types.Message:
    """One streamed Messages call read to its end through the SDK's stream helper."""
    with client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
        return stream.get_final_message()


def only_exchange(timeline: Timeline) -> LLMExchange:
    exchanges = timeline.of(LLMExchange)
    assert len(exchanges) == 1, exchanges
    return exchanges[0]


def shown_forms(exchange: LLMExchange) -> list[str]:
    """Every way an exchange can be shown: repr, its fields (asdict where it can copy them), its error's live exception."""
    forms = [repr(exchange), json.dumps(exchange.request)]
    if exchange.error is None:
        forms.append(str(asdict(exchange)))  # asdict deep-copies a live exception, which some cannot survive
    else:
        forms += [str({f.name: getattr(exchange, f.name) for f in fields(exchange)}), str(exchange.error.to_dict())]
        forms += [repr(exchange.error.exception), str(exchange.error.exception)]
    return forms


def assert_no_secret(timeline: Timeline) -> None:
    for exchange in timeline.of(LLMExchange):
        for shown in shown_forms(exchange):
            assert FAKE_ANTHROPIC_KEY not in shown
            assert FAKE_OPENAI_KEY not in shown


# -- answers ---------------------------------------------------------------------------------


def test_sync_message_is_recorded_with_usage_text_and_the_calling_line(server: WireServer) -> None:
    """A plain Messages call is one exchange: request, status, text, stop reason, every usage field, the app's line."""
    server.load(WireScript(anthropic=[MessageReply(PLAN, input_tokens=120, output_tokens=300)]))
    timeline = Timeline()
    client = sync_client(server)
    with HttpWatch(timeline, HERE):
        message = client.messages.create(model="claude-test-model", max_tokens=2048, messages=MESSAGES)

    exchange = only_exchange(timeline)
    assert message.content[0].text == PLAN
    assert (exchange.provider, exchange.api, exchange.method) == ("anthropic", "messages", "POST")
    assert exchange.url == server.base_url + "/v1/messages"
    assert exchange.request["messages"] == MESSAGES
    assert (exchange.model, exchange.max_tokens, exchange.streamed) == ("claude-test-model", 2048, False)
    assert (exchange.status, exchange.text, exchange.stop_reason) == (200, PLAN, "end_turn")
    assert exchange.usage["input_tokens"] == 120 and exchange.output_tokens == 300
    assert exchange.usage["cache_creation_input_tokens"] == 0 and exchange.usage["cache_read_input_tokens"] == 0
    assert "cache_creation" in exchange.usage and exchange.usage["service_tier"] == "standard"
    assert exchange.answered_model == "claude-test-model"
    assert exchange.complete and exchange.body_is_json and exchange.answered
    assert exchange.headers["request-id"].startswith("req_") and "set-cookie" not in exchange.headers
    assert exchange.latency_s is not None and exchange.latency_s >= 0
    assert (exchange.transport, exchange.blocking_loop) == ("httpx2/sync", False)
    assert (
        exchange.caller is not None
        and exchange.caller.function == "test_sync_message_is_recorded_with_usage_text_and_the_calling_line"
    )
    assert "messages.create" in (exchange.caller.code or "")
    assert exchange.error is None and exchange.watch_error is None
    assert_no_secret(timeline)


def test_sync_stream_text_is_concatenated_and_usage_merged_across_events(server: WireServer) -> None:
    """A streamed answer read through the SDK's helper keeps the whole text and message_start + message_delta usage."""
    server.load(WireScript(anthropic=[MessageReply(PLAN, chunk_chars=7, input_tokens=50, output_tokens=321)]))
    timeline = Timeline()
    with (
        HttpWatch(timeline, HERE),
        sync_client(server).messages.stream(model="claude-test-model", max_tokens=4096, messages=MESSAGES) as stream,
    ):
        text = stream.get_final_text()

    exchange = only_exchange(timeline)
    assert text == PLAN == exchange.text
    assert exchange.streamed and exchange.complete and exchange.stop_reason == "end_turn"
    assert exchange.usage["input_tokens"] == 50 and exchange.usage["output_tokens"] == 321
    assert exchange.headers["content-type"].startswith("text/event-stream")
    assert exchange.body_is_json is True


def test_async_message_and_stream_are_recorded(server: WireServer) -> None:
    """The async client's plain and streamed calls are recorded as httpx2/async exchanges, in send order."""
    server.load(
        WireScript(anthropic=[MessageReply("first"), MessageReply(PLAN, chunk_chars=11, stop_reason="max_tokens")])
    )
    timeline = Timeline()

    async def flow() -> str:
        client = async_client(server)
        await client.messages.create(model="claude-test-model", max_tokens=10, messages=MESSAGES)
        stream = await client.messages.create(model="claude-test-model", max_tokens=10, messages=MESSAGES, stream=True)
        async for _event in stream:
            pass
        return "done"

    with HttpWatch(timeline, HERE):
        asyncio.run(flow())

    plain, streamed = timeline.of(LLMExchange)
    assert plain.seq < streamed.seq
    assert (plain.text, plain.transport, plain.complete) == ("first", "httpx2/async", True)
    assert (streamed.text, streamed.streamed, streamed.complete) == (PLAN, True, True)
    assert streamed.stop_reason == "max_tokens" and streamed.truncated
    assert plain.caller is not None and plain.caller.function == "flow"
    assert not plain.blocking_loop and not streamed.blocking_loop


def test_sync_call_inside_a_running_loop_is_flagged_as_blocking_it(server: WireServer) -> None:
    """A sync SDK call made from async code is marked blocking_loop; the same call outside a loop is not."""
    server.load(WireScript(anthropic=[MessageReply("inside"), MessageReply("outside")]))
    timeline = Timeline()
    client = sync_client(server)

    async def flow() -> None:
        client.messages.create(model="claude-test-model", max_tokens=10, messages=MESSAGES)

    with HttpWatch(timeline, HERE):
        asyncio.run(flow())
        client.messages.create(model="claude-test-model", max_tokens=10, messages=MESSAGES)

    inside, outside = timeline.of(LLMExchange)
    assert inside.blocking_loop and inside.transport == "httpx2/sync"
    assert not outside.blocking_loop


def test_openai_embeddings_count_vectors(server: WireServer) -> None:
    """An embeddings call records how many vectors came back and the usage, with the OpenAI key nowhere."""
    server.load(WireScript(openai=[EmbeddingReply(dimensions=16)]))
    timeline = Timeline()
    client = openai.OpenAI(api_key=FAKE_OPENAI_KEY, base_url=server.base_url + "/v1", max_retries=0, timeout=10.0)
    with HttpWatch(timeline, HERE):
        result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])

    exchange = only_exchange(timeline)
    assert len(result.data) == 3
    assert (exchange.provider, exchange.api, exchange.vectors) == ("openai", "embeddings", 3)
    assert exchange.usage == {"prompt_tokens": 3, "total_tokens": 3}
    assert exchange.headers["x-request-id"].startswith("req_")
    assert exchange.complete and exchange.text is None
    assert_no_secret(timeline)


def test_gzip_body_is_decoded_for_the_exchange(server: WireServer) -> None:
    """A gzip-encoded answer (read raw through the watcher) is decoded before it is read."""
    timeline = Timeline()
    with WireServer(WireScript(anthropic=[MessageReply(PLAN)]), compress=True) as compressed, HttpWatch(timeline):
        message = sync_client(compressed).messages.create(model="m", max_tokens=10, messages=MESSAGES)
    assert message.content[0].text == PLAN == only_exchange(timeline).text


# -- failures --------------------------------------------------------------------------------


def test_rate_limit_keeps_retry_after_and_the_error_body(server: WireServer) -> None:
    """A 429 is recorded with its retry-after header and error type; the SDK's RateLimitError reaches the app unchanged."""
    server.load(WireScript(anthropic=[ErrorReply.for_status(429)]))
    timeline = Timeline()
    with HttpWatch(timeline), pytest.raises(anthropic.RateLimitError):
        sync_client(server).messages.create(model="m", max_tokens=10, messages=MESSAGES)

    exchange = only_exchange(timeline)
    assert exchange.status == 429 and exchange.headers["retry-after"] == "1"
    assert exchange.api_error_type == "rate_limit_error"
    assert "rate limit" in (exchange.api_error_message or "")
    assert not exchange.answered and exchange.error is None


def test_a_retry_has_the_digest_of_the_first_attempt(server: WireServer) -> None:
    """The SDK's retry after a 529 is a second exchange with the same request digest."""
    server.load(WireScript(anthropic=[ErrorReply.for_status(529, headers={"retry-after": "0.01"}), MessageReply("ok")]))
    timeline = Timeline()
    with HttpWatch(timeline):
        sync_client(server, max_retries=1).messages.create(model="m", max_tokens=10, messages=MESSAGES)

    first, retry = timeline.of(LLMExchange)
    assert (first.status, first.api_error_type, retry.status, retry.text) == (529, "overloaded_error", 200, "ok")
    assert first.request_digest == retry.request_digest


def test_sse_error_event_is_a_stream_error(server: WireServer) -> None:
    """An ``event: error`` mid-stream marks the exchange as a stream error with its type, after the partial text."""
    server.load(WireScript(anthropic=[StreamErrorReply(after_chars=120, chunk_chars=40)]))
    timeline = Timeline()
    with HttpWatch(timeline), pytest.raises(anthropic.APIStatusError):
        for _event in sync_client(server).messages.create(model="m", max_tokens=10, messages=MESSAGES, stream=True):
            pass

    exchange = only_exchange(timeline)
    assert exchange.status == 200 and exchange.stream_error and not exchange.answered
    assert (exchange.api_error_type, exchange.api_error_message) == ("overloaded_error", "Overloaded")
    assert exchange.text is not None and len(exchange.text) == 120
    assert not exchange.complete


def test_stream_cut_before_its_stop_events_is_incomplete(server: WireServer) -> None:
    """A stream that ends after its text with no stop events: the SDK returns normally, the exchange is incomplete."""
    server.load(WireScript(anthropic=[MessageReply(PLAN, cut_stream=True, chunk_chars=50)]))
    timeline = Timeline()
    with HttpWatch(timeline):
        final = streamed_message(sync_client(server))

    exchange = only_exchange(timeline)
    assert final.stop_reason is None
    assert (exchange.complete, exchange.stop_reason, exchange.text) == (False, None, PLAN)
    assert exchange.error is None and exchange.status == 200


def test_connection_dropped_mid_stream_is_an_error_with_the_partial_text(server: WireServer) -> None:
    """A TCP connection closed in the middle of the body is the exchange's error; the text so far is kept."""
    server.load(WireScript(anthropic=[MessageReply(PLAN, drop_connection=True, chunk_chars=50)]))
    timeline = Timeline()
    with HttpWatch(timeline), pytest.raises(Exception) as raised:
        streamed_message(sync_client(server))

    exchange = only_exchange(timeline)
    assert exchange.error is not None and exchange.error.exception is raised.value
    assert exchange.error.type == "RemoteProtocolError"
    assert exchange.text == PLAN and not exchange.complete and exchange.status == 200


def test_html_body_with_status_200_is_not_json(server: WireServer) -> None:
    """A proxy's HTML page with status 200 is recorded as not JSON, with its first characters."""
    server.load(WireScript(anthropic=[RawReply()]))
    timeline = Timeline()
    with HttpWatch(timeline):
        answer = sync_client(server).messages.create(model="m", max_tokens=10, messages=MESSAGES)

    exchange = only_exchange(timeline)
    assert isinstance(answer, str)  # what the SDK does with it
    assert exchange.status == 200 and exchange.body_is_json is False
    assert "502 Bad Gateway" in (exchange.body_head or "")
    assert exchange.text is None and exchange.stop_reason is None


def test_truncated_json_body_is_not_json(server: WireServer) -> None:
    """A 200 whose JSON body stops half-way is recorded as not JSON; the SDK's JSONDecodeError reaches the app."""
    body = json.dumps({"id": "msg_01", "type": "message", "content": [{"type": "text", "text": PLAN}]}).encode()[:90]
    server.load(WireScript(anthropic=[RawReply(body=body, content_type="application/json")]))
    timeline = Timeline()
    with HttpWatch(timeline), pytest.raises(json.JSONDecodeError):
        sync_client(server).messages.create(model="m", max_tokens=10, messages=MESSAGES)

    exchange = only_exchange(timeline)
    assert exchange.body_is_json is False and exchange.body_head == body.decode()


def test_connection_refused_is_the_exchange_error() -> None:
    """A request to a port nobody listens on is an exchange with no status and the transport's error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    timeline = Timeline()
    client = anthropic.Anthropic(
        api_key=FAKE_ANTHROPIC_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout=5
    )
    with HttpWatch(timeline, HERE), pytest.raises(anthropic.APIConnectionError):
        client.messages.create(model="m", max_tokens=10, messages=MESSAGES)

    exchange = only_exchange(timeline)
    assert exchange.status is None and exchange.error is not None
    assert exchange.error.type == "ConnectError"
    assert exchange.latency_s is not None and not exchange.complete


def test_unread_stream_is_finished_incomplete_when_watching_ends(server: WireServer) -> None:
    """A stream the app neither read nor closed is incomplete with no latency once the watch is left."""
    server.load(WireScript(anthropic=[MessageReply(PLAN)]))
    timeline = Timeline()
    client = httpx2.Client(timeout=10)
    with HttpWatch(timeline):
        response = client.send(
            client.build_request("POST", server.base_url + "/v1/messages", json={"model": "m", "stream": True}),
            stream=True,
        )
    exchange = only_exchange(timeline)
    assert exchange.status == 200 and not exchange.complete and exchange.latency_s is None
    response.close()
    client.close()


# -- record/replay and fault injection keep working beneath the watcher ------------------------


def test_recording_and_replaying_a_cassette_are_observed(server: WireServer, tmp_path: Path) -> None:
    """Recording through vcrpy and replaying the cassette each give the same exchange; a request not recorded is an error naming the mismatch."""
    cassette = tmp_path / "plan.yaml"
    server.load(WireScript(anthropic=[MessageReply(PLAN, chunk_chars=9)]))
    recorded = Timeline()
    meta = {"name": "plan", "request": "Plan a bookshop", "expect": "pass"}
    with recording(cassette, meta, stand_ins={server.base_url: "https://api.anthropic.com"}), HttpWatch(recorded):
        streamed_message(sync_client(server))

    replayed = Timeline()
    official = anthropic.Anthropic(
        api_key=FAKE_ANTHROPIC_KEY, base_url="https://api.anthropic.com", max_retries=0, timeout=10
    )
    with replaying(cassette), HttpWatch(replayed, HERE):
        with official.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            text = stream.get_final_text()
        with pytest.raises(anthropic.APIConnectionError):
            official.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "Plan a zoo"}])

    live, played, missing = only_exchange(recorded), *replayed.of(LLMExchange)
    assert text == PLAN == live.text == played.text
    assert live.complete and played.complete and played.usage == live.usage
    assert played.request_digest == live.request_digest
    assert missing.status is None and missing.error is not None
    assert missing.error.type == "CannotOverwriteExistingCassetteException"
    assert "json_body" in missing.error.message
    assert_no_secret(replayed)


def test_fault_injection_is_observed() -> None:
    """Answers and faults injected by respx under the SDK are recorded like real ones."""
    timeline = Timeline()
    client = anthropic.Anthropic(api_key=FAKE_ANTHROPIC_KEY, max_retries=0, timeout=5)
    with LLMFaults.mocking() as faults, HttpWatch(timeline):
        faults.on_messages(faults.message(PLAN), faults.status(529), faults.stream_cut("half"), faults.timeout())
        client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
        with pytest.raises(anthropic.InternalServerError):
            client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
        with client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            stream.get_final_text()
        with pytest.raises(anthropic.APITimeoutError):
            client.messages.create(model="m", max_tokens=10, messages=MESSAGES)

    answered, overloaded, cut, timed_out = timeline.of(LLMExchange)
    assert answered.text == PLAN and answered.complete
    assert (overloaded.status, overloaded.api_error_type) == (529, "overloaded_error")
    assert (cut.text, cut.complete, cut.stop_reason) == ("half", False, None)
    assert timed_out.error is not None and timed_out.error.type == "ReadTimeout"


# -- the first httpx generation (anthropic 0.x, openai 1.x) ------------------------------------


def test_httpx_first_generation_sync_and_async_are_recorded(server: WireServer) -> None:
    """Plain httpx clients (what older SDKs send through) are recorded, streamed or not, sync or async."""
    server.load(
        WireScript(anthropic=[MessageReply("plain"), MessageReply(PLAN, chunk_chars=13), MessageReply("async")])
    )
    url = server.base_url + "/v1/messages"
    body = {"model": "claude-3-5-sonnet", "max_tokens": 10, "messages": MESSAGES}
    timeline = Timeline()

    async def async_call() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            await client.post(url, json=body)

    with HttpWatch(timeline), httpx.Client(timeout=10) as client:
        assert client.post(url, json=body).json()["content"][0]["text"] == "plain"
        with client.stream("POST", url, json={**body, "stream": True}) as response:
            lines = list(response.iter_lines())
        asyncio.run(async_call())

    plain, streamed, later = timeline.of(LLMExchange)
    assert any(line.startswith("event: message_stop") for line in lines)
    assert (plain.transport, plain.text, plain.complete) == ("httpx/sync", "plain", True)
    assert (streamed.transport, streamed.text, streamed.complete) == ("httpx/sync", PLAN, True)
    assert (later.transport, later.text) == ("httpx/async", "async")


# -- the wire format in detail (shapes the stand-in server does not send) ----------------------


def _mock_client(body: bytes | list[bytes], content_type: str, status: int = 200) -> httpx2.Client:
    """An httpx2 client whose transport answers with ``body`` (chunks in order): httpx2's own MockTransport,
    used here only because the stand-in server cannot send these shapes."""
    chunks = body if isinstance(body, list) else [body]

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            status,
            headers={"content-type": content_type},
            stream=httpx2.ByteStream(b"".join(chunks)) if len(chunks) == 1 else _Chunks(chunks),
        )

    return httpx2.Client(transport=httpx2.MockTransport(answer))


class _Chunks(httpx2.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks


def _sse(*events: tuple[str | None, object], newline: str = "\n", pad: str = " ") -> bytes:
    out = []
    for name, data in events:
        head = f"event: {name}{newline}" if name else ""
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        out.append(f"{head}data:{pad}{payload}{newline}{newline}")
    return "".join(out).encode()


def test_sse_with_crlf_padding_thinking_and_one_byte_chunks() -> None:
    """CRLF line ends, padded data lines, thinking blocks and chunks split inside UTF-8 characters give the text blocks only."""
    stream = _sse(
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "model": "claude-opus-4",
                    "usage": {"input_tokens": 9, "cache_read_input_tokens": 4, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}},
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Café — "}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "日本"}},
        ),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
        ),
        ("message_stop", {"type": "message_stop"}),
        newline="\r\n",
        pad="   ",
    )
    client = _mock_client([stream[i : i + 1] for i in range(len(stream))], "text/event-stream")
    timeline = Timeline()
    with HttpWatch(timeline):
        request = client.build_request("POST", "https://api.anthropic.com/v1/messages?beta=true", json={"stream": True})
        response = client.send(request, stream=True)
        for _chunk in response.iter_raw():
            pass

    exchange = only_exchange(timeline)
    assert exchange.url == "https://api.anthropic.com/v1/messages?beta=true"
    assert exchange.text == "Café — 日本" and exchange.complete and exchange.stop_reason == "end_turn"
    assert exchange.usage == {"input_tokens": 9, "cache_read_input_tokens": 4, "output_tokens": 7}
    assert exchange.answered_model == "claude-opus-4" and exchange.body_is_json


def test_openai_chat_completions_plain_and_streamed() -> None:
    """The OpenAI SDK's chat answers give the message content, finish_reason and usage, streamed ([DONE]) or not."""
    plain = {
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": PLAN}, "finish_reason": "length"}],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 9,
            "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }
    chunks = [
        (
            None,
            {
                "object": "chat.completion.chunk",
                "model": "gpt-4o",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            },
        )
        for piece in ("Hel", "lo")
    ]
    chunks.append(
        (
            None,
            {
                "object": "chat.completion.chunk",
                "model": "gpt-4o",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
        )
    )
    chunks.append(
        (
            None,
            {
                "object": "chat.completion.chunk",
                "model": "gpt-4o",
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2},
            },
        )
    )
    chunks.append((None, "[DONE]"))
    answers = iter([(json.dumps(plain).encode(), "application/json"), (_sse(*chunks), "text/event-stream")])

    def answer(request: httpx2.Request) -> httpx2.Response:
        body, content_type = next(answers)
        return httpx2.Response(200, headers={"content-type": content_type}, content=body)

    client = openai.OpenAI(
        api_key=FAKE_OPENAI_KEY, http_client=httpx2.Client(transport=httpx2.MockTransport(answer)), max_retries=0
    )
    timeline = Timeline()
    with HttpWatch(timeline):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=9)
        stream = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "Hello"

    whole, streamed = timeline.of(LLMExchange)
    assert (whole.api, whole.text, whole.stop_reason, whole.truncated, whole.max_tokens) == (
        "chat",
        PLAN,
        "length",
        True,
        9,
    )
    assert whole.usage["prompt_tokens_details"] == {"cached_tokens": 2} and whole.output_tokens == 9
    assert (streamed.text, streamed.stop_reason, streamed.complete, streamed.usage["completion_tokens"]) == (
        "Hello",
        "stop",
        True,
        2,
    )
    assert_no_secret(timeline)


def test_openai_error_body_and_in_stream_error() -> None:
    """OpenAI's error body and its in-stream error object are recorded with their type and redacted message."""
    error = {
        "error": {
            "message": f"Incorrect API key provided: {FAKE_OPENAI_KEY}.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    answers = iter(
        [
            httpx2.Response(401, json=error),
            httpx2.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=_sse((None, {"error": {"type": "server_error", "message": "boom"}})),
            ),
        ]
    )
    client = openai.OpenAI(
        api_key=FAKE_OPENAI_KEY,
        http_client=httpx2.Client(transport=httpx2.MockTransport(lambda request: next(answers))),
        max_retries=0,
    )
    timeline = Timeline()
    with HttpWatch(timeline):
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        with pytest.raises(openai.APIError):
            for _chunk in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
                pass

    refused, failed = timeline.of(LLMExchange)
    assert (refused.status, refused.api_error_type) == (401, "invalid_request_error")
    assert "Incorrect API key" in (refused.api_error_message or "")
    assert failed.stream_error and failed.api_error_type == "server_error"
    assert_no_secret(timeline)


def test_openai_responses_api() -> None:
    """A Responses answer gives its output text, usage, and the incomplete reason as the stop reason."""
    document = {
        "object": "response",
        "model": "gpt-5",
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [{"type": "reasoning"}, {"type": "message", "content": [{"type": "output_text", "text": "Partial"}]}],
        "usage": {"input_tokens": 3, "output_tokens": 16, "output_tokens_details": {"reasoning_tokens": 12}},
    }
    client = _mock_client(json.dumps(document).encode(), "application/json")
    timeline = Timeline()
    with HttpWatch(timeline):
        client.post(
            "https://api.openai.com/v1/responses", json={"model": "gpt-5", "input": "x", "max_output_tokens": 16}
        )

    exchange = only_exchange(timeline)
    assert (exchange.api, exchange.text, exchange.stop_reason, exchange.truncated) == (
        "responses",
        "Partial",
        "max_output_tokens",
        True,
    )
    assert exchange.usage["output_tokens_details"] == {"reasoning_tokens": 12} and exchange.max_tokens == 16


# -- what is recorded, and what is not --------------------------------------------------------


def test_endpoints_recorded() -> None:
    """Only POSTs to the Messages, Chat Completions, Responses and Embeddings endpoints are LLM exchanges."""
    assert llm_endpoint("POST", "https://api.anthropic.com/v1/messages?beta=true") == http_watch.Endpoint(
        "anthropic", "messages"
    )
    assert llm_endpoint("post", "https://gw.example/openai/deployments/x/chat/completions?api-version=1").api == "chat"
    assert llm_endpoint("POST", "https://api.openai.com/v1/responses").api == "responses"
    assert llm_endpoint("POST", "https://api.openai.com/v1/embeddings").provider == "openai"
    assert llm_endpoint("GET", "https://api.anthropic.com/v1/messages") is None
    assert llm_endpoint("POST", "https://api.anthropic.com/v1/messages/count_tokens") is None
    assert llm_endpoint("POST", "https://api.anthropic.com/v1/messages/batches") is None


def test_other_traffic_passes_untouched(server: WireServer) -> None:
    """Requests to anything but an LLM endpoint are not recorded and answer exactly as without the watch."""
    timeline = Timeline()
    with HttpWatch(timeline), httpx2.Client(timeout=10) as client:
        response = client.get(server.base_url + "/health")
        other = client.post(server.base_url + "/v1/files", json={"a": 1})
    assert (response.status_code, other.status_code) == (404, 404)
    assert len(timeline) == 0


def test_no_secret_in_url_prompt_or_headers(server: WireServer) -> None:
    """Credentials in the URL, secret-shaped text in the prompt and the API key never enter an exchange."""
    server.load(WireScript(anthropic=[MessageReply("ok")]))
    timeline = Timeline()
    url = server.base_url.replace("http://", "http://user:hunter2secret@") + "/v1/messages?key=abcdef123456&beta=true"
    with HttpWatch(timeline), httpx2.Client(timeout=10) as client:
        client.post(
            url,
            headers={"x-api-key": FAKE_ANTHROPIC_KEY, "authorization": f"Bearer {FAKE_ANTHROPIC_KEY}"},
            json={"model": "m", "messages": [{"role": "user", "content": f"my key is {FAKE_OPENAI_KEY}"}]},
        )
    exchange = only_exchange(timeline)
    assert "hunter2secret" not in exchange.url and "abcdef123456" not in exchange.url
    assert exchange.url.endswith("/v1/messages?key=***&beta=true")
    assert exchange.request["messages"][0]["content"] == "my key is ***"
    assert_no_secret(timeline)


def test_watch_nests_and_removes_its_patches() -> None:
    """Entering twice or two watches on one timeline record once; leaving the last restores httpx2's send."""
    original = httpx2.Client.__dict__["send"]
    timeline = Timeline()
    outer, inner = HttpWatch(timeline), HttpWatch(timeline)
    client = _mock_client(json.dumps({"type": "message", "content": []}).encode(), "application/json")
    with outer, outer, inner:
        assert httpx2.Client.__dict__["send"] is not original
        client.post("https://api.anthropic.com/v1/messages", json={})
    assert httpx2.Client.__dict__["send"] is original
    assert not outer.active
    assert len(timeline.of(LLMExchange)) == 1
    other = Timeline()
    with HttpWatch(timeline), HttpWatch(other):
        client.post("https://api.anthropic.com/v1/messages", json={})
    assert len(timeline.of(LLMExchange)) == 2 and len(other.of(LLMExchange)) == 1


def test_watcher_bug_never_breaks_the_call(server: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside the watcher's own reading (forced here by patching it) is noted, and the app still gets its answer."""

    def broken(self: object, doc: object) -> bool:
        raise KeyError("watcher bug")

    monkeypatch.setattr(http_watch._Answer, "document", broken)
    server.load(WireScript(anthropic=[MessageReply("still fine")]))
    timeline = Timeline()
    with HttpWatch(timeline):
        message = sync_client(server).messages.create(model="m", max_tokens=10, messages=MESSAGES)
    assert message.content[0].text == "still fine"
    exchange = only_exchange(timeline)
    assert exchange.watch_error is not None and "watcher bug" in exchange.watch_error
    assert exchange.status == 200


def test_gzip_request_body_is_decoded() -> None:
    """A gzip-compressed request body is decoded, so its model and digest are those of the JSON inside."""
    client = _mock_client(b"{}", "application/json")
    body = json.dumps({"model": "m", "max_tokens": 3}).encode()
    timeline = Timeline()
    with HttpWatch(timeline):
        client.post(
            "https://api.anthropic.com/v1/messages", content=gzip.compress(body), headers={"content-encoding": "gzip"}
        )
        client.post("https://api.anthropic.com/v1/messages", content=body)
    packed, plain = timeline.of(LLMExchange)
    assert (packed.model, packed.max_tokens) == ("m", 3)
    assert packed.request_digest == plain.request_digest


def test_body_in_an_encoding_the_watcher_cannot_decode_is_noted_and_still_finished() -> None:
    """A ``br`` body is not parsed (noted in watch_error), yet its status, latency and end are recorded."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "application/json", "content-encoding": "br"}
        return httpx2.Response(200, headers=headers, stream=_Chunks([b"\x0b\x02\x80{}\x03"]))

    timeline = Timeline()
    with HttpWatch(timeline), httpx2.Client(transport=httpx2.MockTransport(answer)) as client:
        response = client.post("https://api.anthropic.com/v1/messages", json={"model": "m"})
        response.close()

    exchange = only_exchange(timeline)
    assert exchange.status == 200 and exchange.latency_s is not None
    assert exchange.watch_error is not None and "'br'" in exchange.watch_error
    assert not exchange.complete
