"""Runs the flow behind its probe points and returns the report.

Order: env → db → auth (pre-flight, no tokens spent) → the chat command itself, whose
probe points cover llm, parse and persist. A failed pre-flight stage blocks what needs it;
points the flow never reached are reported as blocked by the first failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.config import Settings
from harness.redaction import register_secret
from probes import CLASSIFIERS, auth, db, env
from probes.core import STAGE_NEEDS, Level, Recorder, Report, Stage, StageFailed
from probes.points import ProbeHooks, mark_unreached

__all__ = ["FlowRequest", "FlowRun", "run_flow"]


@dataclass(frozen=True)
class FlowRequest:
    """One ``/masterplan`` command: what was asked, by whom, in which session."""

    request: str
    user_id: str | None
    session_id: str | None


@dataclass
class FlowRun:
    """The report of one run, with what the flow produced along the way."""

    report: Report
    #: What the probe points saw: LLM exchanges (stop reason, usage, cost, latency), saved keys.
    observations: dict[str, Any] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    discovery_id: Any = None
    masterplan_id: Any = None


def _preflight(recorder: Recorder, settings: Settings, request: FlowRequest) -> set[Stage]:
    """Run env, db and auth checks; return the stages that failed."""
    from harness.flow.models import metadata

    failed: set[Stage] = set()
    stages: list[tuple[Stage, tuple, Callable[[], list]]] = [
        (Stage.ENV, env.CHECKS[:-1], lambda: env.check_settings(settings)),
        (
            Stage.DB,
            db.CHECKS[:-1],
            lambda: db.check_connection(settings.database_url or "", metadata.tables.keys(), settings.timeouts),
        ),
        (Stage.AUTH, auth.CHECKS[:-1], lambda: auth.check_identity(auth.Identity(request.user_id, request.session_id))),
    ]
    for stage, checks, run in stages:
        blockers = STAGE_NEEDS[stage] & failed
        if blockers:
            names = ", ".join(sorted(s.value for s in blockers))
            recorder.skip(checks, stage.value, f"blocked by the failed {names} stage", blocked=True)
            failed.add(stage)
            continue
        try:
            recorder.run_checks(stage, stage.value, [(checks, run)])
        except StageFailed:
            failed.add(stage)
    return failed


async def _run_command(
    recorder: Recorder,
    settings: Settings,
    request: FlowRequest,
    run: FlowRun,
    clients: Any,
    events: Any,
    session_factory: Any,
) -> None:
    from harness.flow.chat import ChatCommands, Conversation, MasterplanResult
    from harness.flow.database import make_engine, make_session_factory

    engine = None
    if session_factory is None:
        engine = make_engine(settings.database_url or "", timeouts=settings.timeouts)
        session_factory = make_session_factory(engine)
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
        run.discovery_id, run.masterplan_id = result.discovery_id, result.masterplan_id
        if engine is not None:
            engine.dispose()


def run_flow(
    settings: Settings,
    request: FlowRequest,
    *,
    fail_level: Level = Level.ERROR,
    clients: Any = None,
    events: Any = None,
    session_factory: Any = None,
) -> FlowRun:
    """Pre-flight checks, then the chat command behind its probe points; never raises for a flow failure.

    ``clients``, ``events`` and ``session_factory`` replace the flow's own components
    (LLM clients, event sink, sessions) — how a fault is injected into one part of the
    flow. The probes still read back through their own connection to ``DATABASE_URL``.
    """
    from harness.flow.events import CollectingSink
    from harness.flow.llm import build_clients

    for secret in (settings.anthropic_api_key, settings.openai_api_key):
        register_secret(secret)
    if settings.database_url:
        from sqlalchemy.engine import make_url

        try:
            register_secret(make_url(settings.database_url).password)
        except Exception:
            pass  # an unparseable URL is reported by the env stage

    recorder = Recorder(CLASSIFIERS, fail_level=fail_level)
    run = FlowRun(report=recorder.report, observations=recorder.observations)
    failed = _preflight(recorder, settings, request)
    if not failed:
        sink = events if events is not None else CollectingSink()

        async def command() -> None:
            llm_clients = clients if clients is not None else build_clients(settings)
            try:
                await _run_command(recorder, settings, request, run, llm_clients, sink, session_factory)
            finally:
                if clients is None:  # ours: close their connection pools inside the loop that opened them
                    for client in (llm_clients.anthropic, llm_clients.openai):
                        if client is not None:
                            await client.close()

        asyncio.run(command())
    mark_unreached(recorder)
    return run
