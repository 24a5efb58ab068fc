"""Cassettes: recorded LLM exchanges (vcrpy YAML) with the harness's own metadata.

A cassette is a vcrpy cassette whose ``metadata.harness`` mapping says what it holds:
the chat request it answers, who asked, and the verdict a replay must produce
(``pass`` or ``<stage>:<check id>``). This module decides how cassettes are matched
(method, path and JSON body — a changed prompt never silently replays an old answer),
how they are redacted before they are written, and how a broken one is reported.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.redaction import find_secrets, redact_identifiers, redact_text, redact_value

__all__ = [
    "CASSETTE_SUFFIXES",
    "MATCH_ON",
    "CallSummary",
    "CassetteError",
    "CassetteMeta",
    "CassetteSummary",
    "SecretHit",
    "discover_cassettes",
    "json_body_differences",
    "load_cassette",
    "load_meta",
    "recording",
    "replaying",
    "scan_cassette",
    "summarize_response",
    "update_metadata",
]

CASSETTE_SUFFIXES = (".yaml", ".yml")
#: Request parts a replayed request must share with a recorded one.
MATCH_ON = ("method", "path", "json_body")
#: Headers never written to a cassette (matched case-insensitively; ``x-stainless-*`` by prefix).
DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "api-key",
        "cookie",
        "set-cookie",
        "user-agent",
        "anthropic-organization-id",
        "openai-organization",
        "openai-project",
        "request-id",
        "x-request-id",
        "cf-ray",
        "host",
        "traceparent",
    }
)
DROPPED_HEADER_PREFIXES = ("x-stainless-",)
#: Where the real APIs live; a recording made against a stand-in server is written as if made here.
OFFICIAL_BASE_URLS = {"anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com"}


class CassetteError(Exception):
    """A cassette file cannot be used; the message names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class CassetteMeta:
    """What a cassette holds and the verdict replaying it must produce."""

    path: Path
    name: str
    description: str
    request: str
    user_id: str | None
    session_id: str | None
    expect: str
    interactions: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "request": self.request,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "expect": self.expect,
            **self.extra,
        }


_REQUIRED_META = ("name", "request", "expect")


def _read(path: Path) -> tuple[dict[str, Any], CassetteMeta]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CassetteError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CassetteError(path, f"cannot be read ({exc.__class__.__name__})") from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CassetteError(path, f"not valid YAML{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        raise CassetteError(path, "not a vcrpy cassette (no 'interactions' list)")
    meta = (data.get("metadata") or {}).get("harness") if isinstance(data.get("metadata"), dict) else None
    if not isinstance(meta, dict):
        raise CassetteError(path, "has no harness metadata (metadata.harness); record it with `harness record`")
    missing = [key for key in _REQUIRED_META if not meta.get(key)]
    if missing:
        raise CassetteError(path, f"harness metadata lacks {', '.join(missing)}")
    known = {"name", "description", "request", "user_id", "session_id", "expect"}
    return data, CassetteMeta(
        path=path,
        name=str(meta["name"]),
        description=str(meta.get("description") or ""),
        request=str(meta["request"]),
        user_id=meta.get("user_id"),
        session_id=meta.get("session_id"),
        expect=str(meta["expect"]),
        interactions=len(data["interactions"]),
        extra={key: value for key, value in meta.items() if key not in known},
    )


def load_meta(path: Path) -> CassetteMeta:
    """Read and check a cassette's harness metadata; :class:`CassetteError` if it is not usable."""
    return _read(path)[1]


def discover_cassettes(paths: list[Path]) -> list[Path]:
    """Cassette files under ``paths`` (files as given, folders searched, sorted); errors name the path."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix in CASSETTE_SUFFIXES and p.is_file())
            if not inside:
                raise CassetteError(path, "folder holds no cassette (*.yaml)")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise CassetteError(path, "no such file or folder")
    return found


# -- what a cassette holds -------------------------------------------------------------------

#: Flags a recorded call can carry; the first two mean the answer is incomplete.
TRUNCATED_FLAGS = ("max_tokens", "stream-cut")


@dataclass(frozen=True)
class CallSummary:
    """One recorded exchange, read from its response: status, stop reason, usage, flags."""

    method: str
    path: str
    status: int | None
    streamed: bool
    #: SSE events in the recorded stream (0 for a plain JSON answer).
    events: int = 0
    model: str | None = None
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    #: ``error.type`` of an HTTP error body or of an SSE ``event: error``.
    error_type: str | None = None
    #: ``max_tokens``, ``stream-cut`` (no stop events), ``stream-error``, ``http-<status>``.
    flags: tuple[str, ...] = ()

    @property
    def truncated(self) -> bool:
        """The answer is incomplete: cut at ``max_tokens`` or a stream ended without its stop events."""
        return any(flag in TRUNCATED_FLAGS for flag in self.flags)

    @property
    def outcome(self) -> str:
        """How the call ended, in a word or two: its stop reason, its error, or the lack of either."""
        if self.stop_reason:
            return self.stop_reason
        if self.error_type:
            return f"error {self.error_type}"
        return "no stop_reason" if self.path.endswith("/messages") else "-"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "streamed": self.streamed,
            "events": self.events,
            "model": self.model,
            "stop_reason": self.stop_reason,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "error_type": self.error_type,
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class CassetteSummary:
    """A cassette's metadata and what each of its recorded calls says."""

    meta: CassetteMeta
    calls: tuple[CallSummary, ...]

    @property
    def truncated(self) -> bool:
        return any(call.truncated for call in self.calls)


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else ""


def _header(headers: Any, name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) and value else str(value)
    return ""


def _sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data or name != "message":
            events.append((name, _json_or_none("\n".join(data))))
    return events


def summarize_response(method: str, uri: str, response: dict[str, Any]) -> CallSummary:
    """What a recorded (or just recorded) response says: stop reason, usage, truncation, errors."""
    from urllib.parse import urlsplit

    status = (response.get("status") or {}).get("code")
    headers = response.get("headers") or {}
    body = _text((response.get("body") or {}).get("string"))
    flags: list[str] = []
    fields: dict[str, Any] = {}
    streamed = "text/event-stream" in _header(headers, "content-type")
    if streamed:
        events = _sse_events(body)
        names = [name for name, _ in events]
        fields["events"] = len(events)
        for name, data in events:
            data = data if isinstance(data, dict) else {}
            if name == "message_start":
                message = data.get("message") or {}
                fields["model"] = message.get("model")
                fields["input_tokens"] = (message.get("usage") or {}).get("input_tokens")
            elif name == "message_delta":
                fields["stop_reason"] = (data.get("delta") or {}).get("stop_reason")
                fields["output_tokens"] = (data.get("usage") or {}).get("output_tokens")
            elif name == "error":
                fields["error_type"] = (data.get("error") or {}).get("type")
        if "error" in names:
            flags.append("stream-error")
        elif "message_stop" not in names or fields.get("stop_reason") is None:
            flags.append("stream-cut")
    else:
        document = _json_or_none(body)
        document = document if isinstance(document, dict) else {}
        usage = document.get("usage") or {}
        fields["model"] = document.get("model")
        fields["stop_reason"] = document.get("stop_reason")
        fields["input_tokens"] = usage.get("input_tokens", usage.get("prompt_tokens"))
        fields["output_tokens"] = usage.get("output_tokens")
        if isinstance(document.get("error"), dict):
            fields["error_type"] = document["error"].get("type")
    if fields.get("stop_reason") == "max_tokens":
        flags.insert(0, "max_tokens")
    if isinstance(status, int) and status >= 400:
        flags.append(f"http-{status}")
    return CallSummary(
        method=str(method).upper(),
        path=urlsplit(uri).path,
        status=status,
        streamed=streamed,
        flags=tuple(flags),
        **fields,
    )


def load_cassette(path: Path) -> CassetteSummary:
    """A cassette's metadata and a summary of every recorded call; :class:`CassetteError` if unusable."""
    data, meta = _read(path)
    calls = []
    for index, interaction in enumerate(data["interactions"]):
        if not isinstance(interaction, dict) or not isinstance(interaction.get("response"), dict):
            raise CassetteError(meta.path, f"interaction {index} has no response")
        request = interaction.get("request") if isinstance(interaction.get("request"), dict) else {}
        calls.append(
            summarize_response(request.get("method", "?"), str(request.get("uri", "")), interaction["response"])
        )
    return CassetteSummary(meta, tuple(calls))


# -- secrets left behind ----------------------------------------------------------------------


@dataclass(frozen=True)
class SecretHit:
    """A secret-shaped or known secret value found in a cassette file (never the value itself)."""

    path: Path
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}"


def _scalar_texts(node: Any) -> Iterator[tuple[int, str]]:
    """(line, decoded text) of every scalar in a composed YAML document, binary ones decoded."""
    import base64

    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.ScalarNode):
            value = current.value
            if current.tag.endswith(":binary"):
                try:
                    raw = base64.b64decode(value)
                    if raw[:2] == b"\x1f\x8b":
                        raw = gzip.decompress(raw)
                    value = raw.decode("utf-8", errors="replace")
                except (ValueError, OSError, EOFError):
                    continue
            yield current.start_mark.line + 1, value
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.extend((key, value))


def _first_kind_per_offset(text: str) -> list[tuple[str, int]]:
    """find_secrets, one kind per place (an Anthropic key also has an OpenAI key's shape)."""
    kinds: dict[int, str] = {}
    for kind, offset in find_secrets(text):
        kinds.setdefault(offset, kind)
    return [(kind, offset) for offset, kind in kinds.items()]


def scan_cassette(path: Path) -> list[SecretHit]:
    """Every secret-shaped or registered secret value in the file, with its line (1-based).

    The raw text is scanned, and so is every YAML scalar after decoding (escapes,
    ``!!binary`` and gzip), so a secret cannot hide in an encoding.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    hits = {(text.count("\n", 0, offset) + 1, kind) for kind, offset in _first_kind_per_offset(text)}
    try:
        document = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        document = None
    if document is not None:
        for line, value in _scalar_texts(document):
            hits.update((line + value.count("\n", 0, offset), kind) for kind, offset in _first_kind_per_offset(value))
    return [SecretHit(path, line, kind) for line, kind in sorted(hits)]


# -- matching ---------------------------------------------------------------------------------


def _json_or_none(body: Any) -> Any:
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", errors="replace")
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body


def json_body_differences(new: Any, recorded: Any, path: str = "") -> list[str]:
    """JSON paths at which two decoded bodies differ (key order is irrelevant)."""
    if isinstance(new, dict) and isinstance(recorded, dict):
        diffs: list[str] = []
        for key in sorted(set(new) | set(recorded), key=str):
            child = f"{path}.{key}" if path else str(key)
            if key not in recorded:
                diffs.append(f"{child} (only in this request)")
            elif key not in new:
                diffs.append(f"{child} (only in the recording)")
            else:
                diffs.extend(json_body_differences(new[key], recorded[key], child))
        return diffs
    if isinstance(new, list) and isinstance(recorded, list):
        if len(new) != len(recorded):
            return [f"{path or '(root)'} (length {len(new)} here, {len(recorded)} recorded)"]
        diffs = []
        for index, (a, b) in enumerate(zip(new, recorded, strict=True)):
            diffs.extend(json_body_differences(a, b, f"{path}[{index}]"))
        return diffs
    if new != recorded:
        return [_describe_leaf(path or "(root)", new, recorded)]
    return []


def _first_difference(new: str, recorded: str) -> int:
    """Index of the first character where two strings differ (the shorter one's length if one is a prefix).

    Halving on slice comparisons: vcrpy asks every recorded request of a cassette whether it matches,
    so a long prompt is compared with each of the others, and a loop over characters cost milliseconds each.
    """
    low, high = 0, min(len(new), len(recorded))
    while low < high:
        middle = (low + high + 1) // 2
        if new[low:middle] == recorded[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _describe_leaf(path: str, new: Any, recorded: Any) -> str:
    if isinstance(new, str) and isinstance(recorded, str):
        at = _first_difference(new, recorded)
        return f"{path} (text differs at character {at}: {new[max(0, at - 20) : at + 20]!r} vs {recorded[max(0, at - 20) : at + 20]!r})"
    return f"{path} ({json.dumps(new)[:60]} here, {json.dumps(recorded)[:60]} recorded)"


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: bodies equal as JSON; the failure names each differing field."""
    new, recorded = _json_or_none(r1.body), _json_or_none(r2.body)
    diffs = json_body_differences(new, recorded)
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; +{len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise AssertionError(f"JSON bodies differ at: {shown}")


# -- redaction before saving ------------------------------------------------------------------


def _keep_header(name: str) -> bool:
    lowered = name.lower()
    return lowered not in DROPPED_HEADERS and not lowered.startswith(DROPPED_HEADER_PREFIXES)


def _decode_body(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"cannot decode content-encoding {encoding!r}")


def _redact_request(request: Any, stand_ins: dict[str, str], scrubbed: dict[str, str] | None = None) -> Any:
    """``request`` without dropped headers, stand-in URLs or secrets; ``scrubbed`` remembers redacted bodies."""
    for name in list(request.headers):
        if not _keep_header(name):
            del request.headers[name]
    for stand_in, official in stand_ins.items():
        if request.uri.startswith(stand_in):
            request.uri = official + request.uri[len(stand_in) :]
    request.uri = redact_text(request.uri)
    if request.body:
        body = request.body.decode("utf-8") if isinstance(request.body, bytes) else request.body
        if scrubbed is None:
            clean = _scrub(body)
        elif body in scrubbed:
            clean = scrubbed[body]
        else:
            clean = scrubbed[body] = _scrub(body)
        request.body = clean.encode("utf-8")
    return request


def _scrub(text: str) -> str:
    return redact_identifiers(redact_text(text))


def _scrub_value(value: Any) -> Any:
    """:func:`_scrub` applied to every string inside a metadata value."""
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, dict):
        return {key: _scrub_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_value(item) for item in value]
    return redact_value(value)


def _redact_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for name in list(headers):
        if not _keep_header(name):
            del headers[name]
    encoding = next((v[0] for k, v in headers.items() if k.lower() == "content-encoding"), None)
    body = response.get("body", {}).get("string", b"")
    if encoding and body:
        body = _decode_body(body, encoding.lower())
        for name in [k for k in headers if k.lower() in ("content-encoding", "content-length")]:
            del headers[name]
    if isinstance(body, bytes) and body:
        response["body"]["string"] = _scrub(body.decode("utf-8", errors="replace")).encode("utf-8")
    for name, values in headers.items():
        headers[name] = [_scrub(str(value)) for value in values] if isinstance(values, list) else _scrub(str(values))
    return response


# -- use --------------------------------------------------------------------------------------


def _vcr(**options: Any) -> Any:
    import vcr

    recorder = vcr.VCR(
        serializer="yaml",
        match_on=MATCH_ON,
        decode_compressed_response=True,
        **options,
    )
    recorder.register_matcher("json_body", json_body)
    return recorder


@contextmanager
def replaying(path: Path) -> Iterator[Any]:
    """Play a cassette back; any request it did not record fails (no network is ever used).

    Each new request is redacted the way it was when recorded before it is compared, so a
    prompt that holds secret-shaped text still matches its (redacted) recording.
    """
    # vcrpy redacts each request three or four times on its way to a match: each body is scrubbed once.
    scrubbed: dict[str, str] = {}
    recorder = _vcr(
        record_mode="none", before_record_request=lambda request: _redact_request(request, {}, scrubbed)
    )
    with recorder.use_cassette(str(path), allow_playback_repeats=False) as cassette:
        yield cassette


@contextmanager
def recording(path: Path, meta: dict[str, Any], *, stand_ins: dict[str, str] | None = None) -> Iterator[Any]:
    """Record every LLM exchange into a new cassette, redacted, with ``meta`` as its harness metadata.

    ``stand_ins`` maps a local server's base URL to the official one it stands in for, so
    the cassette reads as if recorded against the real API.
    """
    stand_ins = dict(stand_ins or {})
    recorder = _vcr(
        record_mode="all",
        before_record_request=lambda request: _redact_request(request, stand_ins),
        before_record_response=_redact_response,
    )
    with recorder.use_cassette(str(path)) as cassette:
        cassette.get_metadata("harness", meta)
        try:
            yield cassette
        finally:
            # The caller fills ``meta`` in while recording; whatever it holds is redacted before saving.
            cleaned = _scrub_value(meta)
            meta.clear()
            meta.update(cleaned)


def update_metadata(path: Path, change: Any) -> None:
    """Rewrite a saved cassette's ``metadata.harness`` with ``change(meta)``, redacted like the rest."""
    from vcr.serializers import yamlserializer

    data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    meta = data.setdefault("metadata", {}).setdefault("harness", {})
    change(meta)
    data["metadata"]["harness"] = _scrub_value(meta)
    Path(path).write_text(yamlserializer.serialize(data), encoding="utf-8")
