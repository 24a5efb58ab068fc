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

from harness.redaction import redact_text

__all__ = [
    "CASSETTE_SUFFIXES",
    "MATCH_ON",
    "CassetteError",
    "CassetteMeta",
    "discover_cassettes",
    "json_body_differences",
    "load_meta",
    "recording",
    "replaying",
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


def load_meta(path: Path) -> CassetteMeta:
    """Read and check a cassette's harness metadata; :class:`CassetteError` if it is not usable."""
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


def _describe_leaf(path: str, new: Any, recorded: Any) -> str:
    if isinstance(new, str) and isinstance(recorded, str):
        at = next((i for i, (a, b) in enumerate(zip(new, recorded)) if a != b), min(len(new), len(recorded)))
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


def _redact_request(request: Any, stand_ins: dict[str, str]) -> Any:
    for name in list(request.headers):
        if not _keep_header(name):
            del request.headers[name]
    for stand_in, official in stand_ins.items():
        if request.uri.startswith(stand_in):
            request.uri = official + request.uri[len(stand_in) :]
    if request.body:
        body = request.body.decode("utf-8") if isinstance(request.body, bytes) else request.body
        request.body = redact_text(body).encode("utf-8")
    return request


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
        response["body"]["string"] = redact_text(body.decode("utf-8", errors="replace")).encode("utf-8")
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
    """Play a cassette back; any request it did not record fails (no network is ever used)."""
    with _vcr(record_mode="none").use_cassette(str(path), allow_playback_repeats=False) as cassette:
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
        yield cassette
