"""The generation flow end to end: real SDKs over HTTP, real disposable PostgreSQL."""

from __future__ import annotations

import json

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from harness.config import Models, sqlalchemy_url
from harness.flow.events import CollectingSink, EventType
from harness.recording import content
from harness.recording.scenarios import batch_texts, skeleton_of
from harness.recording.wire_server import EmbeddingReply, MessageReply, WireScript
from harness.runner import FlowRequest, run_flow

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


@pytest.mark.slow
def test_healthy_flow_saves_discovery_and_complete_plan(stand_in_apis, flow_database_url) -> None:
    """A healthy run passes every check and leaves one discovery and one complete 'draft' plan."""
    sink = CollectingSink()
    run = run_flow(stand_in_apis(_healthy_script(), flow_database_url), _request(), events=sink)
    assert run.report.verdict == "pass", run.report.first_failure
    plan = content.masterplan_for(KIND)
    expected_tasks = sum(1 for _ in content.iter_tasks(plan))
    expected_edges = sum(len(set(task["depends_on"])) for task in content.iter_tasks(plan))
    assert _query(flow_database_url, "SELECT status::text, total_tasks FROM masterplans") == [("draft", expected_tasks)]
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_tasks") == [(expected_tasks,)]
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_task_dependencies") == [(expected_edges,)]
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(1,)]
    types = [event.type for event in sink.events]
    assert types[0] is EventType.DISCOVERY_STARTED and types[-1] is EventType.MASTERPLAN_SAVED
    assert EventType.MASTERPLAN_PROGRESS in types


@pytest.mark.slow
def test_truncated_plan_fails_at_llm_and_leaves_plan_marked_failed(stand_in_apis, flow_database_url) -> None:
    """Single-call mode: max_tokens is an llm finding with stop_reason in its evidence; the plan is failed, no tasks."""
    text = content.truncate_text(content.render_reply(content.masterplan_for(KIND)), 0.5)
    settings = stand_in_apis(_healthy_script(MessageReply(text, stop_reason="max_tokens")), flow_database_url)
    run = run_flow(settings.with_overrides(models=Models(generation_mode="single")), _request())
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("llm", "LLM001", "masterplan")
    assert first.evidence["stop_reason"] == "max_tokens"
    ((status, error),) = _query(flow_database_url, "SELECT status::text, error_message FROM masterplans")
    assert status == "failed" and "LLM001" in error
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_tasks") == [(0,)]
    blocked = {o.check.id for o in run.report.outcomes if o.outcome.value == "blocked" and o.point == "masterplan"}
    assert {"PARSE001", "PERSIST001"} <= blocked


@pytest.mark.slow
def test_write_living_only_in_the_writers_transaction_fails_readback(stand_in_apis, flow_database_url) -> None:
    """Sessions whose commits never leave an outer transaction are caught by the independent readback."""
    engine = create_engine(sqlalchemy_url(flow_database_url))
    connection = engine.connect()
    outer = connection.begin()  # never committed: every "commit" below only releases a savepoint
    sessions = sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")
    try:
        run = run_flow(stand_in_apis(_healthy_script(), flow_database_url), _request(), session_factory=sessions)
    finally:
        outer.rollback()
        connection.close()
        engine.dispose()
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("persist", "PERSIST001", "discovery")
    assert first.evidence["table"] == "discovery_documents"


@pytest.mark.slow
def test_writer_on_another_database_fails_readback(stand_in_apis, flow_database_factory, flow_database_url) -> None:
    """A flow that writes to a different database than DATABASE_URL is caught at persist."""
    other = flow_database_factory.new_database()
    engine = create_engine(sqlalchemy_url(other))
    try:
        run = run_flow(
            stand_in_apis(_healthy_script(), flow_database_url),
            _request(),
            session_factory=sessionmaker(bind=engine, expire_on_commit=False),
        )
    finally:
        engine.dispose()
        flow_database_factory.drop(other)
    assert run.report.verdict == "persist:PERSIST001"


@pytest.mark.slow
@pytest.mark.parametrize(("user_id", "session_id", "check"), [(None, "sid-1", "AUTH001"), ("user-1", None, "AUTH002")])
def test_missing_identity_stops_before_any_llm_call(
    stand_in_apis, flow_database_url, user_id, session_id, check
) -> None:
    """No user id or session id fails at auth, and no LLM call is made."""
    settings = stand_in_apis(WireScript(), flow_database_url)
    run = run_flow(settings, FlowRequest("build a shop", user_id, session_id))
    assert run.report.verdict == f"auth:{check}"
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
    assert not run.events
