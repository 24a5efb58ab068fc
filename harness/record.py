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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from harness.cassettes import OFFICIAL_BASE_URLS, CallSummary, recording, summarize_response
from harness.config import Settings
from harness.runner import FlowRequest, FlowRun, LLMMode, RunOptions, run_flow
from harness.target import Target

__all__ = ["RecordedCassette", "record_cassette", "recording_warnings"]


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
    target: Target | None = None,
    flow_env: dict[str, str] | None = None,
    progress: Callable[[Any], AbstractContextManager[Any]] | None = None,
) -> RecordedCassette:
    """Run ``request`` through the target's flow with ``settings`` and write every LLM exchange to ``path``.

    ``made_with`` says honestly what answered (a real API, or a local stand-in server);
    when base URLs point at a stand-in, the cassette records the official URLs instead.
    ``flow_env`` (settings the flow reads that shape its requests) is set for the run and
    kept in the cassette, so a replay sends the same requests. ``progress`` is given the run's
    timeline around the flow's call (a progress line while the live answers stream).
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
    env = dict(sorted((flow_env or {}).items()))
    meta: dict[str, Any] = {
        "name": name,
        "description": description,
        "request": request.request,
        "user_id": request.user_id,
        "session_id": request.session_id,
        "expect": "pending",
        "env": env,
        "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "made_with": made_with,
        "versions": _versions(),
    }
    cassettes: list[Any] = []

    @contextmanager
    def answers() -> Iterator[None]:
        with recording(path, meta, stand_ins=stand_ins) as cassette:
            cassettes.append(cassette)
            yield

    try:
        run = run_flow(
            settings,
            request,
            target=target,
            options=RunOptions(llm=LLMMode.FULL, flow_env=tuple(env.items()), progress=progress),
            answers=answers,
        )
        data = cassettes[0].data if cassettes else []
        calls = tuple(summarize_response(req.method, req.uri, response) for req, response in data)
        warnings = recording_warnings(calls)
        _finish_metadata(path, run, calls, warnings)
    except BaseException:
        path.unlink(missing_ok=True)  # half a recording with expectation "pending" helps nobody
        raise
    return RecordedCassette(path, run, calls, tuple(warnings))


def _finish_metadata(path: Path, run: FlowRun, calls: tuple[CallSummary, ...], warnings: list[str]) -> None:
    """Write the run's verdict and what each call said into the cassette just saved."""
    if not path.exists():
        return  # nothing was recorded (the run stopped before any LLM call)
    from harness.cassettes import update_metadata

    def fill(meta: dict[str, Any]) -> None:
        meta["expect"] = run.report.verdict
        meta["calls"] = run.observations.get("llm.calls", [])
        meta["stop_reasons"] = [call.stop_reason for call in calls]
        meta["usage"] = {
            "input_tokens": sum(call.input_tokens or 0 for call in calls),
            "output_tokens": sum(call.output_tokens or 0 for call in calls),
        }
        meta["truncated"] = any(call.truncated for call in calls)
        if warnings:
            meta["warnings"] = warnings

    update_metadata(path, fill)
