"""Cassettes: metadata checks, JSON-body matching, and redaction before saving."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cassettes import (
    CassetteError,
    _redact_request,
    _redact_response,
    discover_cassettes,
    json_body,
    json_body_differences,
    load_meta,
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
