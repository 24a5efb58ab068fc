"""Record: run the flow live and keep its LLM exchanges as a redacted cassette.

The verdict of the recorded run becomes the cassette's expectation, so replaying it later
must reproduce the same verdict. The database the run writes to is the caller's: a
disposable one for cassettes of our own, the user's for a production recording.

Each recorded call is read back from what was recorded (stop reason, usage, SSE events);
a truncated answer (``max_tokens``, or a stream that ended without its stop events) is
flagged in the metadata's ``warnings`` and returned, so the recorder sees it at once.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path

from harness.cassettes import OFFICIAL_BASE_URLS, CallSummary, recording, summarize_response
from harness.config import Settings
from harness.runner import FlowRequest, FlowRun, run_flow

__all__ = ["REPLAYED_MODEL_FIELDS", "RecordedCassette", "record_cassette", "recording_warnings"]

#: Model settings that shape request bodies, kept in the cassette so replay sends the same requests.
REPLAYED_MODEL_FIELDS = (
    "discovery_max_tokens",
    "masterplan_max_tokens",
    "skeleton_max_tokens",
    "batch_max_tokens",
    "batch_max_tasks",
)


@dataclass(frozen=True)
class RecordedCassette:
    """Where the cassette went and the run it recorded."""

    path: Path
    run: FlowRun
    #: What each recorded call says, in order.
    calls: tuple[CallSummary, ...] = ()
    #: Truncated or failed recordings, one sentence each (also in ``metadata.harness.warnings``).
    warnings: tuple[str, ...] = field(default_factory=tuple)


def recording_warnings(calls: tuple[CallSummary, ...]) -> list[str]:
    """One sentence per recorded call whose answer is incomplete."""
    warnings = []
    for number, call in enumerate(calls, 1):
        where = f"call {number} ({call.method} {call.path})"
        if "max_tokens" in call.flags:
            warnings.append(f"{where} stopped at max_tokens after {call.output_tokens} output tokens: truncated")
        if "stream-cut" in call.flags:
            warnings.append(f"{where}: the stream ended without its stop events (no message_stop): truncated")
        if "stream-error" in call.flags:
            warnings.append(f"{where}: the stream carried an error event ({call.error_type})")
    return warnings


def _versions() -> dict[str, str]:
    found = {}
    for package in ("anthropic", "openai", "vcrpy", "masterplan-harness"):
        try:
            found[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def record_cassette(
    path: Path,
    *,
    name: str,
    description: str,
    request: FlowRequest,
    settings: Settings,
    made_with: str,
    force: bool = False,
) -> RecordedCassette:
    """Run ``request`` through the flow with ``settings`` and write every LLM exchange to ``path``.

    ``made_with`` says honestly what answered (a real API, or a local stand-in server);
    when base URLs point at a stand-in, the cassette records the official URLs instead.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite it")
    if path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    stand_ins = {}
    if settings.anthropic_base_url:
        stand_ins[settings.anthropic_base_url.rstrip("/")] = OFFICIAL_BASE_URLS["anthropic"]
    if settings.openai_base_url:
        local = settings.openai_base_url.rstrip("/")
        stand_ins[local.removesuffix("/v1")] = OFFICIAL_BASE_URLS["openai"]
    meta = {
        "name": name,
        "description": description,
        "request": request.request,
        "user_id": request.user_id,
        "session_id": request.session_id,
        "expect": "pending",
        "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "made_with": made_with,
        "generation_mode": settings.models.generation_mode,
        "models": {"generation": settings.models.generation, "embedding": settings.models.embedding},
        "max_tokens": {name: getattr(settings.models, name) for name in REPLAYED_MODEL_FIELDS},
        "versions": _versions(),
    }
    try:
        with recording(path, meta, stand_ins=stand_ins) as cassette:
            run = run_flow(settings, request)
            calls = tuple(summarize_response(req.method, req.uri, response) for req, response in cassette.data)
            warnings = recording_warnings(calls)
            meta["expect"] = run.report.verdict
            meta["attempts"] = run.observations.get("attempts", [])
            meta["calls"] = [
                {"point": key.removeprefix("llm."), **value}
                for key, value in run.observations.items()
                if key.startswith("llm.")
            ]
            meta["stop_reasons"] = [call.stop_reason for call in calls]
            meta["usage"] = {
                "input_tokens": sum(call.input_tokens or 0 for call in calls),
                "output_tokens": sum(call.output_tokens or 0 for call in calls),
            }
            meta["truncated"] = any(call.truncated for call in calls)
            if warnings:
                meta["warnings"] = warnings
    except BaseException:
        path.unlink(missing_ok=True)  # half a recording with expectation "pending" helps nobody
        raise
    return RecordedCassette(path, run, calls, tuple(warnings))
