"""Cassettes: recorded LLM exchanges (vcrpy YAML) with the harness's own metadata.

A cassette is a vcrpy cassette whose ``metadata.harness`` mapping says what it holds:
the chat request it answers, who asked, and the verdict a replay must produce
(``pass`` or ``<stage>:<check id>``). This module decides how cassettes are matched
(method, path and JSON body — a changed prompt never silently replays an old answer),
how they are redacted before they are written, and how a broken one is reported.

Any vcrpy cassette can be read and summarized, with or without that metadata — one a
team's pytest-recording suite made (extended thinking, ``?beta=true`` URLs, an older vcrpy's
httpx format, compressed bodies) included: ``replay`` needs the metadata, ``cassettes list``
and ``scan`` do not, and :mod:`harness.adopt` adds it.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import struct
import threading
import zlib
from collections import OrderedDict
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
    "expectation_problem",
    "harness_metadata",
    "json_body_differences",
    "load_cassette",
    "load_document",
    "load_meta",
    "recording",
    "replaying",
    "scan_cassette",
    "summarize_interactions",
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


#: Decoded cassettes by the digest of their bytes, most recently used last. A replay reads each
#: cassette for its metadata and vcrpy loads it again for the run and for the provoked run: the
#: YAML is decoded once per content (an edited file is a new content), and a replay process forked
#: after the metadata was read inherits every decoded cassette.
_DECODED: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
_DECODED_LIMIT = 64
_DECODED_LOCK = threading.Lock()


def load_document(path: Path) -> dict[str, Any]:
    """The decoded YAML of a vcrpy cassette (harness metadata or not); :class:`CassetteError` if it is none.

    The caller owns what it gets (a copy): the file's decoding is shared, not the document.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise CassetteError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CassetteError(path, f"cannot be read ({exc.__class__.__name__})") from None
    digest = hashlib.blake2b(raw, digest_size=20).digest()
    with _DECODED_LOCK:
        data = _DECODED.get(digest)
        if data is not None:
            _DECODED.move_to_end(digest)
    if data is None:
        data = _decode_document(path, text)
        with _DECODED_LOCK:
            _DECODED[digest] = data
            while len(_DECODED) > _DECODED_LIMIT:
                _DECODED.popitem(last=False)
    return copy.deepcopy(data)


def _decode_document(path: Path, text: str) -> dict[str, Any]:
    from vcr.serializers import yamlserializer

    try:
        # vcrpy's own safe loader: it also reads the benign Python tags older vcrpy versions wrote.
        data = yamlserializer.deserialize(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        if isinstance(exc, yaml.constructor.ConstructorError):
            raise CassetteError(path, f"holds a YAML tag a safe loader refuses{where} ({exc.problem})") from None
        raise CassetteError(path, f"not valid YAML{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        raise CassetteError(path, "not a vcrpy cassette (no 'interactions' list)")
    return data


def harness_metadata(data: dict[str, Any]) -> dict[str, Any] | None:
    """A cassette document's ``metadata.harness`` mapping; ``None`` when it has none (recorded outside the harness)."""
    metadata = data.get("metadata")
    meta = metadata.get("harness") if isinstance(metadata, dict) else None
    return meta if isinstance(meta, dict) else None


def _read(path: Path) -> tuple[dict[str, Any], CassetteMeta]:
    path = Path(path)
    data = load_document(path)
    meta = _meta_of(path, data)
    if meta is None:
        raise CassetteError(
            path,
            "has no harness metadata (metadata.harness): adopt it with "
            f"`harness cassettes adopt {path} --request ...`, or record it with `harness record`",
        )
    return data, meta


def _meta_of(path: Path, data: dict[str, Any]) -> CassetteMeta | None:
    meta = harness_metadata(data)
    if meta is None:
        return None
    missing = [key for key in _REQUIRED_META if not meta.get(key)]
    if missing:
        raise CassetteError(path, f"harness metadata lacks {', '.join(missing)}")
    known = {"name", "description", "request", "user_id", "session_id", "expect"}
    return CassetteMeta(
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
    """Read and check a cassette's harness metadata; :class:`CassetteError` if it is not usable.

    Its expectation is checked against the check catalogue too: a verdict no replay could
    give (``nonsense``, ``LLM01``, ``parse:LLM001``) is refused here, before anything runs.
    """
    meta = _read(path)[1]
    problem = expectation_problem(meta.expect)
    if problem is not None:
        raise CassetteError(meta.path, f"metadata.harness.expect {meta.expect!r} is not a verdict a replay can give: {problem}")
    return meta


def expectation_problem(expect: str) -> str | None:
    """Why ``expect`` is not a verdict a replay can give (``pass`` or ``<stage>:<error check ID>``); ``None`` if it is.

    The reason reads after "... is not a verdict a replay can give: ".
    """
    from probes import ALL_CHECKS
    from probes.core import Level, Stage

    if expect == "pass":
        return None
    stage_name, sep, check_id = expect.partition(":")
    stages = [stage.value for stage in Stage]
    example = "write pass, or <stage>:<check ID> of the first failure (e.g. llm:LLM001)"
    if not sep:
        return example
    if stage_name not in stages:
        return f"unknown stage {stage_name!r} (stages: {', '.join(stages)}); {example}"
    check = next((c for c in ALL_CHECKS if c.id == check_id), None)
    if check is None:
        close = [c.id for c in ALL_CHECKS if c.stage.value == stage_name]
        return f"no check {check_id!r} in the catalogue (`harness probes`); {stage_name} checks are: {', '.join(close)}"
    if check.stage.value != stage_name:
        return f"{check.id} is a check of stage {check.stage.value}, not {stage_name}: write {check.stage.value}:{check.id}"
    if check.level < Level.ERROR:
        return f"{check.id} is a {check.level.name.lower()}, and a verdict names the first error; write pass if the run should pass"
    return None


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
#: Endpoints whose answers end with a stop reason (a call to one without it is incomplete).
_GENERATION_PATHS = ("/messages", "/chat/completions", "/responses")


@dataclass(frozen=True)
class CallSummary:
    """One recorded exchange, read from its response: status, stop reason, usage, what the answer holds, flags."""

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
    #: The URL's query (``beta=true`` for the SDKs' beta clients); empty when it has none.
    query: str = ""
    #: The answer's content blocks by type, in order (``thinking``, ``text``, ``tool_use``, ...).
    blocks: tuple[str, ...] = ()

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
        return "no stop_reason" if self.path.rstrip("/").endswith(_GENERATION_PATHS) else "-"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "streamed": self.streamed,
            "events": self.events,
            "model": self.model,
            "stop_reason": self.stop_reason,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "blocks": list(self.blocks),
            "error_type": self.error_type,
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class CassetteSummary:
    """A cassette's metadata and what each of its recorded calls says.

    ``meta`` is ``None`` for a cassette recorded outside the harness (a pytest-recording
    suite's, say) that nobody has adopted yet: ``harness replay`` cannot use it until
    ``harness cassettes adopt`` gives it a request and an expectation.
    """

    path: Path
    meta: CassetteMeta | None
    calls: tuple[CallSummary, ...]

    @property
    def name(self) -> str:
        """The name in its metadata; the file's stem for a cassette without any."""
        return self.meta.name if self.meta is not None else self.path.stem

    @property
    def truncated(self) -> bool:
        return any(call.truncated for call in self.calls)


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else ""


def _header(headers: Any, name: str) -> str:
    if not isinstance(headers, dict):
        return ""
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value[0]) if isinstance(value, list) and value else str(value)
    return ""


def _response_parts(response: dict[str, Any]) -> tuple[int | None, Any, str]:
    """(status, headers, body text) of a recorded response, in vcrpy's format or an older vcrpy's httpx one.

    Before vcrpy 6 an httpx response was kept as ``status_code`` / ``content``; a body kept
    compressed (no ``decode_compressed_response``) is decompressed here.
    """
    headers = response.get("headers") or {}
    if "status_code" in response and "status" not in response:  # an older vcrpy's httpx format
        status: Any = response.get("status_code")
        raw: Any = response.get("content")
    else:
        status = (response.get("status") or {}).get("code") if isinstance(response.get("status"), dict) else None
        body = response.get("body")
        raw = body.get("string") if isinstance(body, dict) else body
    if isinstance(raw, (bytes, bytearray)):
        raw = _decompressed(bytes(raw), _header(headers, "content-encoding").lower())
    return (status if isinstance(status, int) else None), headers, _text(raw)


def _decompressed(raw: bytes, encoding: str) -> bytes:
    """``raw`` decoded from gzip or deflate when it is (by header or by gzip's magic number); else as it is."""
    try:
        if raw[:2] == b"\x1f\x8b" or encoding == "gzip":
            return gzip.decompress(raw)
        if encoding == "deflate":
            return zlib.decompress(raw)
    except (OSError, EOFError, zlib.error):
        pass  # not what the header says: shown as it is
    return raw


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


#: Event names of Anthropic's Messages stream (OpenAI's chat stream names none).
_MESSAGE_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)


def _anthropic_stream(events: list[tuple[str, Any]], fields: dict[str, Any], flags: list[str]) -> None:
    blocks: list[str] = []
    names = []
    for name, data in events:
        data = data if isinstance(data, dict) else {}
        name = str(data.get("type") or name)  # a stream's JSON names its event too
        names.append(name)
        if name == "message_start":
            message = data.get("message") or {}
            fields["model"] = message.get("model")
            fields["input_tokens"] = (message.get("usage") or {}).get("input_tokens")
        elif name == "content_block_start":
            block = data.get("content_block") or {}
            blocks.append(str(block.get("type") or "?"))
        elif name == "message_delta":
            fields["stop_reason"] = (data.get("delta") or {}).get("stop_reason")
            fields["output_tokens"] = (data.get("usage") or {}).get("output_tokens")
        elif name == "error":
            fields["error_type"] = (data.get("error") or {}).get("type")
    fields["blocks"] = tuple(blocks)
    if "error" in names:
        flags.append("stream-error")
    elif "message_stop" not in names or fields.get("stop_reason") is None:
        flags.append("stream-cut")


def _chat_stream(events: list[tuple[str, Any]], fields: dict[str, Any], flags: list[str]) -> None:
    """OpenAI's chat stream: unnamed ``data:`` chunks, a ``finish_reason``, usage in the last one, ``[DONE]``."""
    done = False
    for _name, data in events:
        if data == "[DONE]":
            done = True
            continue
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("error"), dict):
            fields["error_type"] = data["error"].get("type") or data["error"].get("code")
        fields["model"] = data.get("model") or fields.get("model")
        for choice in data.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                fields["stop_reason"] = choice["finish_reason"]
        usage = data.get("usage")
        if isinstance(usage, dict):
            fields["input_tokens"] = usage.get("prompt_tokens")
            fields["output_tokens"] = usage.get("completion_tokens")
    if fields.get("error_type"):
        flags.append("stream-error")
    elif not done and fields.get("stop_reason") is None:
        flags.append("stream-cut")


def _json_answer(document: dict[str, Any], fields: dict[str, Any]) -> None:
    usage = document.get("usage") if isinstance(document.get("usage"), dict) else {}
    fields["model"] = document.get("model")
    fields["stop_reason"] = document.get("stop_reason")
    fields["input_tokens"] = usage.get("input_tokens", usage.get("prompt_tokens"))
    fields["output_tokens"] = usage.get("output_tokens", usage.get("completion_tokens"))
    if isinstance(document.get("content"), list):
        fields["blocks"] = tuple(
            str(block.get("type") or "?") for block in document["content"] if isinstance(block, dict)
        )
    choices = document.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        fields["stop_reason"] = choices[0].get("finish_reason")
    if isinstance(document.get("error"), dict):
        fields["error_type"] = document["error"].get("type")


def summarize_response(method: str, uri: str, response: dict[str, Any]) -> CallSummary:
    """What a recorded (or just recorded) response says: stop reason, usage, content blocks, truncation, errors."""
    from urllib.parse import urlsplit

    status, headers, body = _response_parts(response)
    flags: list[str] = []
    fields: dict[str, Any] = {}
    streamed = "text/event-stream" in _header(headers, "content-type")
    if streamed:
        events = _sse_events(body)
        fields["events"] = len(events)
        kinds = {str(data.get("type")) for _name, data in events if isinstance(data, dict)}
        if {name for name, _data in events} & _MESSAGE_EVENTS or kinds & _MESSAGE_EVENTS:
            _anthropic_stream(events, fields, flags)
        else:
            _chat_stream(events, fields, flags)
    else:
        document = _json_or_none(body)
        _json_answer(document if isinstance(document, dict) else {}, fields)
    if fields.get("stop_reason") in ("max_tokens", "length"):
        flags.insert(0, "max_tokens")
    if isinstance(status, int) and status >= 400:
        flags.append(f"http-{status}")
    parts = urlsplit(uri)
    return CallSummary(
        method=str(method).upper(),
        path=parts.path,
        query=parts.query,
        status=status,
        streamed=streamed,
        flags=tuple(flags),
        **fields,
    )


def summarize_interactions(path: Path, data: dict[str, Any]) -> tuple[CallSummary, ...]:
    """One :class:`CallSummary` per interaction of a cassette document; :class:`CassetteError` names a broken one."""
    calls = []
    for index, interaction in enumerate(data["interactions"]):
        if not isinstance(interaction, dict) or not isinstance(interaction.get("response"), dict):
            raise CassetteError(Path(path), f"interaction {index} has no response")
        request = interaction.get("request") if isinstance(interaction.get("request"), dict) else {}
        calls.append(
            summarize_response(request.get("method", "?"), str(request.get("uri", "")), interaction["response"])
        )
    return tuple(calls)


def load_cassette(path: Path) -> CassetteSummary:
    """Any vcrpy cassette's metadata (``None`` without any) and a summary of every recorded call.

    :class:`CassetteError` if the file is not a vcrpy cassette, or its harness metadata is broken.
    """
    path = Path(path)
    data = load_document(path)
    return CassetteSummary(path, _meta_of(path, data), summarize_interactions(path, data))


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


def _without_encoding(request: Any, body: Any) -> Any:
    """An embeddings request body without ``encoding_format``: how vectors travel, not which (see below)."""
    if isinstance(body, dict) and _is_embeddings(request):
        return {key: value for key, value in body.items() if key != "encoding_format"}
    return body


def json_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: bodies equal as JSON; the failure names each differing field.

    An embeddings request matches its recording whatever encoding it asks for: openai < 1.62
    asks for floats (unless numpy is installed), later versions for base64. The recorded vectors
    are then served in the encoding asked for (:func:`_reencoded_embeddings`).
    """
    new, recorded = _without_encoding(r1, _json_or_none(r1.body)), _without_encoding(r2, _json_or_none(r2.body))
    diffs = json_body_differences(new, recorded)
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; +{len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise AssertionError(f"JSON bodies differ at: {shown}")


def _is_embeddings(request: Any) -> bool:
    return str(getattr(request, "path", "")).rstrip("/").endswith("/embeddings")


def _reencoded_embeddings(request: Any, response: dict[str, Any]) -> dict[str, Any]:
    """``response`` with its vectors in the encoding ``request`` asks for (floats, or base64 of float32).

    The API answers a float request with the same vectors it sends as base64 for another, so a
    cassette recorded by one openai generation answers the other's request as the API would.
    Anything that is not an embeddings answer to re-encode is returned as it is.
    """
    if not _is_embeddings(request):
        return response
    asked = _json_or_none(request.body)
    wanted = asked.get("encoding_format") if isinstance(asked, dict) else None
    body = response.get("body", {}).get("string")
    document = _json_or_none(body)
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        return response
    changed = False
    for item in document["data"]:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if wanted == "base64" and isinstance(vector, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            changed = True
        elif wanted != "base64" and isinstance(vector, str):
            raw = base64.b64decode(vector)
            item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
            changed = True
    if not changed:
        return response
    text = json.dumps(document)
    headers = {
        name: ([str(len(text.encode()))] if isinstance(values, list) else str(len(text.encode())))
        if name.lower() == "content-length"
        else values
        for name, values in response.get("headers", {}).items()
    }
    string = text.encode() if isinstance(body, (bytes, bytearray)) else text
    return {**response, "headers": headers, "body": {**response["body"], "string": string}}


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


class _DecodedOnce:
    """vcrpy's persister for playing back: the cassette as :func:`load_document` decodes it (once per content).

    vcrpy turns the decoded document into its requests and responses itself; saving is vcrpy's own.
    """

    @staticmethod
    def load_cassette(cassette_path: Any, serializer: Any) -> Any:
        from vcr.persisters.filesystem import CassetteDecodeError, CassetteNotFoundError
        from vcr.serialize import deserialize

        path = Path(cassette_path)
        if not path.is_file():
            raise CassetteNotFoundError()
        try:
            document = load_document(path)
        except CassetteError as exc:
            raise CassetteDecodeError(str(exc)) from None
        return deserialize("", _Decoded(document))

    @staticmethod
    def save_cassette(cassette_path: Any, cassette_dict: Any, serializer: Any) -> None:
        from vcr.persisters.filesystem import FilesystemPersister

        FilesystemPersister.save_cassette(cassette_path, cassette_dict, serializer=serializer)


@dataclass(frozen=True)
class _Decoded:
    """A vcrpy serializer that hands over a document already decoded."""

    document: dict[str, Any]

    def deserialize(self, _text: str) -> dict[str, Any]:
        return self.document


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
    recorder.register_persister(_DecodedOnce)
    with recorder.use_cassette(str(path), allow_playback_repeats=False) as cassette:
        play_response = cassette.play_response
        # The one answer vcrpy's matching cannot serve as recorded: vectors in another encoding.
        cassette.play_response = lambda request: _reencoded_embeddings(request, play_response(request))
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

    data = load_document(Path(path))
    meta = data.setdefault("metadata", {}).setdefault("harness", {})
    change(meta)
    data["metadata"]["harness"] = _scrub_value(meta)
    Path(path).write_text(yamlserializer.serialize(data), encoding="utf-8")
