"""The generation flow end to end: real SDKs over HTTP, real disposable PostgreSQL.

Most tests run the reference flow as the harness runs any target (``run_flow``); a shim of
:mod:`tests.faults.shims` stands in where a component must be swapped. The chat command's
progress events are checked on the flow's own classes, called directly.
"""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest

from harness.config import sqlalchemy_url
from harness.flow.chat import ChatCommands, Conversation, MasterplanResult
from harness.flow.database import make_engine, make_session_factory
from harness.flow.events import CollectingSink, EventType, ProgressEvent
from harness.flow.llm import build_clients
from harness.observe.timeline import UnitCommitted
from harness.runner import FlowRequest, RunOptions, run_flow
from probes.core import Outcome
from tests.faults import shims
from tests.support import content
from tests.support.scenarios import batch_texts, skeleton_of
from tests.support.wire_server import EmbeddingReply, MessageReply, WireScript

KIND = "task_manager"


def _healthy_script(plan_reply: MessageReply | None = None) -> WireScript:
    """Discovery, then the plan: one reply in single-call mode (``plan_reply``), else a skeleton and its batches."""
    plan = content.masterplan_for(KIND)
    if plan_reply is not None:
        answers = [plan_reply]
    else:
        answers = [MessageReply(json.dumps(skeleton_of(plan)))] + [MessageReply(t) for t in batch_texts(plan)]
    return WireScript(
        anthropic=[MessageReply(content.render_reply(content.discovery_for(KIND), "fenced")), *answers],
        openai=[EmbeddingReply()],
    )


def _request() -> FlowRequest:
    return FlowRequest(content.request_for(KIND), "user-1", "sid-1")


def _query(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2) as connection:
        return connection.execute(sql).fetchall()


def _assert_whole_plan_saved(database_url: str) -> None:
    plan = content.masterplan_for(KIND)
    expected_tasks = sum(1 for _ in content.iter_tasks(plan))
    expected_edges = sum(len(set(task["depends_on"])) for task in content.iter_tasks(plan))
    assert _query(database_url, "SELECT status::text, total_tasks FROM masterplans") == [("draft", expected_tasks)]
    assert _query(database_url, "SELECT count(*) FROM masterplan_tasks") == [(expected_tasks,)]
    assert _query(database_url, "SELECT count(*) FROM masterplan_task_dependencies") == [(expected_edges,)]
    assert _query(database_url, "SELECT count(*) FROM discovery_documents") == [(1,)]


@pytest.mark.slow
def test_healthy_flow_saves_discovery_and_complete_plan(stand_in_apis, flow_database_url) -> None:
    """A healthy run passes every check (progress events reached the sink: AUTH004) and leaves one complete 'draft' plan."""
    run = run_flow(stand_in_apis(_healthy_script(), flow_database_url), _request())
    assert run.report.verdict == "pass", run.report.first_failure
    assert run.report.findings == []
    assert [o.outcome for o in run.report.outcomes if o.check.id == "AUTH004"] == [Outcome.PASSED]
    assert run.returned.discovery_id is not None and run.returned.masterplan_id is not None
    _assert_whole_plan_saved(flow_database_url)
    saved = {(row["table"], row["point"]) for row in run.observations["saved"]}
    assert {("discovery_documents", "discovery"), ("masterplans", "masterplan")} <= saved


@pytest.mark.slow
def test_chat_command_yields_its_progress_and_sends_each_event_to_the_sink(stand_in_apis, flow_database_url) -> None:
    """The /masterplan command yields discovery_started first and masterplan_saved last, every event also to its sink."""
    settings = stand_in_apis(_healthy_script(), flow_database_url)

    async def command() -> tuple[list[ProgressEvent], CollectingSink, MasterplanResult]:
        engine = make_engine(flow_database_url)
        clients = build_clients(settings)
        sink = CollectingSink()
        result = MasterplanResult()
        try:
            commands = ChatCommands(clients, make_session_factory(engine), models=settings.models, events=sink)
            conversation = Conversation(user_id="user-1", metadata={"sid": "sid-1"})
            yielded = [event async for event in commands.execute_masterplan(conversation, _request().request, result)]
        finally:
            await clients.anthropic.close()
            await clients.openai.close()
            engine.dispose()
        return yielded, sink, result

    yielded, sink, result = asyncio.run(command())
    assert yielded == sink.events
    types = [event.type for event in yielded]
    assert types[0] is EventType.DISCOVERY_STARTED and types[-1] is EventType.MASTERPLAN_SAVED
    assert EventType.MASTERPLAN_PROGRESS in types and EventType.FAILED not in types
    assert {event.session_id for event in yielded} == {"sid-1"}
    assert yielded[-1].data["masterplan_id"] == str(result.masterplan_id)
    _assert_whole_plan_saved(flow_database_url)


@pytest.mark.slow
def test_single_call_mode_saves_the_whole_plan_in_one_unit_of_work(stand_in_apis, flow_database_url) -> None:
    """MASTERPLAN_GENERATION_MODE=single: one plan call, every child and the switch to 'draft' in one commit."""
    reply = MessageReply(content.render_reply(content.masterplan_for(KIND), "prose"))
    options = RunOptions(flow_env=(("MASTERPLAN_GENERATION_MODE", "single"),))
    run = run_flow(stand_in_apis(_healthy_script(reply), flow_database_url), _request(), options=options)
    assert run.report.verdict == "pass", run.report.first_failure
    assert [call["point"] for call in run.observations["llm.calls"] if call["kind"] != "embeddings"] == [
        "discovery",
        "masterplan",
    ]
    _assert_whole_plan_saved(flow_database_url)
    assert _query(flow_database_url, "SELECT generation_mode, batches_total FROM masterplans") == [("single", 0)]
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_tasks WHERE batch_number IS NOT NULL") == [(0,)]
    children = {"masterplan_phases", "masterplan_milestones", "masterplan_tasks", "masterplan_task_dependencies"}
    commits = [c for c in run.timeline.of(UnitCommitted) if {w.table for w in c.writes} & children]
    assert len(commits) == 1 and children <= {w.table for w in commits[0].writes}
    status = [w.values["status"] for w in commits[0].writes if w.table == "masterplans" and "status" in w.values]
    assert [getattr(value, "value", value) for value in status] == ["draft"]


@pytest.mark.slow
def test_truncated_plan_fails_at_llm_and_leaves_plan_marked_failed(stand_in_apis, flow_database_url) -> None:
    """Single-call mode: max_tokens is an llm finding with stop_reason in its evidence; the plan is failed, no tasks."""
    text = content.truncate_text(content.render_reply(content.masterplan_for(KIND)), 0.5)
    settings = stand_in_apis(_healthy_script(MessageReply(text, stop_reason="max_tokens")), flow_database_url)
    options = RunOptions(flow_env=(("MASTERPLAN_GENERATION_MODE", "single"),))
    run = run_flow(settings, _request(), options=options)
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("llm", "LLM001", "masterplan")
    assert first.evidence["stop_reason"] == "max_tokens"
    ((status, error),) = _query(flow_database_url, "SELECT status::text, error_message FROM masterplans")
    assert status == "failed" and "stop_reason=max_tokens" in error
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_tasks") == [(0,)]
    blocked = {o.check.id for o in run.report.outcomes if o.outcome is Outcome.BLOCKED}
    assert {"PARSE001", "PERSIST003"} <= blocked
    assert [f.id for f in run.report.findings] == ["LLM001"]  # nothing after it is blamed on its own


@pytest.mark.slow
def test_write_living_only_in_the_writers_transaction_is_never_saved(stand_in_apis, flow_database_url) -> None:
    """Sessions whose commits never leave an outer transaction: the flow returns, and PERSIST013 says nothing was saved.

    New design: the harness judges what the flow committed (seen by the database watcher), not
    the ids it reports; nothing was committed, so each generated document is missing (PERSIST013).
    """
    target = shims.shim_target(shims.run_in_an_outer_transaction)
    run = run_flow(stand_in_apis(_healthy_script(), flow_database_url), _request(), target=target)
    assert run.returned is not None and run.returned.masterplan_id is not None
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("persist", "PERSIST013", "discovery")
    missing = [(f.point, f.evidence["document"], f.evidence["rows_committed"]) for f in run.report.findings]
    assert missing == [("discovery", "discovery", 0), ("masterplan", "plan", 0)]
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


@pytest.mark.slow
def test_writer_on_another_database_fails_readback(stand_in_apis, flow_database_factory, flow_database_url) -> None:
    """A flow that writes to a different database than DATABASE_URL is PERSIST001, naming both databases."""
    other = flow_database_factory.new_database()
    target = shims.shim_target(shims.run_on_another_database)
    try:
        run = run_flow(
            stand_in_apis(_healthy_script(), flow_database_url),
            _request(),
            target=target,
            options=RunOptions(flow_env=((shims.OTHER_DATABASE_ENV, other),)),
        )
        assert _query(other, "SELECT count(*) FROM discovery_documents") == [(1,)]
    finally:
        flow_database_factory.drop(other)
    assert run.report.verdict == "persist:PERSIST001"
    (elsewhere,) = [f for f in run.report.findings if f.id == "PERSIST001" and "written_to" in f.evidence]
    other_name = other.rsplit("/", 1)[1].split("?")[0]
    given_name = flow_database_url.rsplit("/", 1)[1].split("?")[0]
    assert [url.rsplit("/", 1)[1] for url in elsewhere.evidence["written_to"]] == [other_name]
    assert elsewhere.evidence["given"].rsplit("/", 1)[1] == given_name
    assert all(":***@" in url for url in (*elsewhere.evidence["written_to"], elsewhere.evidence["given"]))
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


@pytest.mark.slow
@pytest.mark.parametrize(("user_id", "session_id", "check"), [(None, "sid-1", "AUTH001"), ("user-1", None, "AUTH002")])
def test_missing_identity_stops_before_any_llm_call(
    stand_in_apis, flow_database_url, user_id, session_id, check
) -> None:
    """No user id or session id fails at auth, and the flow is never run: no LLM call, no row."""
    settings = stand_in_apis(WireScript(), flow_database_url)
    run = run_flow(settings, FlowRequest("build a shop", user_id, session_id))
    assert run.report.verdict == f"auth:{check}"
    assert run.returned is None and "llm.calls" not in run.observations
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


@pytest.mark.slow
def test_missing_tables_fail_at_db_before_any_llm_call(stand_in_apis, postgres_cluster) -> None:
    """A database without the flow's tables is a db finding naming them; the flow never starts."""
    name = postgres_cluster.create_database()
    try:
        run = run_flow(stand_in_apis(WireScript(), postgres_cluster.url(name)), _request())
    finally:
        postgres_cluster.drop_database(name)
    first = run.report.first_failure
    assert (first.id, first.stage.value) == ("DB004", "db")
    assert "masterplans" in first.evidence["missing_tables"]
    assert run.returned is None and "llm.calls" not in run.observations
