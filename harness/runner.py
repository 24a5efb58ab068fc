"""Runs a target's flow under the watchers and returns the judged report.

Order: env → db → auth (pre-flight, no tokens spent, probes walked from the registry) →
one call of the target's flow, watched from outside (LLM traffic, database writes, the
functions named in ``points``, the event loop) → the llm, parse and persist probes judge the
timeline (:mod:`harness.judge`). The flow runs only when every check it needs passed; what
it needs is declared here, once (:data:`FLOW_REQUIRES`).

When answers are replayed, a second, short run provokes a failure inside the application's
first unit of work and checks that it reaches the caller (PERSIST011) — a session scope
that swallows exceptions looks healthy on every run that does not fail.

``diagnose`` adds an LLM mode, a read-only switch, and canary rows that are always removed
afterwards — by the keys the watcher saw written, children first — together with any canary
rows an earlier, killed run left behind (:mod:`probes.canary`). The removal runs in a
``finally`` under :func:`harness.interrupts.cleanup`: a signal (:class:`~harness.interrupts.Interrupted`)
unwinds through the application's code into it, and a second signal does not cut it short.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from harness import interrupts
from harness.config import Settings
from harness.interrupts import Interrupted, cleanup
from harness.redaction import register_secret
from harness.target import Target, environment, load_target
from probes import CLASSIFIERS, auth, db, env, llm, persist
from probes.context import FlowContext, PreflightContext
from probes.core import Check, Level, Outcome, Recorder, Report, Stage
from probes.registry import Scope, probes_for

__all__ = [
    "FLOW_REQUIRES",
    "FlowRequest",
    "FlowRun",
    "LLMMode",
    "ProvocationResult",
    "RunOptions",
    "run_flow",
]

#: What the flow needs before it is run: a usable database URL and key, a reachable and complete
#: database, and an identity. A failure of any of these blocks every llm, parse and persist check.
FLOW_REQUIRES: tuple[Check, ...] = (
    env.ENV001,
    env.ENV004,
    env.ENV002,
    db.DB001,
    db.DB002,
    db.DB003,
    db.DB010,
    db.DB004,
    db.DB006,
    db.DB008,
    db.DB009,
    auth.AUTH003,
    auth.AUTH001,
    auth.AUTH002,
)
#: Stages whose checks only a run of the flow can decide.
FLOW_STAGES = (Stage.LLM, Stage.PARSE, Stage.PERSIST)


class LLMMode(str, enum.Enum):
    """How a run treats the LLM stage."""

    #: No LLM call at all: pre-flight stages only.
    OFF = "off"
    #: One minimal call per API: proves keys and model; the flow is not run.
    PING = "ping"
    #: The whole flow, live (or against whatever answers the SDKs' HTTP).
    FULL = "full"
    #: The whole flow with recorded answers (the caller installs the cassette).
    REPLAY = "replay"


@dataclass(frozen=True)
class FlowRequest:
    """One ``/masterplan`` command: what was asked, by whom, in which session."""

    request: str
    user_id: str | None
    session_id: str | None


@dataclass(frozen=True)
class RunOptions:
    """What a run does beyond the defaults of replay and record."""

    #: Stages whose checks run; selecting llm, parse or persist runs the flow, which passes through all three.
    #: A stage left out is not run and stops none of the chosen ones (their own requirements still do).
    stages: frozenset[Stage] = frozenset(Stage)
    llm: LLMMode = LLMMode.FULL
    #: Perform no writes at all (the flow is not run; persist checks are skipped).
    read_only: bool = False
    #: Tag the flow's rows with a canary session id and remove them afterwards (diagnose against real databases).
    canary: bool = False
    fail_level: Level = Level.ERROR
    #: Why the bearer token did not verify, when one was given and failed.
    token_error: str | None = None
    #: A bearer token was given at all.
    token_given: bool = False
    #: Where the identity came from, for the report.
    identity_source: str = "flags"
    #: Provoke a failure in the first unit of work in a second run (only where answers are replayed).
    provoke: bool = False
    #: Environment variables the flow's call needs besides the settings (a cassette's ``env``).
    flow_env: tuple[tuple[str, str], ...] = ()
    #: Around the flow's call, given its timeline as it fills (``ProgressLine(...).watching``: a progress line).
    progress: Callable[[Any], AbstractContextManager[Any]] | None = None
    #: The template the run's database is an untouched clone of, made for this run by the target's own
    #: ``build_schema`` (replay): the db stage's schema checks are judged on the first clone of a template and
    #: inherited by the others, and DB012 takes the template's build (its migrations from empty) as its trial.
    template: str | None = None


@dataclass
class FlowRun:
    """The report of one run, with what the flow produced along the way."""

    report: Report
    #: What the run saw: LLM exchanges (stop reason, usage, cost, latency), rows committed, server facts.
    observations: dict[str, Any] = field(default_factory=dict)
    #: What the flow callable returned (``None`` when it raised or did not run).
    returned: Any = None
    #: The session id the rows were written under (a canary id when ``canary`` was set).
    session_id: str | None = None
    #: The timeline of the flow's run (``None`` when the flow did not run).
    timeline: Any = None


@dataclass(frozen=True)
class ProvocationResult(persist.ProvocationLike):
    """What the provoked run showed: did a failure in the first save reach the flow's caller?"""

    reached_caller: bool
    #: The table whose first write was made to fail.
    table: str
    point: str
    #: The function (and its line) of the application's code where the failure stopped travelling up.
    swallowed_in: str | None
    #: Where the rollback happened (its own line), if it did.
    rolled_back_at: str | None
    #: The flow's own exception when it was not the provoked one.
    flow_error: str | None
    #: Rows and LLM calls the flow made after the failure (it carried on as if the save had worked).
    writes_after: int
    calls_after: int

def _register_secrets(settings: Settings) -> None:
    for secret in (settings.anthropic_api_key, settings.openai_api_key):
        register_secret(secret)
    if settings.database_url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            register_secret(make_url(settings.database_url).password)
        except (ArgumentError, ValueError):
            pass  # an unparseable URL is reported by the env stage


# -- pre-flight --------------------------------------------------------------------------------


def _preflight(recorder: Recorder, ctx: PreflightContext, options: RunOptions, timeout: float) -> None:
    """Walk the env, db and auth probes of the registry; a requirement that failed blocks what needs it."""
    try:
        for stage in (Stage.ENV, Stage.DB, Stage.AUTH):
            entries = probes_for(stage, Scope.PREFLIGHT)
            if stage not in options.stages:
                for entry in entries:
                    recorder.skip(entry.emits, entry.point or stage.value, "stage not selected (--stage)")
                continue
            for entry in entries:
                recorder.run_probe(_within(entry, options.stages), entry.point or stage.value, ctx, timeout=timeout)
    finally:
        db.close_probe_connection(ctx.db)


def _selected(requires: tuple[Check, ...], stages: frozenset[Stage]) -> tuple[Check, ...]:
    """The requirements of the stages the user chose: a stage left out with ``--stage`` stops nothing they asked for."""
    return tuple(check for check in requires if check.stage in stages)


def _within(entry: Any, stages: frozenset[Stage]) -> Any:
    kept = _selected(entry.requires, stages)
    return entry if kept == entry.requires else replace(entry, requires=kept)


# -- the flow under the watchers ---------------------------------------------------------------


def _flow_environment(target: Target, settings: Settings, options: RunOptions) -> dict[str, str | None]:
    values: dict[str, str | None] = {
        target.config.database_url_env: settings.database_url,
        # The SDKs' own variables, so a flow that builds its clients from the environment finds them.
        "ANTHROPIC_API_KEY": settings.anthropic_api_key,
        "OPENAI_API_KEY": settings.openai_api_key,
        "ANTHROPIC_BASE_URL": settings.anthropic_base_url,
        "OPENAI_BASE_URL": settings.openai_base_url,
    }
    values.update(dict(options.flow_env))
    return values


@contextmanager
def watching(target: Target, timeline: Any) -> Iterator[Any]:
    """Every watcher installed around one flow call; yields the database watcher (for what is still pending)."""
    from harness.observe.http import HttpWatch
    from harness.observe.loop import LoopWatch
    from harness.observe.orm import OrmWatch
    from harness.observe.points import PointWatch

    metadata = target.metadata
    tables = {table.fullname for table in metadata.sorted_tables} if metadata is not None else None
    with (
        HttpWatch(timeline, target.code),
        LoopWatch(timeline, target.code, threshold=target.config.loop_stall_threshold),
        OrmWatch(timeline, target.code, tables=tables) as orm,
        PointWatch(timeline, target.code, target.config.points),
    ):
        yield orm


def _call_flow(
    target: Target,
    request: FlowRequest,
    timeline: Any,
    environ: dict[str, str | None],
    answers: Callable[[], AbstractContextManager[Any]],
    *,
    before_call: Callable[[], AbstractContextManager[Any]] = nullcontext,
    progress: Callable[[Any], AbstractContextManager[Any]] | None = None,
) -> Any:
    """One call of the target's flow under the watchers; its end (value or exception) goes to the timeline."""
    from harness.observe.code import exception_info
    from harness.observe.output import capturing_output
    from harness.observe.timeline import FlowEnded, UnitClosed

    returned = None
    with (
        capturing_output() as output,
        environment(environ),
        answers(),
        watching(target, timeline) as orm,
        progress(timeline) if progress is not None else nullcontext(),
        before_call(),
    ):
        try:
            returned = target.call(request.request, request.user_id, request.session_id)
        except Exception as exc:  # the application's failure is what the run judges, never a crash of ours
            interrupts.check()  # a signal whose exception the app's code lost on the way out (a driver mid-statement)
            timeline.add(FlowEnded(error=exception_info(exc, target.code)))
        else:
            interrupts.check()
            timeline.add(FlowEnded(returned=returned))
        for unit, writes in orm.pending().items():
            timeline.add(UnitClosed(unit=unit, uncommitted=tuple(writes), location=None))
    timeline.output = output.tail()
    return returned


def _committed_keys(*timelines: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Table → primary keys of every row the runs committed (what a canary cleanup removes)."""
    from harness.observe.timeline import UnitCommitted

    # Dicts as ordered sets: a plan commits hundreds of keys per table, a list's `in` made this quadratic.
    keys: dict[str, dict[tuple[Any, ...], None]] = {}
    for timeline in timelines:
        if timeline is None:
            continue
        for commit in timeline.of(UnitCommitted):
            for write in commit.writes:
                if write.key is not None and write.op != "delete":
                    keys.setdefault(write.table, {})[tuple(write.key)] = None
    return {table: list(found) for table, found in keys.items()}


def _provoke(
    target: Target,
    request: FlowRequest,
    environ: dict[str, str | None],
    answers: Callable[[], AbstractContextManager[Any]],
    main: Any,
    timelines: list[Any],
) -> tuple[ProvocationResult | str, Any]:
    """Run the flow again with its first write to the application's tables made to fail; did the failure come out?"""
    from harness.observe.faults import ProvokedFailure, failing_writes, stopped_at
    from harness.observe.timeline import LLMExchange, RowsWritten, Timeline, UnitCommitted, UnitRolledBack

    first = next((c for c in main.of(UnitCommitted) if c.writes), None)
    if first is None:
        return "the flow committed nothing, so there was no save to make fail", None
    table = first.writes[0].table
    timeline = Timeline()
    timelines.append(timeline)  # before the call: an interrupted run's cleanup must see what it wrote
    raised: list[ProvokedFailure] = []

    @contextmanager
    def provoking() -> Iterator[None]:
        with failing_writes(table) as failures:
            yield
        raised.extend(failures)

    _call_flow(target, request, timeline, environ, answers, before_call=provoking)
    ended = timeline.ended()
    error = ended.error if ended is not None else None
    chain = []
    current = error.exception if error is not None else None
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    reached = any(isinstance(exc, ProvokedFailure) for exc in chain)
    rollbacks = [
        r for r in timeline.of(UnitRolledBack) if r.error is not None and isinstance(r.error.exception, ProvokedFailure)
    ]
    provoked_at = rollbacks[0].seq if rollbacks else 0
    swallowed = [failure for failure in raised if not any(failure is exc for exc in chain)]
    where = stopped_at(swallowed[0], target.code) if swallowed and not reached else None
    result = ProvocationResult(
        reached_caller=reached,
        table=table,
        point="persist",
        swallowed_in=f"{where.function} ({where})" if where else None,
        rolled_back_at=str(rollbacks[-1].location) if rollbacks and rollbacks[-1].location else None,
        flow_error=None if error is None or reached else f"{error.type}: {error.message}",
        writes_after=sum(len(w.writes) for w in timeline.of(RowsWritten) if w.seq > provoked_at),
        calls_after=sum(1 for x in timeline.of(LLMExchange) if x.seq > provoked_at),
    )
    return result, timeline


def _run_flow_and_judge(
    recorder: Recorder,
    target: Target,
    settings: Settings,
    request: FlowRequest,
    run: FlowRun,
    options: RunOptions,
    answers: Callable[[], AbstractContextManager[Any]],
    timelines: list[Any],
) -> None:
    from harness.judge import judge_flow
    from harness.observe.timeline import Timeline

    environ = _flow_environment(target, settings, options)
    timeline = Timeline()
    run.timeline = timeline
    timelines.append(timeline)
    recorder.observe("llm.replayed", options.llm is LLMMode.REPLAY)
    run.returned = _call_flow(target, request, timeline, environ, answers, progress=options.progress)
    if timeline.output:
        recorder.observe("flow.output", timeline.output)
    reader = persist.Readback(settings.database_url, settings.timeouts) if settings.database_url else None
    ctx = FlowContext(timeline, target, request, reader, observe=recorder.observe, timeouts=settings.timeouts)
    ctx.state["replayed"] = options.llm is LLMMode.REPLAY
    try:
        if options.provoke:
            result, _provoked = _provoke(target, request, environ, answers, timeline, timelines)
            ctx.state["provocation"] = result
        elif options.llm is LLMMode.FULL:
            ctx.state["provocation"] = "live answers: provoking a failure would spend another LLM call (replay a cassette)"
        judge_flow(recorder, ctx, timeout=settings.timeouts.probe)
        from harness.logs import get_logger, log_timeline

        log_timeline(get_logger("harness.runner"), timeline)
    finally:
        if reader is not None:
            reader.close()
    points = ctx.state["persist"].points if "persist" in ctx.state else {}
    recorder.observe(
        "saved",
        [
            {"table": table, "key": [str(part) for part in key], "point": points.get(persist.RowRef(table, key))}
            for table, keys in _committed_keys(timeline).items()
            for key in keys
        ],
    )


#: What removing canary rows needs: a database that takes the app's tables, deletes and writes.
CANARY_REQUIRES: tuple[Check, ...] = (
    env.ENV001,
    env.ENV004,
    db.DB001,
    db.DB002,
    db.DB003,
    db.DB010,
    db.DB004,
    db.DB008,
    db.DB009,
)


def _session_columns(session_id: str, timelines: Any) -> set[tuple[str, str]]:
    """(table, column) pairs whose committed values equal this run's canary session id."""
    from harness.observe.timeline import UnitCommitted

    seen = set()
    for timeline in timelines:
        for commit in timeline.of(UnitCommitted):
            for write in commit.writes:
                seen.update((write.table, name) for name, value in write.values.items() if value == session_id)
    return seen


def _remove_canary(
    recorder: Recorder, target: Target, settings: Settings, session_id: str, timelines: list[Any]
) -> None:
    """Delete what the run wrote (by the keys the watcher saw) and every dead run's canary rows; verify none is left.

    PERSIST008 fails when a row of this run, or any canary row of a run no longer alive,
    is still in the database afterwards; PERSIST014 names each earlier run whose rows were found.
    """
    from probes import canary

    keys = _committed_keys(*timelines)
    seen = _session_columns(session_id, timelines)

    def remove(ctx: Any) -> list:
        findings, deleted = (
            persist.remove_rows(settings.database_url or "", target.metadata, keys, settings.timeouts)
            if keys
            else ([], 0)
        )
        swept = canary.sweep(
            settings.database_url or "", target.metadata, own_session=session_id, seen=seen, timeouts=settings.timeouts
        )
        recorder.observe(
            "canary",
            {
                "session_id": session_id,
                "rows_deleted": deleted + swept.deleted,
                "tables": sorted(keys),
                "leftovers": [
                    {
                        "session_id": left.session_id,
                        "written_at": left.written_at,
                        "rows": left.rows,
                        "removed": left.removed,
                    }
                    for left in swept.leftovers
                ],
                "live_runs": swept.live,
            },
        )
        for left in swept.leftovers:
            when = (
                f"at {left.written_at:%Y-%m-%d %H:%M:%S} UTC" if left.written_at else "at an unknown time (older harness)"
            )
            what = "removed now" if left.removed else "NOT removed (see PERSIST008)"
            findings.append(
                persist.PERSIST014.finding(
                    f"Canary rows of an earlier diagnose run that never cleaned up were in the database: session "
                    f"{left.session_id}, written {when}, {sum(left.rows.values())} row(s); {what}.",
                    session_id=left.session_id,
                    written_at=left.written_at.isoformat() if left.written_at else None,
                    rows=left.rows,
                    removed=left.removed,
                )
            )
        if swept.error is not None or swept.remaining:
            left = sum(sum(tables.values()) for tables in swept.remaining.values())
            message = (
                f"{left} canary row(s) remain in the database after cleanup."
                if left
                else "Looking for canary rows left in the database failed."
            )
            if swept.kept:
                message += (
                    f" Rows of other sessions hang from the canary rows of {', '.join(sorted(swept.kept))}: deleting "
                    "those could take them along, so they were left in place."
                )
            findings.append(
                persist.PERSIST008.finding(
                    message,
                    remaining=swept.remaining,
                    error=swept.error,
                    sqlstate=swept.sqlstate,
                    left_in_place=swept.kept,
                )
            )
        return findings

    from probes.registry import Probe

    entry = Probe(
        "harness.runner.canary",
        Stage.PERSIST,
        Scope.WRITES,
        (persist.PERSIST008, persist.PERSIST014),
        CANARY_REQUIRES,
        remove,
        independent=True,
    )
    recorder.run_probe(entry, "canary", None, seq=10**9 + 1)


# -- ping and skips ----------------------------------------------------------------------------


def _ping(recorder: Recorder, settings: Settings) -> None:
    """One minimal call per API, and the model checked against the SDK's deprecation list."""
    from probes.registry import Probe

    timeout = settings.timeouts.llm_connect + settings.timeouts.db_statement

    def anthropic_ping(ctx: Any) -> list:
        findings, facts = llm.ping_anthropic(
            settings.anthropic_api_key or "", settings.models.generation, base_url=settings.anthropic_base_url, timeout=timeout
        )
        if facts:
            recorder.observe("llm.ping", facts)
            # The ping is a call like any other (it spends a few tokens): the report lists it with them.
            recorder.observe(
                "llm.calls",
                [{"point": "ping", "kind": "ping", "provider": "anthropic", "status": 200, "streamed": False, **facts}],
            )
        return findings

    def model_current(ctx: Any) -> list:  # its own probe: not applicable where the SDK keeps no deprecation list
        return llm.check_model_current(settings.models.generation)

    recorder.run_probe(Probe("harness.runner.ping", Stage.LLM, Scope.PREFLIGHT, (llm.LLM100,), (env.ENV002,), anthropic_ping), "ping", None)
    recorder.run_probe(Probe("harness.runner.model-current", Stage.LLM, Scope.PREFLIGHT, (llm.LLM016,), (env.ENV002,), model_current), "ping", None)
    if settings.openai_api_key:

        def openai_ping(ctx: Any) -> list:
            return llm.ping_openai(settings.openai_api_key or "", settings.models.embedding, base_url=settings.openai_base_url, timeout=timeout)

        recorder.run_probe(Probe("harness.runner.ping-openai", Stage.LLM, Scope.PREFLIGHT, (llm.LLM013,), (), openai_ping), "examples", None)


def _flow_checks() -> list[tuple[Stage, tuple[Check, ...]]]:
    seen: set[str] = set()
    found = []
    for stage in Stage:
        for scope in Scope:
            if scope is Scope.PREFLIGHT:
                continue
            for entry in probes_for(stage, scope):
                fresh = tuple(c for c in entry.emits if c.id not in seen)
                seen.update(c.id for c in fresh)
                if fresh:
                    found.append((stage, fresh))
    return found


def _skip_flow(recorder: Recorder, reason: str, *, blocked: bool = False) -> None:
    for stage, checks in _flow_checks():
        recorder.skip(checks, stage.value, reason, blocked=blocked, seq=10**9)


def run_flow(
    settings: Settings,
    request: FlowRequest,
    *,
    target: Target | None = None,
    options: RunOptions | None = None,
    fail_level: Level | None = None,
    answers: Callable[[], AbstractContextManager[Any]] = nullcontext,
    disposable: tuple[Callable[[], str], Callable[[str], None]] | None = None,
) -> FlowRun:
    """Pre-flight checks, then the target's flow under the watchers, then the judges; never raises for a flow failure.

    ``answers()`` sets up the LLM side for one call of the flow (a cassette being replayed; nothing
    for live calls) — called again for the provoked run. ``disposable`` makes and drops empty
    databases for the checks that need one (do the migrations build the models?).
    """
    target = target or load_target()
    options = options or RunOptions()
    if fail_level is not None:
        options = replace(options, fail_level=fail_level)
    _register_secrets(settings)

    recorder = Recorder(CLASSIFIERS, fail_level=options.fail_level)
    canary_session = canary_session_id() if options.canary else None
    flow_request = FlowRequest(request.request, request.user_id, canary_session or request.session_id)
    run = FlowRun(report=recorder.report, observations=recorder.observations, session_id=flow_request.session_id)
    try:
        _run(recorder, run, settings, request, flow_request, target, options, answers, disposable, canary_session)
    except Interrupted as stopped:
        stopped.partial = run  # what finished, for the report the command still writes
        recorder.finish()
        raise
    recorder.finish()
    return run


def canary_session_id() -> str:
    """A canary session id for one diagnose run: ``harness-canary-<UTC time>-<random>``."""
    from probes.canary import new_session_id

    return new_session_id()


def _run(
    recorder: Recorder,
    run: FlowRun,
    settings: Settings,
    request: FlowRequest,
    flow_request: FlowRequest,
    target: Target,
    options: RunOptions,
    answers: Callable[[], AbstractContextManager[Any]],
    disposable: tuple[Callable[[], str], Callable[[str], None]] | None,
    canary_session: str | None,
) -> None:
    recorder.observe("target", {"name": target.config.name, "config": str(target.config.source), "flow": target.config.flow})

    identity = auth.Identity(request.user_id, request.session_id, options.identity_source)
    pre = PreflightContext(
        settings=settings,
        target=target,
        identity=identity,
        token_error=options.token_error,
        token_given=options.token_given,
        llm=options.llm.value,
        observe=recorder.observe,
        disposable=disposable,
        template=options.template,
    )
    _preflight(recorder, pre, options, settings.timeouts.probe)

    wants_flow = bool(options.stages & set(FLOW_STAGES))
    stopped = recorder.requirement_problem(_selected(FLOW_REQUIRES, options.stages), "flow")
    if not wants_flow:
        _skip_flow(recorder, "stage not selected (--stage)")
    elif options.llm is LLMMode.OFF:
        _skip_flow(recorder, "--llm off: no LLM call, so nothing to parse or persist")
    elif options.llm is LLMMode.PING:
        _ping(recorder, settings)  # needs the keys only: a database problem does not stop it
        _skip_flow(recorder, "--llm ping: the flow is not run")
    elif stopped is not None:
        _skip_flow(recorder, stopped[1], blocked=stopped[0] is Outcome.BLOCKED)
    elif options.read_only:
        _skip_flow(recorder, "--read-only: the flow writes rows, so it is not run")
    else:
        timelines: list[Any] = []
        from probes.canary import holding

        # The lock tells other runs' sweeps that this run's canary rows are a live run's, not a dead one's.
        with holding(settings.database_url if canary_session else None, canary_session or "", settings.timeouts):
            try:
                _run_flow_and_judge(recorder, target, settings, flow_request, run, options, answers, timelines)
            finally:
                if canary_session is not None:
                    with cleanup():
                        _remove_canary(recorder, target, settings, canary_session, timelines)
        return
    if canary_session is not None:
        _sweep_only(recorder, target, settings, canary_session, options)


def _sweep_only(recorder: Recorder, target: Target, settings: Settings, session_id: str, options: RunOptions) -> None:
    """When the flow does not run: still find (and remove) canary rows killed runs left, unless nothing may be written."""
    checks = (persist.PERSIST008, persist.PERSIST014)
    if Stage.PERSIST not in options.stages:
        recorder.skip(checks, "canary", "stage not selected (--stage)", seq=10**9 + 1)
    elif options.read_only:
        recorder.skip(checks, "canary", "--read-only: nothing is written or removed", seq=10**9 + 1)
    else:
        with cleanup():
            _remove_canary(recorder, target, settings, session_id, [])
