"""The local wire server speaks each API's format well enough for the real SDKs to accept it."""

from __future__ import annotations

import base64
import gzip
import json
import struct
from collections.abc import Iterator

import anthropic
import httpx2
import openai
import pytest

from harness.faults import embedding_for
from tests.support.wire_server import (
    Delayed,
    EmbeddingReply,
    ErrorReply,
    MessageReply,
    RawReply,
    StreamErrorReply,
    WireScript,
    WireServer,
)

# Not a real model name: real ones may trigger the SDK's DeprecationWarning.
MODEL = "claude-wire-test"
MESSAGES = [{"role": "user", "content": "Plan a team task manager."}]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[WireServer]:
    with WireServer() as wire:
        yield wire


@pytest.fixture
def server(shared_server: WireServer) -> WireServer:
    shared_server.reset()
    return shared_server


@pytest.fixture(scope="module")
def claude(shared_server: WireServer) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=shared_server.base_url, max_retries=0, timeout=5)
    yield client
    client.close()


@pytest.fixture(scope="module")
def gpt(shared_server: WireServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(api_key="sk-test", base_url=shared_server.base_url + "/v1", max_retries=0, timeout=5)
    yield client
    client.close()


def create(client: anthropic.Anthropic) -> object:
    return client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES)


def stream_final(client: anthropic.Anthropic) -> anthropic.types.Message:
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
        return stream.get_final_message()


def raw_events(server: WireServer) -> tuple[httpx2.Response, list[tuple[str, dict]]]:
    """POST a streaming request with plain httpx2 and split the SSE body into (event, data)."""
    response = httpx2.post(
        server.base_url + "/v1/messages",
        json={"model": MODEL, "max_tokens": 10, "messages": MESSAGES, "stream": True},
        timeout=5,
    )
    events = []
    for frame in response.text.strip().split("\n\n"):
        name_line, data_line = frame.split("\n")
        events.append((name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return response, events


# --------------------------------------------------------------------------- messages


def test_non_streaming_message_is_accepted(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A plain reply parses into a Message with the text, stop_reason, usage, echoed model and a msg_ id."""
    server.load(WireScript(anthropic=[MessageReply('{"domain": "Tasks"}', output_tokens=7)]))
    message = create(claude)
    assert isinstance(message, anthropic.types.Message)
    assert message.content[0].text == '{"domain": "Tasks"}'
    assert message.stop_reason == "end_turn"
    assert message.model == MODEL
    assert message.id.startswith("msg_01")
    assert message.usage.output_tokens == 7
    assert message.usage.input_tokens > 0


def test_max_tokens_reply_returns_normally(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A max_tokens stop is a normal return carrying stop_reason="max_tokens"."""
    server.load(WireScript(anthropic=[MessageReply('{"phases": [', stop_reason="max_tokens", model="claude-x")]))
    message = create(claude)
    assert message.stop_reason == "max_tokens"
    assert message.model == "claude-x"


def test_stream_gives_final_message(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A streamed reply assembles into the full text with stop_reason and output usage."""
    text = "".join(f"task {n}; " for n in range(300))
    server.load(WireScript(anthropic=[MessageReply(text, chunk_chars=97, output_tokens=321)]))
    message = stream_final(claude)
    assert message.content[0].text == text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 321


def test_stream_event_sequence_matches_the_wire_format(server: WireServer) -> None:
    """The SSE body has the documented event order, content type and payload shapes."""
    server.load(WireScript(anthropic=[MessageReply("abcdefghij", chunk_chars=4)]))
    response, events = raw_events(server)
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in events]
    assert names == [
        "message_start", "content_block_start", "ping",
        "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta") == "abcdefghij"
    assert events[7][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[7][1]["usage"]["output_tokens"] == 2


def test_thinking_stream_has_a_signed_thinking_block_before_the_text(server: WireServer) -> None:
    """With thinking, the stream sends a thinking block (thinking and signature deltas) at index 0 and the text at 1."""
    server.load(WireScript(anthropic=[MessageReply("abcdef", thinking="first this, then that", chunk_chars=8)]))
    _response, events = raw_events(server)
    names = [name for name, _ in events]
    assert names == [
        "message_start", "content_block_start", "ping",
        "content_block_delta", "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    deltas = [data for name, data in events if name == "content_block_delta"]
    assert "".join(d["delta"]["thinking"] for d in deltas if d["delta"]["type"] == "thinking_delta") == (
        "first this, then that"
    )
    (signature,) = [d for d in deltas if d["delta"]["type"] == "signature_delta"]
    assert signature["index"] == 0 and signature["delta"]["signature"]
    assert events[8][1] == {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}
    assert [d["index"] for d in deltas if d["delta"]["type"] == "text_delta"] == [1]
    assert events[10][1]["index"] == 1


def test_beta_thinking_replies_parse_in_the_sdk_streamed_or_not(server: WireServer, claude: anthropic.Anthropic) -> None:
    """The SDK's beta client (``?beta=true``) assembles a thinking block with its signature, then the text."""
    replies = [MessageReply("answer", thinking="pondering", padded=True), MessageReply("again", thinking="more")]
    server.load(WireScript(anthropic=replies))
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with claude.beta.messages.stream(model=MODEL, max_tokens=2048, thinking=thinking, messages=MESSAGES) as stream:
        streamed = stream.get_final_message()
    plain = claude.beta.messages.create(model=MODEL, max_tokens=2048, thinking=thinking, messages=MESSAGES)
    for message, text, thought in ((streamed, "answer", "pondering"), (plain, "again", "more")):
        assert [block.type for block in message.content] == ["thinking", "text"]
        assert (message.content[0].thinking, message.content[1].text) == (thought, text)
        assert message.content[0].signature == MessageReply("", thinking=thought).signature


def test_padded_events_space_their_json_as_the_api_writes_its_ping(server: WireServer) -> None:
    """``padded`` writes every event's data with spaces after the separators."""
    server.load(WireScript(anthropic=[MessageReply("abc", padded=True)]))
    response = httpx2.post(
        server.base_url + "/v1/messages",
        json={"model": MODEL, "max_tokens": 10, "messages": MESSAGES, "stream": True},
        timeout=5,
    )
    data_lines = [line for line in response.text.splitlines() if line.startswith("data:")]
    assert 'data: {"type": "ping"}' in data_lines
    assert all('", "' in line or line == 'data: {"type": "ping"}' or '": ' in line for line in data_lines)
    assert not any('":"' in line for line in data_lines)


def test_cut_stream_ends_without_error_and_no_stop_reason(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A stream cut before its stop events returns normally from the SDK, with stop_reason None."""
    server.load(WireScript(anthropic=[MessageReply('{"phases": [{"name": "Found', cut_stream=True, chunk_chars=10)]))
    message = stream_final(claude)
    assert message.stop_reason is None
    assert message.content[0].text == '{"phases": [{"name": "Found'


def test_cut_stream_omits_the_stop_events(server: WireServer) -> None:
    """On the wire a cut stream ends right after its last text delta."""
    server.load(WireScript(anthropic=[MessageReply("abc", cut_stream=True)]))
    _, events = raw_events(server)
    assert [name for name, _ in events][-1] == "content_block_delta"


def test_dropped_connection_surfaces_as_httpx2_protocol_error(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A connection closed mid-body is not wrapped by the SDK: httpx2.RemoteProtocolError escapes."""
    server.load(WireScript(anthropic=[MessageReply("x" * 200, drop_connection=True, chunk_chars=50)]))
    with pytest.raises(httpx2.RemoteProtocolError):
        stream_final(claude)


def test_stream_error_event_raises_api_status_error_with_status_200(
    server: WireServer, claude: anthropic.Anthropic
) -> None:
    """An in-stream `event: error` raises the base APIStatusError carrying the HTTP 200 and the error type."""
    server.load(WireScript(anthropic=[StreamErrorReply(after_chars=120)]))
    with pytest.raises(anthropic.APIStatusError) as caught:
        stream_final(claude)
    assert type(caught.value) is anthropic.APIStatusError
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (403, anthropic.PermissionDeniedError),
        (404, anthropic.NotFoundError),
        (413, anthropic.ContentTooLargeError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.OverloadedError),
    ],
)
def test_http_errors_map_to_sdk_exceptions(
    server: WireServer, claude: anthropic.Anthropic, status: int, exception: type[anthropic.APIStatusError]
) -> None:
    """Each documented error status raises its own SDK exception class with the body's error type."""
    server.load(WireScript(anthropic=[ErrorReply.for_status(status)]))
    with pytest.raises(exception) as caught:
        create(claude)
    assert type(caught.value) is exception
    assert caught.value.status_code == status
    assert caught.value.type == ErrorReply.for_status(status).error_type


def test_rate_limit_carries_retry_after(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A 429 keeps its retry-after header on the exception's response."""
    server.load(WireScript(anthropic=[ErrorReply(429, "rate_limit_error", "slow down", headers={"retry-after": "17"})]))
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(claude)
    assert caught.value.response.headers["retry-after"] == "17"
    assert caught.value.api_message == "slow down"


def test_overloaded_529_is_an_internal_server_error_subclass(server: WireServer, claude: anthropic.Anthropic) -> None:
    """In anthropic 2.x OverloadedError subclasses InternalServerError, so except-clauses must order them."""
    server.load(WireScript(anthropic=[ErrorReply.for_status(529)]))
    with pytest.raises(anthropic.InternalServerError) as caught:
        create(claude)
    assert isinstance(caught.value, anthropic.OverloadedError)


def test_html_body_is_returned_as_str(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A 200 with an HTML body makes create() return the page as a str instead of raising."""
    server.load(WireScript(anthropic=[RawReply(200, b"<html><body>Gateway</body></html>", "text/html")]))
    result = create(claude)
    assert result == "<html><body>Gateway</body></html>"


def test_truncated_json_body_raises_bare_json_decode_error(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A 200 with a truncated JSON body raises json.JSONDecodeError, not an SDK exception."""
    server.load(WireScript(anthropic=[RawReply(200, b'{"id": "msg_01", "type": "mess', "application/json")]))
    with pytest.raises(json.JSONDecodeError):
        create(claude)


def test_slow_reply_times_out(server: WireServer) -> None:
    """A reply delayed past the client's timeout raises APITimeoutError."""
    server.load(WireScript(anthropic=[Delayed(MessageReply("late"), seconds=2.0)]))
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url, max_retries=0, timeout=0.2)
    with pytest.raises(anthropic.APITimeoutError):
        create(client)
    client.close()


def test_vendor_headers_and_cookies_round_trip(server: WireServer) -> None:
    """Responses carry request and organization ids and cookies, which the SDK sends back next time."""
    server.load(WireScript(anthropic=[MessageReply("one"), MessageReply("two")]))
    claude = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url, max_retries=0, timeout=5)
    first = claude.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    create(claude)
    claude.close()
    assert first.headers["request-id"].startswith("req_011C")
    assert first.headers["anthropic-organization-id"] == server.organization_id
    assert "_cfuvid=" in first.headers["set-cookie"]
    assert "cookie" not in server.requests[0].headers
    assert "_cfuvid=" in server.requests[1].headers["cookie"]
    assert server.requests[0].headers["authorization"] == "Bearer sk-ant-test"


def test_requests_are_recorded(server: WireServer, claude: anthropic.Anthropic) -> None:
    """Each request is kept as (method, path, lower-case headers, decoded JSON body)."""
    server.load(WireScript(anthropic=[MessageReply("ok")]))
    create(claude)
    method, path, headers, body = server.requests[0]
    assert (method, path) == ("POST", "/v1/messages")
    assert "x-stainless-retry-count" in headers
    assert body["messages"] == MESSAGES and body["model"] == MODEL


def test_ids_are_fresh_per_reply_and_deterministic_per_seed() -> None:
    """Two servers with the same seed hand out the same sequence of distinct message ids."""
    sequences = []
    for _ in range(2):
        with WireServer(WireScript(anthropic=[MessageReply("a"), MessageReply("b")]), seed=7) as wire:
            client = anthropic.Anthropic(api_key="k", base_url=wire.base_url, max_retries=0, timeout=5)
            sequences.append([create(client).id, create(client).id])
            client.close()
    assert sequences[0] == sequences[1]
    assert sequences[0][0] != sequences[0][1]


def test_compressed_bodies_decode_in_the_sdk(claude: anthropic.Anthropic) -> None:
    """With compress=True JSON bodies are gzip-encoded and the SDK still decodes them."""
    with WireServer(WireScript(anthropic=[MessageReply("zipped"), MessageReply("raw")]), compress=True) as wire:
        client = claude.with_options(base_url=wire.base_url)
        assert create(client).content[0].text == "zipped"
        response = httpx2.post(
            wire.base_url + "/v1/messages", json={"model": MODEL}, headers={"accept-encoding": "gzip"}
        )
        assert response.headers["content-encoding"] == "gzip"
        assert response.json()["content"][0]["text"] == "raw"


# --------------------------------------------------------------------------- embeddings


def test_embeddings_default_base64_gives_vectors(server: WireServer, gpt: openai.OpenAI) -> None:
    """The SDK's default base64 request decodes into one 64-float vector per input, equal to embedding_for."""
    server.load(WireScript(openai=[EmbeddingReply()]))
    result = gpt.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert server.requests[0].body["encoding_format"] == "base64"
    assert [len(item.embedding) for item in result.data] == [64, 64]
    assert result.data[0].embedding == embedding_for("a")
    assert result.data[0].embedding != result.data[1].embedding
    assert result.model == "text-embedding-3-small"
    assert result.usage.total_tokens == result.usage.prompt_tokens > 0


def test_embeddings_are_deterministic_across_formats(server: WireServer, gpt: openai.OpenAI) -> None:
    """The same text gives the same vector as float lists, as base64, and on every call."""
    server.load(WireScript(openai=[EmbeddingReply(), EmbeddingReply()]))
    floats = gpt.embeddings.create(model="text-embedding-3-small", input="same text", encoding_format="float")
    encoded = gpt.embeddings.create(model="text-embedding-3-small", input=["same text"])
    assert floats.data[0].embedding == encoded.data[0].embedding == embedding_for("same text")


def test_embeddings_wire_shape(server: WireServer) -> None:
    """On the wire base64 is little-endian float32, and a requested dimensions value wins."""
    server.load(WireScript(openai=[EmbeddingReply(dimensions=8)]))
    response = httpx2.post(
        server.base_url + "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "x", "encoding_format": "base64", "dimensions": 16},
    )
    document = response.json()
    assert document["object"] == "list" and document["data"][0]["object"] == "embedding"
    raw = base64.b64decode(document["data"][0]["embedding"])
    assert list(struct.unpack("<16f", raw)) == embedding_for("x", 16)


def test_openai_errors_use_openai_shape(server: WireServer, gpt: openai.OpenAI) -> None:
    """ErrorReply on the embeddings endpoint renders OpenAI's error body and maps to its exception."""
    server.load(
        WireScript(openai=[ErrorReply(401, "invalid_request_error", "Incorrect API key", code="invalid_api_key")])
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        gpt.embeddings.create(model="text-embedding-3-small", input="a")
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.body == {
        "message": "Incorrect API key", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"
    }  # fmt: skip


# --------------------------------------------------------------------------- script handling


def test_exhausted_script_fails_loudly(server: WireServer, claude: anthropic.Anthropic) -> None:
    """A request with no reply left gets a 500 naming the problem, and is listed in exhausted."""
    server.load(WireScript(anthropic=[MessageReply("the only one")]))
    create(claude)
    with pytest.raises(anthropic.InternalServerError, match="wire script exhausted"):
        create(claude)
    assert len(server.exhausted) == 1


def test_remaining_lists_unconsumed_replies(server: WireServer, claude: anthropic.Anthropic) -> None:
    """remaining() reports what the run did not consume, per API."""
    last = MessageReply("unused")
    server.load(WireScript(anthropic=[MessageReply("used"), last], openai=[EmbeddingReply()]))
    create(claude)
    assert server.remaining() == {"anthropic": [last], "openai": [EmbeddingReply()]}


def test_reply_for_the_wrong_endpoint_is_a_script_error(server: WireServer, claude: anthropic.Anthropic) -> None:
    """An embeddings reply queued for Messages answers 500 rather than a malformed body."""
    server.load(WireScript(anthropic=[EmbeddingReply()]))
    with pytest.raises(anthropic.InternalServerError, match="cannot answer"):
        create(claude)


def test_unknown_path_is_an_anthropic_404(server: WireServer) -> None:
    """Unknown paths answer 404 with an Anthropic error body."""
    response = httpx2.get(server.base_url + "/v1/models")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_gzip_request_bodies_are_decoded(server: WireServer) -> None:
    """A gzip-encoded request body is recorded decoded."""
    server.load(WireScript(anthropic=[MessageReply("ok")]))
    payload = gzip.compress(json.dumps({"model": MODEL, "messages": MESSAGES}).encode())
    httpx2.post(
        server.base_url + "/v1/messages",
        content=payload,
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert server.requests[0].body["model"] == MODEL
