"""Cassettes: metadata checks, JSON-body matching, and redaction before saving."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from harness.cassettes import (
    CassetteError,
    _redact_request,
    _redact_response,
    discover_cassettes,
    json_body,
    json_body_differences,
    load_cassette,
    load_meta,
    scan_cassette,
    summarize_response,
)

VALID = """
version: 1
interactions: []
metadata:
  harness: {name: x, request: build a shop, expect: pass, user_id: u, session_id: s}
"""


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_cassette_metadata_loads(tmp_path: Path) -> None:
    """A cassette with harness metadata yields its request, identity and expectation."""
    meta = load_meta(_write(tmp_path, VALID))
    assert (meta.name, meta.request, meta.expect, meta.user_id, meta.session_id) == (
        "x",
        "build a shop",
        "pass",
        "u",
        "s",
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("interactions: [\n  - {", "not valid YAML at line"),
        ("just: a mapping\n", "not a vcrpy cassette"),
        ("version: 1\ninteractions: []\n", "has no harness metadata"),
        ("version: 1\ninteractions: []\nmetadata: {harness: {name: x}}\n", "lacks request, expect"),
    ],
)
def test_unusable_cassettes_name_the_file_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    """Each kind of broken cassette gives one clear line naming the file."""
    path = _write(tmp_path, text)
    with pytest.raises(CassetteError) as caught:
        load_meta(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_discovery_rejects_missing_paths_and_empty_folders(tmp_path: Path) -> None:
    """A missing path and a folder with no cassette are errors, not an empty run."""
    with pytest.raises(CassetteError, match="no such file"):
        discover_cassettes([tmp_path / "nope"])
    with pytest.raises(CassetteError, match="holds no cassette"):
        discover_cassettes([tmp_path])


def test_json_differences_name_the_field_and_ignore_key_order() -> None:
    """Key order is irrelevant; a changed word is reported at its JSON path."""
    recorded = {"model": "m", "messages": [{"role": "user", "content": "build a shop"}], "max_tokens": 5}
    same = {"max_tokens": 5, "messages": [{"content": "build a shop", "role": "user"}], "model": "m"}
    changed = {**same, "messages": [{"role": "user", "content": "build a store"}]}
    assert json_body_differences(same, recorded) == []
    (diff,) = json_body_differences(changed, recorded)
    assert diff.startswith("messages[0].content")


def test_matcher_failure_message_lists_differing_fields() -> None:
    """The vcrpy matcher raises with the differing field paths."""
    new = SimpleNamespace(body=json.dumps({"a": 1, "b": [1, 2]}).encode())
    old = SimpleNamespace(body=json.dumps({"a": 2, "b": [1, 2, 3]}).encode())
    with pytest.raises(AssertionError, match=r"a \(1 here, 2 recorded\).*b \(length 2 here, 3 recorded\)"):
        json_body(new, old)


def test_request_redaction_drops_secret_headers_and_rewrites_stand_in_urls() -> None:
    """Keys, cookies, stainless headers and user-agent go; the stand-in host becomes the official one."""
    request = SimpleNamespace(
        headers={
            "Authorization": "Bearer sk-ant-abcdefghijklmnopq",
            "X-Api-Key": "sk-ant-abcdefghijklmnopq",
            "Cookie": "session=abc",
            "X-Stainless-OS": "Linux",
            "User-Agent": "AsyncAnthropic/Python 2.14.0",
            "Content-Type": "application/json",
        },
        uri="http://127.0.0.1:5555/v1/messages",
        body=b'{"prompt": "my key is sk-ant-zzzzzzzzzzzzzzzz"}',
    )
    cleaned = _redact_request(request, {"http://127.0.0.1:5555": "https://api.anthropic.com"})
    assert list(cleaned.headers) == ["Content-Type"]
    assert cleaned.uri == "https://api.anthropic.com/v1/messages"
    assert b"zzzzzzzz" not in cleaned.body


def test_response_redaction_decodes_gzip_before_scrubbing() -> None:
    """A secret inside a gzipped body is found and removed; the body is stored decoded."""
    body = gzip.compress(b'{"echo": "Bearer abcdefghijklmnop"}')
    response = {
        "headers": {
            "Content-Encoding": ["gzip"],
            "Set-Cookie": ["a=b"],
            "request-id": ["req_1"],
            "Content-Length": ["9"],
        },
        "body": {"string": body},
    }
    cleaned = _redact_response(response)
    assert cleaned["headers"] == {}
    assert b"abcdefghijklmnop" not in cleaned["body"]["string"]
    assert cleaned["body"]["string"].startswith(b'{"echo"')


def _sse(*events: tuple[str, dict]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


_START = ("message_start", {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 12}}})
_DELTA = ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "{"}})


def _streamed(body: bytes, status: int = 200) -> dict:
    return {
        "status": {"code": status, "message": "OK"},
        "headers": {"Content-Type": ["text/event-stream; charset=utf-8"]},
        "body": {"string": body},
    }


def test_stream_without_stop_events_is_flagged_as_cut() -> None:
    """An SSE body with deltas but no message_delta/message_stop is a truncated recording."""
    call = summarize_response("post", "https://api.anthropic.com/v1/messages", _streamed(_sse(_START, _DELTA)))
    assert (call.streamed, call.events, call.stop_reason, call.input_tokens) == (True, 2, None, 12)
    assert call.flags == ("stream-cut",) and call.truncated and call.outcome == "no stop_reason"


def test_stream_stopped_at_max_tokens_is_flagged_with_its_usage() -> None:
    """message_delta's stop_reason and output usage are read from the stream."""
    delta = ("message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 32000}})
    body = _sse(_START, _DELTA, delta, ("message_stop", {"type": "message_stop"}))
    call = summarize_response("POST", "https://api.anthropic.com/v1/messages", _streamed(body))
    assert (call.stop_reason, call.output_tokens, call.flags) == ("max_tokens", 32000, ("max_tokens",))


def test_stream_error_event_and_http_errors_are_named() -> None:
    """An SSE error event and an HTTP error body give their error type, not a truncation."""
    error = ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    streamed = summarize_response("POST", "https://x/v1/messages", _streamed(_sse(_START, _DELTA, error)))
    assert (streamed.error_type, streamed.flags, streamed.truncated) == ("overloaded_error", ("stream-error",), False)
    failed = summarize_response(
        "POST",
        "https://x/v1/messages",
        {
            "status": {"code": 401},
            "headers": {},
            "body": {"string": '{"type":"error","error":{"type":"authentication_error"}}'},
        },
    )
    assert (failed.status, failed.error_type, failed.flags) == (401, "authentication_error", ("http-401",))


def test_scan_names_the_line_of_a_planted_secret_even_inside_gzip(tmp_path: Path) -> None:
    """A secret in plain text and one hidden in a gzipped !!binary body are both reported with their lines."""
    hidden = base64.b64encode(gzip.compress(b'{"key": "sk-ant-api03-hiddenhiddenhidden"}')).decode()
    path = _write(tmp_path, VALID + f"extra:\n  plain: token sk-proj-ABCDEFGHIJKLMNOPQRST\n  blob: !!binary {hidden}\n")
    hits = scan_cassette(path)
    lines = path.read_text().splitlines()
    assert [(hit.kind, hit.line) for hit in hits] == [("openai-key", 7), ("anthropic-key", 8)]
    assert "plain:" in lines[6] and "blob:" in lines[7]
    assert str(hits[0]) == f"{path}:7: openai-key"


def test_load_cassette_summarizes_every_call(tmp_path: Path) -> None:
    """load_cassette returns the metadata and one summary per interaction."""
    interaction = {
        "request": {"method": "POST", "uri": "https://api.anthropic.com/v1/messages", "body": "{}", "headers": {}},
        "response": {
            "status": {"code": 200, "message": "OK"},
            "headers": {"content-type": ["application/json"]},
            "body": {
                "string": json.dumps({"stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 4}})
            },
        },
    }
    data = {
        "version": 1,
        "interactions": [interaction],
        "metadata": {"harness": {"name": "x", "request": "r", "expect": "pass"}},
    }
    path = _write(tmp_path, yaml.safe_dump(data))
    summary = load_cassette(path)
    (call,) = summary.calls
    assert (summary.meta.name, call.path, call.stop_reason, call.input_tokens, call.output_tokens) == (
        "x",
        "/v1/messages",
        "end_turn",
        3,
        4,
    )


def test_response_redaction_removes_request_and_organization_ids_from_bodies() -> None:
    """Ids an error body carries (request_id, an organization named in a message) do not reach the cassette."""
    body = b'{"error": {"message": "Rate limit reached in organization org-AbCdEfGhIjKlMnOpQr"}, "request_id": "req_011CabcdefGHIJKLmnop"}'
    cleaned = _redact_response({"headers": {}, "body": {"string": body}})
    assert (
        b"AbCdEfGhIjKlMnOpQr" not in cleaned["body"]["string"] and b"abcdefGHIJKLmnop" not in cleaned["body"]["string"]
    )


# -- any vcrpy cassette, recorded by the harness or not ------------------------------------------

_THINKING_STREAM = (
    'event: message_start\ndata: {"type": "message_start", "message": {"model": "claude-sonnet-4-6",'
    ' "usage": {"input_tokens": 40}}}\n\n'
    'event: content_block_start\ndata: {"type": "content_block_start", "index": 0,'
    ' "content_block": {"type": "thinking", "thinking": "", "signature": ""}}\n\n'
    'event: ping\ndata: {"type": "ping"}\n\n'
    'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0,'
    ' "delta": {"type": "thinking_delta", "thinking": "contexts first"}}\n\n'
    'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0,'
    ' "delta": {"type": "signature_delta", "signature": "EqQBCkYIBxgCKkD="}}\n\n'
    'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 0}\n\n'
    'event: content_block_start\ndata:  {"type": "content_block_start", "index": 1,'
    ' "content_block": {"type": "text", "text": ""}}   \n\n'
    'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 1,'
    ' "delta": {"type": "text_delta", "text": "{}"}}\n\n'
    'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 1}\n\n'
    'event: message_delta\ndata: {"type": "message_delta", "delta": {"stop_reason": "end_turn"},'
    ' "usage": {"output_tokens": 9}}\n\n'
    'event: message_stop\ndata: {"type": "message_stop"}\n\n'
)


def test_a_thinking_stream_with_pings_and_padded_data_lines_is_read_whole() -> None:
    """Thinking and signature deltas, a ping, padded data lines and ?beta=true: blocks, stop and usage, no flag."""
    call = summarize_response(
        "POST", "https://api.anthropic.com/v1/messages?beta=true", _streamed(_THINKING_STREAM.encode())
    )
    assert (call.path, call.query, call.events, call.blocks) == ("/v1/messages", "beta=true", 11, ("thinking", "text"))
    assert (call.model, call.stop_reason, call.input_tokens, call.output_tokens) == (
        "claude-sonnet-4-6",
        "end_turn",
        40,
        9,
    )
    assert call.flags == () and not call.truncated


def test_openai_chat_streams_end_with_done_not_message_stop() -> None:
    """A chat stream ending in [DONE] is whole (finish reason and usage read); one that stops short is cut."""
    chunk = {"model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "{}"}, "finish_reason": None}]}
    last = {"model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in (chunk, last, usage)) + "data: [DONE]\n\n"
    whole = summarize_response("POST", "https://api.openai.com/v1/chat/completions", _streamed(body.encode()))
    assert (whole.stop_reason, whole.input_tokens, whole.output_tokens, whole.flags) == ("stop", 5, 2, ())
    cut = summarize_response(
        "POST", "https://api.openai.com/v1/chat/completions", _streamed(f"data: {json.dumps(chunk)}\n\n".encode())
    )
    assert (cut.outcome, cut.flags) == ("no stop_reason", ("stream-cut",))


def test_a_gzipped_body_kept_as_recorded_is_read() -> None:
    """vcrpy without decode_compressed_response keeps a gzipped answer as bytes: it is decoded to be read."""
    answer = {"model": "m", "content": [{"type": "thinking"}, {"type": "text"}], "stop_reason": "end_turn"}
    response = {
        "status": {"code": 200, "message": "OK"},
        "headers": {"Content-Type": ["application/json"], "Content-Encoding": ["gzip"]},
        "body": {"string": gzip.compress(json.dumps(answer).encode())},
    }
    call = summarize_response("POST", "https://api.anthropic.com/v1/messages", response)
    assert (call.stop_reason, call.blocks) == ("end_turn", ("thinking", "text"))


def test_a_cassette_without_harness_metadata_is_summarized_not_refused(tmp_path: Path) -> None:
    """load_cassette reads any vcrpy cassette (no metadata: None, named by its file); replay still needs metadata."""
    interaction = {
        "request": {"method": "POST", "uri": "https://api.anthropic.com/v1/messages?beta=true", "body": "{}"},
        "response": _streamed(_THINKING_STREAM),
    }
    path = _write(tmp_path, yaml.safe_dump({"version": 1, "interactions": [interaction]}), name="test_plan.yaml")
    summary = load_cassette(path)
    assert (summary.meta, summary.name, summary.path) == (None, "test_plan", path)
    assert summary.calls[0].blocks == ("thinking", "text")
    with pytest.raises(CassetteError, match="has no harness metadata.*harness cassettes adopt"):
        load_meta(path)


def test_the_python_tags_an_older_vcrpy_wrote_are_read(tmp_path: Path) -> None:
    """Tags vcrpy's own safe loader accepts (``!!python/unicode``, ``!!python/tuple``) leave a cassette readable."""
    text = """
interactions:
- request: {method: POST, uri: !!python/unicode 'https://api.anthropic.com/v1/messages', body: '{}', headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {content-type: !!python/tuple [application/json]}
    body: {string: !!python/unicode '{"stop_reason": "end_turn"}'}
version: 1
"""
    (call,) = load_cassette(_write(tmp_path, text)).calls
    assert (call.path, call.stop_reason) == ("/v1/messages", "end_turn")


def test_a_tag_no_safe_loader_constructs_is_named(tmp_path: Path) -> None:
    """A cassette holding an object tag (code a loader would run) is refused with the reason, never constructed."""
    path = _write(tmp_path, "interactions: []\nx: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(CassetteError, match="holds a YAML tag a safe loader refuses at line 2"):
        load_cassette(path)


@pytest.mark.parametrize(("recorded_as", "replayed_as"), [("base64", "float"), ("float", "base64")])
def test_embeddings_replay_in_the_encoding_the_request_asks_for(
    tmp_path: Path, recorded_as: str, replayed_as: str
) -> None:
    """An embeddings request matches its recording whatever encoding either asked for, and gets the same vectors."""
    import openai

    from harness.cassettes import recording, replaying
    from harness.faults import embedding_for
    from harness.sdk import embedding_vector
    from probes.llm import _cassette_mismatch
    from tests.support.wire_server import EmbeddingReply, WireScript, WireServer

    cassette = tmp_path / "embeddings.yaml"
    texts = ["a shop", "a clinic"]
    with WireServer(WireScript(openai=[EmbeddingReply(dimensions=8)])) as server:
        stand_in = server.base_url
        with recording(cassette, {"name": "e", "request": "r", "expect": "pass"}, stand_ins={stand_in: OFFICIAL}):
            client = openai.OpenAI(api_key="sk-proj-test-0000", base_url=stand_in + "/v1", max_retries=0)
            client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format=recorded_as)
    client = openai.OpenAI(api_key="sk-proj-test-0000", base_url=OFFICIAL + "/v1", max_retries=0)
    with replaying(cassette):
        answer = client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format=replayed_as)
        kinds = {type(item.embedding) for item in answer.data}
        assert kinds == ({str} if replayed_as == "base64" else {list})
        assert [embedding_vector(item.embedding) for item in answer.data] == [embedding_for(t, 8) for t in texts]
    # Any other change is still a mismatch (openai < 3 wraps it in APIConnectionError, later ones do not).
    with replaying(cassette), pytest.raises(Exception) as caught:  # the class differs by generation
        client.embeddings.create(model="text-embedding-3-small", input=["another text"], encoding_format=replayed_as)
    assert "json_body" in str(_cassette_mismatch(caught.value))


OFFICIAL = "https://api.openai.com"


def test_a_cassette_is_decoded_once_per_content_and_each_caller_gets_its_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a cassette again decodes nothing; an edit is a new content (even one keeping size and mtime), and a
    caller changing its document changes nobody else's."""
    import os

    import harness.cassettes as cassettes

    decoded: list[Path] = []
    decode = cassettes._decode_document
    monkeypatch.setattr(cassettes, "_decode_document", lambda path, text: decoded.append(path) or decode(path, text))
    import uuid

    request = f"build a shop {uuid.uuid4().hex}"  # a content no other test decoded in this process
    path = _write(tmp_path, VALID.replace("build a shop", request))
    first = cassettes.load_document(path)
    first["metadata"]["harness"]["expect"] = "changed by its caller"
    assert cassettes.load_document(path)["metadata"]["harness"]["expect"] == "pass"
    assert load_meta(path).expect == "pass"
    assert decoded == [path]
    stat = path.stat()
    edited = request.replace("build a shop", "build a shoe")  # same size
    path.write_text(VALID.replace("build a shop", edited))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_meta(path).request == edited
    assert decoded == [path, path]


def test_replaying_plays_the_cassette_as_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """vcrpy plays a cassette back from the document decoded when its metadata was read: the recorded answer, byte
    for byte, and no YAML decoded again for the run or the provoked run."""
    import httpx
    from vcr.serializers import yamlserializer

    from harness.cassettes import replaying

    path = Path(__file__).resolve().parents[2] / "cassettes" / "discovery-missing-fields.yaml"
    recorded = yaml.safe_load(path.read_text())["interactions"][0]
    load_meta(path)
    decodings: list[int] = []
    decode = yamlserializer.deserialize
    monkeypatch.setattr(yamlserializer, "deserialize", lambda text: decodings.append(len(text)) or decode(text))
    for _ in range(2):
        with replaying(path), httpx.Client(timeout=5) as client:
            answer = client.request(
                recorded["request"]["method"],
                recorded["request"]["uri"],
                content=recorded["request"]["body"].encode(),
                headers={"content-type": "application/json"},
            )
        assert answer.status_code == recorded["response"]["status"]["code"]
        assert answer.text == recorded["response"]["body"]["string"]
    assert decodings == []
