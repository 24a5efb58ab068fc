"""Replay: every cassette through the whole flow, each on a fresh disposable database.

The recorded answers stand in for the LLM APIs (nothing leaves the machine); the database
is real PostgreSQL, cloned per cassette from a migrated template, so commit-and-readback
is tested for real. A cassette passes when the verdict of its run equals the verdict it
expects.

Cassettes can be replayed concurrently (``jobs``): the flow reads its settings from
``os.environ``, which the runner sets for each call, so each concurrent replay is a process
of its own, forked from this one once it has paid for what every cassette needs (the
application's and the SDKs' imports, the migrations' trial run, the template's schema
verdict). This process makes and drops every database; results come back in cassette order.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

from harness.cassettes import CassetteError, CassetteMeta, replaying
from harness.config import Settings, plain_url
from harness.runner import FlowRequest, FlowRun, LLMMode, RunOptions, run_flow
from harness.target import Target

__all__ = [
    "REPLAY_ANTHROPIC_KEY",
    "REPLAY_OPENAI_KEY",
    "ReplayResult",
    "default_jobs",
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
    template: str | None = None,
) -> ReplayResult:
    """Run one cassette's request through the target's flow against ``database_url``.

    ``progress`` is given the run's timeline around the flow's call (:attr:`RunOptions.progress`).
    ``template`` names the template ``database_url`` is an untouched clone of, made for this run: the
    db stage's schema checks judged on an earlier clone of it are inherited (:attr:`RunOptions.template`).
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
        llm=LLMMode.REPLAY,
        provoke=True,
        flow_env=tuple(sorted(flow_env(meta).items())),
        progress=progress,
        template=template,
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


def default_jobs() -> int:
    """How many cassettes replay at once by default: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def replay_all(
    metas: Iterable[CassetteMeta],
    new_database: Callable[[], str],
    drop_database: Callable[[str], None],
    *,
    target: Target | None = None,
    on_result: Callable[[ReplayResult], None] | None = None,
    empty_database: tuple[Callable[[], str], Callable[[str], None]] | None = None,
    progress_for: Callable[[CassetteMeta], Callable[[Any], AbstractContextManager[Any]] | None] | None = None,
    template: str | None = None,
    jobs: int = 1,
    before_fork: Callable[[], None] | None = None,
) -> list[ReplayResult]:
    """Replay each cassette on its own fresh database; ``on_result`` sees each result, in cassette order.

    ``empty_database`` makes and drops empty databases, for checking that the application's
    migrations build its models (paid once per process, not per cassette). ``progress_for``
    gives each cassette's run its progress (see :func:`replay_cassette`; one cassette at a time
    only). ``template`` names the template every database ``new_database`` makes is cloned from.

    With ``jobs`` > 1 that many cassettes replay at once, each in a process forked from this one
    after a pre-flight run here has paid for what they share; ``before_fork`` is called just
    before the fork (to close connections and let background work settle: a forked child must
    not share them). The databases are made and dropped here, at most ``jobs + 1`` at a time.
    """
    from harness import interrupts

    metas = list(metas)
    if target is None:
        from harness.target import load_target

        target = load_target()
    jobs = min(jobs, len(metas))
    if jobs > 1 and _can_fork():
        return _replay_concurrently(
            metas,
            new_database,
            drop_database,
            target=target,
            on_result=on_result,
            empty_database=empty_database,
            template=template,
            jobs=jobs,
            before_fork=before_fork,
        )
    results = []
    for meta in metas:
        interrupts.check()
        url = new_database()
        try:
            progress = progress_for(meta) if progress_for is not None else None
            result = replay_cassette(
                meta, url, target=target, disposable=empty_database, progress=progress, template=template
            )
        finally:
            drop_database(url)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


# -- concurrent replay -------------------------------------------------------------------------


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def prepare_process(
    target: Target,
    metas: list[CassetteMeta],
    new_database: Callable[[], str],
    drop_database: Callable[[str], None],
    *,
    empty_database: tuple[Callable[[], str], Callable[[str], None]] | None = None,
    template: str | None = None,
) -> None:
    """Pay here, once, what every replay of ``target`` needs, so processes forked from this one start warm.

    The application's and the SDKs' imports, the harness's own lazily imported watchers and
    judges, every cassette's decoded YAML, vcrpy's patches (a cassette opened and closed), and
    one pre-flight run (env, db, auth; no flow) on a clone: the migrations' trial run (DB012), their heads, and the
    template's schema verdict are then known in this process and every one forked from it.
    """
    import importlib

    from probes.core import Stage

    _ = target.flow, target.metadata, target.code
    for module in (
        "harness.judge",
        "harness.observe.faults",
        "harness.observe.http",
        "harness.observe.loop",
        "harness.observe.orm",
        "harness.observe.output",
        "harness.observe.points",
    ):
        importlib.import_module(module)
    if metas:
        from harness.cassettes import load_document, replaying

        for meta in metas:
            load_document(meta.path)  # decoded here once, inherited by every forked process
        with replaying(metas[0].path):
            pass
    url = new_database()
    try:
        settings = Settings().with_overrides(
            database_url=plain_url(url),
            anthropic_api_key=REPLAY_ANTHROPIC_KEY,
            openai_api_key=REPLAY_OPENAI_KEY,
        )
        run_flow(
            settings,
            FlowRequest("prepare", "harness-prepare", "harness-prepare"),
            target=target,
            options=RunOptions(
                stages=frozenset({Stage.ENV, Stage.DB, Stage.AUTH}), llm=LLMMode.REPLAY, template=template
            ),
            disposable=empty_database,
        )
    finally:
        drop_database(url)


#: What a forked replay process needs, set just before the fork (a child reads its copy).
_FORKED: dict[str, Any] = {}


def _replay_in_child(index: int, meta: CassetteMeta, url: str) -> tuple[int, ReplayResult]:
    """One cassette in a forked process; the result loses what only this process could use."""
    result = replay_cassette(
        meta, url, target=_FORKED["target"], disposable=_FORKED["empty_database"], template=_FORKED["template"]
    )
    # The timeline holds live objects (exceptions with tracebacks, the app's own values): the report,
    # the observations and the saved keys are what crosses back.
    run = replace(result.run, timeline=None, returned=None)
    return index, replace(result, run=run)


def _replay_concurrently(
    metas: list[CassetteMeta],
    new_database: Callable[[], str],
    drop_database: Callable[[str], None],
    *,
    target: Target,
    on_result: Callable[[ReplayResult], None] | None,
    empty_database: tuple[Callable[[], str], Callable[[str], None]] | None,
    template: str | None,
    jobs: int,
    before_fork: Callable[[], None] | None,
) -> list[ReplayResult]:
    import multiprocessing

    prepare_process(
        target, metas, new_database, drop_database, empty_database=empty_database, template=template
    )
    if before_fork is not None:
        before_fork()
    _FORKED.update(target=target, empty_database=empty_database, template=template)
    # At most jobs + 1 databases exist at once: one for each process, and one more ready.
    slots = threading.Semaphore(jobs + 1)
    stop = threading.Event()
    urls: dict[int, str] = {}
    failed: list[BaseException] = []

    def tasks() -> Iterable[tuple[int, CassetteMeta, str]]:
        # Runs in the pool's task thread: each database is cloned while earlier cassettes replay.
        for index, meta in enumerate(metas):
            slots.acquire()
            if stop.is_set():
                return
            try:
                urls[index] = new_database()
            except BaseException as exc:  # handed to the main thread, which stops the pool
                failed.append(exc)
                return
            yield index, meta, urls[index]

    results: dict[int, ReplayResult] = {}
    reported = 0
    context = multiprocessing.get_context("fork")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # a child inherits unwritten output, and would write it again when it exits
    pool = context.Pool(jobs, initializer=_child_signals)
    try:
        for index, result in pool.imap_unordered(_star_replay, tasks()):
            drop_database(urls.pop(index))
            slots.release()
            results[index] = result
            while reported in results:
                if on_result is not None:
                    on_result(results[reported])
                reported += 1
        if failed:
            raise failed[0]
        pool.close()
    finally:
        from harness import interrupts

        # A signal here waits until the children are ended and their databases dropped.
        with interrupts.cleanup():
            stop.set()
            for _ in range(jobs + 1):
                slots.release()  # the task thread may wait for a slot: let it see the stop
            pool.terminate()
            pool.join()
            _FORKED.clear()
            for url in list(urls.values()):
                drop_database(url)
    return [results[index] for index in range(len(metas))]


def _child_signals() -> None:
    """A replaying child leaves signals to this process, which stops the pool and cleans up.

    Ctrl-C reaches the whole process group: the children ignore it, and the parent ends them
    with SIGTERM (``Pool.terminate``), which now ends a child at once, as it would any worker.
    """
    import signal

    from harness import interrupts

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in interrupts.SIGNALS:
        if signum != signal.SIGINT:
            signal.signal(signum, signal.SIG_DFL)


def _star_replay(task: tuple[int, CassetteMeta, str]) -> tuple[int, ReplayResult]:
    return _replay_in_child(*task)
