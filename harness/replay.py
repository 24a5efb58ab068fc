"""Replay: every cassette through the whole flow, each on a fresh disposable database.

The recorded answers stand in for the LLM APIs (nothing leaves the machine); the database
is real PostgreSQL, cloned per cassette from a migrated template, so commit-and-readback
is tested for real. A cassette passes when the verdict of its run equals the verdict it
expects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from harness.cassettes import CassetteError, CassetteMeta, replaying
from harness.config import Settings, plain_url
from harness.runner import FlowRequest, FlowRun, LLMMode, RunOptions, run_flow
from harness.target import Target

__all__ = [
    "REPLAY_ANTHROPIC_KEY",
    "REPLAY_OPENAI_KEY",
    "ReplayResult",
    "flow_env",
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


def flow_env(meta: CassetteMeta) -> dict[str, str]:
    """The environment the recorded flow ran with that shapes its requests (``metadata.harness.env``)."""
    env = meta.extra.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
        raise CassetteError(meta.path, "metadata.harness.env must map variable names to values")
    return {name: str(value) for name, value in env.items()}


def replay_cassette(
    meta: CassetteMeta,
    database_url: str,
    *,
    settings: Settings | None = None,
    target: Target | None = None,
    disposable: tuple[Callable[[], str], Callable[[str], None]] | None = None,
    progress: Callable[[Any], AbstractContextManager[Any]] | None = None,
) -> ReplayResult:
    """Run one cassette's request through the target's flow against ``database_url``.

    ``progress`` is given the run's timeline around the flow's call (:attr:`RunOptions.progress`).
    """
    base = settings or Settings()
    replay_settings = base.with_overrides(
        # As an application reads it from its environment: no driver named, so it picks its own.
        database_url=plain_url(database_url),
        anthropic_api_key=REPLAY_ANTHROPIC_KEY,
        openai_api_key=REPLAY_OPENAI_KEY,
        anthropic_base_url=None,
        openai_base_url=None,
    )
    options = RunOptions(
        llm=LLMMode.REPLAY, provoke=True, flow_env=tuple(sorted(flow_env(meta).items())), progress=progress
    )
    started = time.perf_counter()
    run = run_flow(
        replay_settings,
        FlowRequest(meta.request, meta.user_id, meta.session_id),
        target=target,
        options=options,
        answers=lambda: replaying(meta.path),
        disposable=disposable,
    )
    return ReplayResult(meta, run, time.perf_counter() - started)


def replay_all(
    metas: Iterable[CassetteMeta],
    new_database: Callable[[], str],
    drop_database: Callable[[str], None],
    *,
    target: Target | None = None,
    on_result: Callable[[ReplayResult], None] | None = None,
    empty_database: tuple[Callable[[], str], Callable[[str], None]] | None = None,
    progress_for: Callable[[CassetteMeta], Callable[[Any], AbstractContextManager[Any]] | None] | None = None,
) -> list[ReplayResult]:
    """Replay each cassette on its own fresh database; ``on_result`` sees each result as it comes.

    ``empty_database`` makes and drops empty databases, for checking that the application's
    migrations build its models (paid once per process, not per cassette). ``progress_for``
    gives each cassette's run its progress (see :func:`replay_cassette`).
    """
    results = []
    for meta in metas:
        url = new_database()
        try:
            progress = progress_for(meta) if progress_for is not None else None
            result = replay_cassette(meta, url, target=target, disposable=empty_database, progress=progress)
        finally:
            drop_database(url)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
