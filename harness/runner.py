"""Runs the flow behind its probe points and returns the report.

Order: env → db → auth (pre-flight, no tokens spent) → the chat command itself, whose
probe points cover llm, parse and persist. A failed pre-flight stage blocks what needs it;
points the flow never reached are reported as blocked by the first failure, and points a
run chose not to reach (``--llm off``, ``--read-only``, ``--stage``) as skipped, with why.

``replay`` and ``record`` run the whole flow; ``diagnose`` adds a mode for the LLM stage,
a read-only switch, and canary rows that are always removed afterwards.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.config import Settings
from harness.redaction import register_secret
from probes import CLASSIFIERS, auth, db, env, llm, persist
from probes.core import STAGE_NEEDS, Check, Level, Recorder, Report, Stage, StageFailed
from probes.points import FLOW_POINTS, ProbeHooks, mark_unreached

__all__ = ["FLOW_STAGES", "NO_EVENT_SINK", "FlowRequest", "FlowRun", "LLMMode", "RunOptions", "run_flow"]

#: Stages whose checks only the flow itself can run.
FLOW_STAGES = frozenset({Stage.LLM, Stage.PARSE, Stage.PERSIST})
#: Pass as ``run_flow(..., events=NO_EVENT_SINK)`` to run the flow without any event sink (a fault).
NO_EVENT_SINK: Any = object()


class LLMMode(str, enum.Enum):
    """How a run treats the LLM stage."""

    #: No LLM call at all: pre-flight stages only.
    OFF = "off"
    #: One minimal call per API: proves keys and model; the flow is not run.
    PING = "ping"
    #: The whole flow, live (or against whatever answers the SDKs' HTTP, e.g. a cassette).
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
    stages: frozenset[Stage] = frozenset(Stage)
    llm: LLMMode = LLMMode.FULL
    #: Perform no writes at all (the flow is not run; persist checks are skipped).
    read_only: bool = False
    #: Tag the flow's rows with a canary session id and remove them afterwards (diagnose against real databases).
    canary: bool = False
    fail_level: Level = Level.ERROR
    #: Why the bearer token did not verify, when one was given and failed.
    token_error: str | None = None
    #: Where the identity came from, for the report.
    identity_source: str = "flags"


@dataclass
class FlowRun:
    """The report of one run, with what the flow produced along the way."""

    report: Report
    #: What the probe points saw: LLM exchanges (stop reason, usage, cost, latency), saved keys, server facts.
    observations: dict[str, Any] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    discovery_id: Any = None
    masterplan_id: Any = None
    #: The session id the rows were written under (a canary id when ``canary`` was set).
    session_id: str | None = None


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


def _migration_head() -> str | None:
    from alembic.script import ScriptDirectory

    from harness.flow.database import migrations_config

    return ScriptDirectory.from_config(migrations_config("postgresql://localhost/unused")).get_current_head()


def _db_stage(recorder: Recorder, settings: Settings) -> None:
    """The db checks on one probe connection; only a failed connection blocks the rest."""
    from harness.flow.models import metadata

    url = settings.database_url or ""
    holder: dict[str, Any] = {}

    def connect() -> list:
        findings, engine, connection = db.open_probe_connection(url, settings.timeouts)
        holder.update(engine=engine, connection=connection)
        return findings

    later: list[tuple[Sequence[Check], Callable[[], list]]] = [
        ((db.DB005,), lambda: _server(recorder, holder["connection"])),
        ((db.DB004,), lambda: db.check_tables(holder["connection"], metadata.tables.keys())),
        ((db.DB006,), lambda: db.check_columns(holder["connection"], metadata)),
        ((db.DB007,), lambda: db.check_migrations(holder["connection"], _migration_head())),
        ((db.DB008,), lambda: db.check_privileges(holder["connection"], metadata.tables.keys())),
        ((db.DB009,), lambda: db.check_writable(holder["connection"])),
    ]
    try:
        recorder.run_checks(Stage.DB, "db", [(db.CONNECT_CHECKS, connect)], timeout=settings.timeouts.probe)
    except StageFailed:
        recorder.skip([c for checks, _ in later for c in checks], "db", "no database connection", blocked=True)
        return
    #: Checks that judge the flow's tables: undecided while tables are missing.
    needs_tables = {db.DB006.id, db.DB008.id}
    try:
        for checks, run in later:
            if needs_tables & {c.id for c in checks} and any(
                o.check.id == db.DB004.id and o.outcome.value == "failed" for o in recorder.report.outcomes
            ):
                recorder.skip(checks, "db", f"by {db.DB004.id}", blocked=True)
                continue
            try:
                recorder.run_checks(Stage.DB, "db", [(checks, run)], timeout=settings.timeouts.probe)
            except StageFailed:
                holder["connection"].rollback()  # the next check starts on a clean transaction
    finally:
        holder["connection"].close()
        holder["engine"].dispose()


def _server(recorder: Recorder, connection: Any) -> list:
    findings, facts = db.check_server(connection)
    recorder.observe("db.server", facts)
    return findings


def _preflight(recorder: Recorder, settings: Settings, request: FlowRequest, options: RunOptions) -> set[Stage]:
    """Run env, db and auth checks (those selected); return the stages that failed."""
    failed: set[Stage] = set()
    identity = auth.Identity(request.user_id, request.session_id, options.identity_source)
    stages: list[tuple[Stage, tuple, Callable[[], None]]] = [
        (
            Stage.ENV,
            env.CHECKS[:-1],
            lambda: recorder.run_checks(
                Stage.ENV,
                "env",
                [(env.CHECKS[:-1], lambda: env.check_settings(settings))],
                timeout=settings.timeouts.probe,
                gates=0,  # each setting is judged on its own
            ),
        ),
        (Stage.DB, db.CHECKS[:-1], lambda: _db_stage(recorder, settings)),
        (
            Stage.AUTH,
            auth.IDENTITY_CHECKS,
            lambda: recorder.run_checks(
                Stage.AUTH,
                "auth",
                [(auth.IDENTITY_CHECKS, lambda: auth.check_identity(identity, options.token_error))],
                gates=1,
            ),
        ),
    ]
    for stage, checks, run in stages:
        if stage not in options.stages:
            recorder.skip(checks, stage.value, "stage not selected (--stage)")
            continue
        blockers = STAGE_NEEDS[stage] & failed
        if blockers:
            names = ", ".join(sorted(s.value for s in blockers))
            recorder.skip(checks, stage.value, f"the {names} stage failed", blocked=True)
            failed.add(stage)
            continue
        try:
            run()
        except StageFailed:
            failed.add(stage)
        if any(o.check.stage is stage and o.outcome.value == "failed" for o in recorder.report.outcomes):
            failed.add(stage)
    return failed


def _count_commits(session_factory: Any) -> dict[str, int]:
    """Count commits per session made by ``session_factory`` (a unit of work is one session)."""
    from sqlalchemy import event

    counts: dict[str, int] = {}
    units = itertools.count(1)

    def after_commit(session: Any) -> None:
        # Keyed by a token kept on the session itself: id() values are reused once a session is gone.
        key = session.info.setdefault("harness_unit_of_work", f"unit-{next(units)}")
        counts[key] = counts.get(key, 0) + 1

    event.listen(session_factory, "after_commit", after_commit)
    return counts


async def _run_command(
    recorder: Recorder,
    settings: Settings,
    request: FlowRequest,
    run: FlowRun,
    clients: Any,
    events: Any,
    session_factory: Any,
) -> dict[str, int]:
    from harness.flow.chat import ChatCommands, Conversation, MasterplanResult
    from harness.flow.database import make_engine, make_session_factory

    engine = None
    if session_factory is None:
        engine = make_engine(settings.database_url or "", timeouts=settings.timeouts)
        session_factory = make_session_factory(engine)
    commits = _count_commits(session_factory)
    hooks = ProbeHooks(recorder, settings.database_url or "", timeouts=settings.timeouts)
    commands = ChatCommands(
        clients, session_factory, models=settings.models, events=events, hooks=hooks, retries=settings.retries
    )
    conversation = Conversation(
        user_id=request.user_id, metadata={"sid": request.session_id} if request.session_id else {}
    )
    result = MasterplanResult()
    try:
        async for event in commands.execute_masterplan(conversation, request.request, result):
            run.events.append(event)
    except StageFailed:
        pass  # recorded already; the report says where the flow stopped
    finally:
        hooks.close()
        hooks.judge_progress()
        run.discovery_id, run.masterplan_id = result.discovery_id, result.masterplan_id
        if engine is not None:
            engine.dispose()
    return commits


def _run_whole_flow(
    recorder: Recorder,
    settings: Settings,
    request: FlowRequest,
    run: FlowRun,
    *,
    clients: Any,
    events: Any,
    session_factory: Any,
) -> dict[str, int]:
    from harness.flow.events import CollectingSink
    from harness.flow.llm import build_clients

    sink = None if events is NO_EVENT_SINK else events if events is not None else CollectingSink()

    async def command() -> dict[str, int]:
        llm_clients = clients if clients is not None else build_clients(settings)
        try:
            return await _run_command(recorder, settings, request, run, llm_clients, sink, session_factory)
        finally:
            if clients is None:  # ours: close their connection pools inside the loop that opened them
                for client in (llm_clients.anthropic, llm_clients.openai):
                    if client is not None:
                        await client.close()

    return asyncio.run(command())


def _ping(recorder: Recorder, settings: Settings) -> None:
    """One minimal call per API, and the model checked against the SDK's deprecation list."""
    timeout = settings.timeouts.llm_connect + settings.timeouts.db_statement

    def anthropic_ping() -> list:
        findings, facts = llm.ping_anthropic(
            settings.anthropic_api_key or "",
            settings.models.generation,
            base_url=settings.anthropic_base_url,
            timeout=timeout,
        )
        if facts:
            recorder.observe("llm.ping", facts)
        return findings + llm.check_model_current(settings.models.generation)

    try:
        recorder.run_checks(Stage.LLM, "ping", [(llm.PING_CHECKS, anthropic_ping)], gates=1)
    except StageFailed:
        return
    if settings.openai_api_key:
        recorder.run_checks(
            Stage.LLM,
            "examples",
            [
                (
                    (llm.LLM013,),
                    lambda: llm.ping_openai(
                        settings.openai_api_key or "",
                        settings.models.embedding,
                        base_url=settings.openai_base_url,
                        timeout=timeout,
                    ),
                )
            ],
        )


def _skip_flow(recorder: Recorder, reason: str) -> None:
    for stage, point, checks in FLOW_POINTS:
        recorder.skip(checks, point, reason)


def run_flow(
    settings: Settings,
    request: FlowRequest,
    *,
    options: RunOptions | None = None,
    fail_level: Level | None = None,
    clients: Any = None,
    events: Any = None,
    session_factory: Any = None,
) -> FlowRun:
    """Pre-flight checks, then the chat command behind its probe points; never raises for a flow failure.

    ``clients``, ``events`` and ``session_factory`` replace the flow's own components
    (LLM clients, event sink, sessions) — how a fault is injected into one part of the
    flow. The probes still read back through their own connection to ``DATABASE_URL``.
    """
    options = options or RunOptions()
    if fail_level is not None:
        options = RunOptions(**{**options.__dict__, "fail_level": fail_level})
    _register_secrets(settings)

    recorder = Recorder(CLASSIFIERS, fail_level=options.fail_level)
    canary_session = f"{persist.CANARY_PREFIX}{uuid.uuid4().hex[:12]}" if options.canary else None
    flow_request = FlowRequest(request.request, request.user_id, canary_session or request.session_id)
    run = FlowRun(report=recorder.report, observations=recorder.observations, session_id=flow_request.session_id)
    failed = _preflight(recorder, settings, request, options)
    wants_flow = bool(options.stages & FLOW_STAGES)

    if not wants_flow:
        _skip_flow(recorder, "stage not selected (--stage)")
    elif failed:
        pass  # mark_unreached reports every flow point as blocked by the first failure
    elif options.llm is LLMMode.OFF:
        _skip_flow(recorder, "--llm off: no LLM call, so nothing to parse or persist")
    elif options.llm is LLMMode.PING:
        _ping(recorder, settings)
        _skip_flow(recorder, "--llm ping: the flow is not run")
    elif options.read_only:
        _skip_flow(recorder, "--read-only: the flow writes rows, so it is not run")
    else:
        commits: dict[str, int] = {}
        try:
            commits = _run_whole_flow(
                recorder, settings, flow_request, run, clients=clients, events=events, session_factory=session_factory
            )
        finally:
            if canary_session is not None:
                _remove_canary(recorder, settings, canary_session)
        if commits:
            try:
                recorder.run_checks(
                    Stage.PERSIST, "commits", [((persist.PERSIST009,), lambda: persist.check_commit_counts(commits))]
                )
            except StageFailed:
                pass
    mark_unreached(recorder)
    return run


def _remove_canary(recorder: Recorder, settings: Settings, session_id: str) -> None:
    """Always delete what a canary run wrote, and verify it is gone."""

    def remove() -> list:
        findings, deleted = persist.remove_canary_rows(settings.database_url or "", session_id, settings.timeouts)
        recorder.observe("canary", {"session_id": session_id, "rows_deleted": deleted})
        return findings

    try:
        recorder.run_checks(Stage.PERSIST, "canary", [((persist.PERSIST008,), remove)])
    except StageFailed:
        pass
