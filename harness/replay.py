"""Replay: every cassette through the whole flow, each on a fresh disposable database.

The recorded answers stand in for the LLM APIs (nothing leaves the machine); the database
is real PostgreSQL, cloned per cassette from a migrated template, so commit-and-readback
is tested for real. A cassette passes when the verdict of its run equals the verdict it
expects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from harness.cassettes import CassetteError, CassetteMeta, replaying
from harness.config import GENERATION_MODES, Models, Settings
from harness.record import REPLAYED_MODEL_FIELDS
from harness.runner import FlowRequest, FlowRun, run_flow

__all__ = [
    "REPLAY_ANTHROPIC_KEY",
    "REPLAY_OPENAI_KEY",
    "ReplayResult",
    "recorded_models",
    "replay_all",
    "replay_cassette",
]

#: Keys the SDKs are given during replay: they never reach an API and are redacted like real ones.
REPLAY_ANTHROPIC_KEY = "sk-ant-replay-0000000000000000"
REPLAY_OPENAI_KEY = "sk-replay-00000000000000000000"


@dataclass(frozen=True)
class ReplayResult:
    """One cassette's replay: what it expected, what happened, how long it took."""

    meta: CassetteMeta
    run: FlowRun
    duration_s: float

    @property
    def verdict(self) -> str:
        return self.run.report.verdict

    @property
    def matched(self) -> bool:
        return self.verdict == self.meta.expect


def replay_cassette(
    meta: CassetteMeta, database_url: str, *, settings: Settings | None = None, events: Any = None
) -> ReplayResult:
    """Run one cassette's request through the flow against ``database_url``; ``events`` is its event sink."""
    base = settings or Settings()
    replay_settings = base.with_overrides(
        models=recorded_models(meta, base.models),
        database_url=database_url,
        anthropic_api_key=REPLAY_ANTHROPIC_KEY,
        openai_api_key=REPLAY_OPENAI_KEY,
        anthropic_base_url=None,
        openai_base_url=None,
    )
    started = time.perf_counter()
    with replaying(meta.path):
        run = run_flow(replay_settings, FlowRequest(meta.request, meta.user_id, meta.session_id), events=events)
    return ReplayResult(meta, run, time.perf_counter() - started)


def recorded_models(meta: CassetteMeta, models: Models) -> Models:
    """``models`` with the generation mode and request-shaping limits the cassette was recorded with."""
    mode = meta.extra.get("generation_mode", models.generation_mode)
    if mode not in GENERATION_MODES:
        raise CassetteError(
            meta.path, f"unknown generation_mode {mode!r}; expected one of {', '.join(GENERATION_MODES)}"
        )
    limits = meta.extra.get("max_tokens") or {}
    known = {name: int(limits[name]) for name in REPLAYED_MODEL_FIELDS if isinstance(limits.get(name), int)}
    return replace(models, generation_mode=mode, **known)


def replay_all(
    metas: Iterable[CassetteMeta],
    new_database: Callable[[], str],
    drop_database: Callable[[str], None],
    *,
    on_result: Callable[[ReplayResult], None] | None = None,
    events_for: Callable[[CassetteMeta], Any] | None = None,
) -> list[ReplayResult]:
    """Replay each cassette on its own fresh database; ``on_result`` sees each result as it comes.

    ``events_for(meta)``, if given, makes the event sink of that cassette's run (progress display).
    """
    results = []
    for meta in metas:
        url = new_database()
        try:
            result = replay_cassette(meta, url, events=events_for(meta) if events_for else None)
        finally:
            drop_database(url)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
