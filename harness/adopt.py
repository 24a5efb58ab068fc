"""Adopt: give a cassette recorded outside the harness what ``harness replay`` needs.

A team's pytest-recording suite already holds vcrpy cassettes of its application's LLM
calls. Adopting one adds ``metadata.harness`` — the chat request the flow is called with
(by default the first user message the cassette recorded), who asked, and the verdict a
replay must produce — and redacts the file as ``harness record`` redacts what it writes:
secret and identifying headers and cookies dropped, compressed bodies decoded, key-shaped
text and request or organization ids replaced. The file is rewritten in vcrpy's current
format (an older vcrpy's httpx format included) and scanned for secrets afterwards.
"""

from __future__ import annotations

import http
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.cassettes import (
    CallSummary,
    CassetteError,
    CassetteMeta,
    SecretHit,
    _redact_request,
    _redact_response,
    _scrub_value,
    harness_metadata,
    load_document,
    load_meta,
    scan_cassette,
    summarize_interactions,
)
from harness.record import recording_warnings

__all__ = ["AdoptedCassette", "adopt_cassette", "first_user_message"]

#: A verdict ``harness replay`` can check: ``pass`` or ``<stage>:<check id>``.
_VERDICT = re.compile(r"^(pass|[a-z]+:[A-Z]+[0-9]{3})$")


@dataclass(frozen=True)
class AdoptedCassette:
    """The adopted cassette: its new metadata, what each call holds, and what is left to look at."""

    path: Path
    meta: CassetteMeta
    calls: tuple[CallSummary, ...]
    #: Where the request came from: ``--request``, or the recorded call whose user message it is.
    request_from: str
    #: Truncated or failed recorded calls, one sentence each (also in ``metadata.harness.warnings``).
    warnings: tuple[str, ...]
    #: Secrets the scan still finds in the rewritten file (none, normally).
    secrets: tuple[SecretHit, ...]


def first_user_message(data: Mapping[str, Any]) -> tuple[int, str] | None:
    """(1-based call number, text) of the first user message a cassette's requests carry; ``None`` if none does.

    Messages (Anthropic) and chat completions (OpenAI) name it in ``messages``, a string or
    a list of content blocks whose text parts are joined; the Responses API in ``input``.
    """
    for number, interaction in enumerate(data.get("interactions") or [], 1):
        request = interaction.get("request") if isinstance(interaction, Mapping) else None
        body = request.get("body") if isinstance(request, Mapping) else None
        if isinstance(body, Mapping):  # vcrpy writes a body as text; some serializers as {string: ...}
            body = body.get("string")
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body).decode("utf-8", errors="replace")
        try:
            document = json.loads(body) if isinstance(body, str) and body else None
        except ValueError:
            continue
        if not isinstance(document, Mapping):
            continue
        if isinstance(document.get("input"), str) and document["input"].strip():
            return number, document["input"]
        for message in document.get("messages") or []:
            if isinstance(message, Mapping) and message.get("role") == "user":
                text = _content_text(message.get("content"))
                if text:
                    return number, text
    return None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(block.get("text") or "")
            for block in content
            if isinstance(block, Mapping) and block.get("type") in ("text", "input_text")
        ]
        return "\n".join(part for part in parts if part)
    return ""


def _current_format(response: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded response in vcrpy's current format, whichever vcrpy wrote it; its body as bytes."""
    from vcr.serializers import compat

    if "status_code" in response and "status" not in response:  # an older vcrpy's httpx format
        code = response.get("status_code")
        try:
            phrase = http.HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        response = {
            "status": {"code": code, "message": phrase},
            "headers": response.get("headers") or {},
            "body": {"string": response.get("content")},
        }
    converted = dict(response)
    converted["status"] = dict(converted.get("status") or {})
    converted["status"].setdefault("message", "")
    headers = converted.get("headers") or {}
    converted["headers"] = {
        str(name): [str(item) for item in value] if isinstance(value, list) else [str(value)]
        for name, value in headers.items()
    }
    body = converted.get("body")
    converted["body"] = dict(body) if isinstance(body, Mapping) else {"string": body}
    converted = compat.convert_to_bytes(converted)
    _drop_stale_encoding(converted)
    return converted


def _drop_stale_encoding(response: dict[str, Any]) -> None:
    """Drop a ``content-encoding`` header whose body is already decoded (older vcrpy kept both)."""
    body = response["body"].get("string")
    for name in [key for key in response["headers"] if key.lower() == "content-encoding"]:
        encoding = " ".join(response["headers"][name]).lower()
        still_encoded = isinstance(body, bytes) and (
            (encoding == "gzip" and body[:2] == b"\x1f\x8b") or (encoding == "deflate" and body[:1] == b"\x78")
        )
        if not still_encoded:
            del response["headers"][name]


def adopt_cassette(
    path: Path,
    *,
    request: str | None = None,
    expect: str = "pass",
    name: str | None = None,
    description: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    env: Mapping[str, str] | None = None,
    force: bool = False,
) -> AdoptedCassette:
    """Add harness metadata to the vcrpy cassette at ``path``, redact it, rewrite it, and scan it.

    ``request`` defaults to the first user message the cassette recorded; ``name`` to the
    file's stem. ``env`` holds settings the flow reads that shape its requests (kept, as
    ``harness record`` keeps them, so a replay sends the same requests). Raises
    :class:`CassetteError` for a file that is no vcrpy cassette, one that already has
    harness metadata (unless ``force``), an expectation no replay can give, or no request.
    """
    from vcr.request import Request
    from vcr.serialize import serialize
    from vcr.serializers import yamlserializer

    path = Path(path)
    data = load_document(path)
    existing = harness_metadata(data)
    if existing is not None and not force:
        raise CassetteError(
            path,
            f"already has harness metadata (name {existing.get('name')!r}, expect {existing.get('expect')!r}); "
            "pass --force to replace it",
        )
    if not _VERDICT.match(expect):
        raise CassetteError(path, f"--expect {expect!r} is not a verdict: write pass, or <stage>:<check ID>")
    summarize_interactions(path, data)  # every interaction has a response, or the error names the one without

    requests, responses = [], []
    for index, interaction in enumerate(data["interactions"]):
        try:
            recorded = Request._from_dict(interaction["request"])
        except (KeyError, TypeError, AttributeError):
            raise CassetteError(path, f"interaction {index} has no usable request") from None
        try:
            requests.append(_redact_request(recorded, {}))
        except UnicodeDecodeError:
            raise CassetteError(path, f"interaction {index}: its request body is not text (compressed?)") from None
        try:
            responses.append(_redact_response(_current_format(interaction["response"])))
        except (ValueError, OSError, EOFError, zlib.error) as exc:
            raise CassetteError(path, f"interaction {index}: its response body cannot be decoded ({exc})") from None

    document = {"interactions": [{"request": r._to_dict(), "response": resp} for r, resp in zip(requests, responses)]}
    if request is not None:
        request_from = "--request"
    else:
        found = first_user_message(document)
        if found is None:
            raise CassetteError(path, "no recorded user message to take the request from: give it with --request")
        number, request = found
        request_from = f"the first recorded user message (call {number})"
    if not request.strip():
        raise CassetteError(path, "the request is empty: give the one the flow is called with (--request)")

    calls = summarize_interactions(path, document)
    warnings = recording_warnings(calls)
    meta: dict[str, Any] = {
        "name": name or path.stem,
        "description": description or f"Adopted from {path.name}, recorded outside the harness.",
        "request": request,
        "user_id": user_id,
        "session_id": session_id,
        "expect": expect,
        "env": dict(sorted((env or {}).items())),
        "adopted_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "made_with": "recorded outside the harness (vcrpy), adopted with `harness cassettes adopt`",
        "stop_reasons": [call.stop_reason for call in calls],
        "usage": {
            "input_tokens": sum(call.input_tokens or 0 for call in calls),
            "output_tokens": sum(call.output_tokens or 0 for call in calls),
        },
        "truncated": any(call.truncated for call in calls),
    }
    if warnings:
        meta["warnings"] = warnings
    other = {key: value for key, value in (data.get("metadata") or {}).items() if key != "harness"}
    cassette = {"requests": requests, "responses": responses, "metadata": {**other, "harness": _scrub_value(meta)}}
    path.write_text(serialize(cassette, yamlserializer), encoding="utf-8")
    return AdoptedCassette(
        path=path,
        meta=load_meta(path),
        calls=calls,
        request_from=request_from,
        warnings=tuple(warnings),
        secrets=tuple(scan_cassette(path)),
    )
