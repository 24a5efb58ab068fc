"""Batched generation end to end: real SDKs over HTTP, real disposable PostgreSQL, failure, resume and retries.

The flow runs as the harness runs any target (``run_flow``); retries with short waits come
from the shim :func:`tests.faults.shims.run_with_quick_retries`. Every attempt is a
``call_attempt`` log line of the flow's own (read here with structlog's ``capture_logs``);
resuming a failed plan is the generator's own method, called directly.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import anthropic
import psycopg
import pytest
from structlog.testing import capture_logs

from harness.config import sqlalchemy_url
from harness.flow.database import make_engine, make_session_factory
from harness.flow.llm import build_clients
from harness.flow.masterplan import MasterPlanGenerator
from harness.reports.build import ReportedRun, build_run_result
from harness.runner import FlowRequest, run_flow
from harness.sdk import error_class
from probes.core import Outcome
from tests.faults import shims
from tests.support import content
from tests.support.scenarios import batch_texts, skeleton_of
from tests.support.wire_server import EmbeddingReply, ErrorReply, MessageReply, WireScript

KIND = "task_manager"
#: Waits small enough that no test is slowed by backoff (what the shim gives the flow).
TINY_RETRIES = shims.QUICK_RETRIES
QUICK = shims.shim_target(shims.run_with_quick_retries)

#: What the installed SDK raises for a 529: early anthropic 0.x (0.30) has no OverloadedError, only InternalServerError.
OVERLOADED = (error_class(anthropic, "OverloadedError") or anthropic.InternalServerError).__name__


def _plan() -> dict:
    return content.masterplan_for(KIND)


def _script(batches: list) -> WireScript:
    return WireScript(
        anthropic=[
            MessageReply(content.render_reply(content.discovery_for(KIND))),
            MessageReply(json.dumps(skeleton_of(_plan()))),
            *batches,
        ],
        openai=[EmbeddingReply()],
    )


def _request() -> FlowRequest:
    return FlowRequest(content.request_for(KIND), "user-1", "sid-1")


def _query(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2) as connection:
        return connection.execute(sql).fetchall()


def _attempts(logs: list[dict], stage: str) -> list[dict]:
    return [entry for entry in logs if entry["event"] == "call_attempt" and entry["stage"] == stage]


def _expected_edges() -> int:
    return sum(len(set(task["depends_on"])) for task in content.iter_tasks(_plan()))


@pytest.mark.slow
def test_healthy_batched_run_commits_every_batch_and_reports_each(stand_in_apis, flow_database_url) -> None:
    """Skeleton and three batches each pass llm, parse and persist; the plan is 'draft' with every task once."""
    texts = batch_texts(_plan())
    run = run_flow(stand_in_apis(_script([MessageReply(t) for t in texts]), flow_database_url), _request())
    assert run.report.verdict == "pass", run.report.first_failure
    points = {(o.check.stage.value, o.point) for o in run.report.outcomes if o.outcome.value == "passed"}
    for point in ["masterplan.skeleton"] + [f"masterplan.batch-{n}" for n in range(1, len(texts) + 1)]:
        assert {("llm", point), ("parse", point), ("persist", point)} <= points, point
    assert {("parse", "masterplan"), ("persist", "masterplan")} <= points
    total = sum(1 for _ in content.iter_tasks(_plan()))
    assert _query(flow_database_url, "SELECT status::text, total_tasks, batches_committed FROM masterplans") == [
        ("draft", total, len(texts))
    ]
    assert _query(
        flow_database_url,
        "SELECT count(DISTINCT task_number), min(task_number), max(task_number) FROM masterplan_tasks",
    ) == [(total, 1, total)]
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_task_dependencies") == [(_expected_edges(),)]
    atomicity = run.observations["atomicity.masterplan"]
    assert atomicity["tasks"] == total and atomicity["within"] == total and atomicity["min"] >= 200


@pytest.mark.slow
def test_failure_in_batch_3_keeps_batches_1_and_2_and_resume_completes_the_plan(
    stand_in_apis, flow_database_url
) -> None:
    """A stream cut in batch 3 leaves batches 1-2 committed and the plan failed at batch 3; resuming fills the rest."""
    texts = batch_texts(_plan())
    assert len(texts) == 3
    cut = MessageReply(content.truncate_text(texts[2], 0.4), cut_stream=True)
    settings = stand_in_apis(_script([MessageReply(texts[0]), MessageReply(texts[1]), cut]), flow_database_url)
    run = run_flow(settings, _request())
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("llm", "LLM002", "masterplan.batch-3")

    committed = sum(1 for t in json.loads(texts[0])["tasks"]) + sum(1 for t in json.loads(texts[1])["tasks"])
    ((masterplan_id, status, failed_batch, batches_committed, error),) = _query(
        flow_database_url,
        "SELECT masterplan_id, status::text, failed_batch, batches_committed, error_message FROM masterplans",
    )
    assert (status, failed_batch, batches_committed) == ("failed", 3, 2) and error.startswith("batch 3:")
    assert _query(flow_database_url, "SELECT max(task_number), count(*) FROM masterplan_tasks") == [
        (committed, committed)
    ]

    resume_settings = stand_in_apis(WireScript(anthropic=[MessageReply(texts[2])]), flow_database_url)

    async def resume() -> uuid.UUID:
        clients = build_clients(resume_settings)
        engine = make_engine(flow_database_url)
        try:
            generator = MasterPlanGenerator(clients, make_session_factory(engine), models=resume_settings.models)
            return await generator.resume_masterplan(masterplan_id)
        finally:
            engine.dispose()
            await clients.anthropic.close()
            await clients.openai.close()

    assert asyncio.run(resume()) == masterplan_id
    total = sum(1 for _ in content.iter_tasks(_plan()))
    assert _query(flow_database_url, "SELECT status::text, failed_batch, batches_committed FROM masterplans") == [
        ("draft", None, 3)
    ]
    numbers = [row[0] for row in _query(flow_database_url, "SELECT task_number FROM masterplan_tasks ORDER BY 1")]
    assert numbers == list(range(1, total + 1))  # none missing, none twice
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_task_dependencies") == [(_expected_edges(),)]


@pytest.mark.slow
def test_retried_batch_shows_attempts_waits_and_summed_usage(stand_in_apis, flow_database_url) -> None:
    """Batch 1 overloaded then rate-limited, answered on attempt 3: every attempt logged, one call of 3 attempts reported."""
    texts = batch_texts(_plan())
    batches = [
        ErrorReply.for_status(529),
        ErrorReply.for_status(429, headers={"retry-after": "0"}),
        *(MessageReply(t) for t in texts),
    ]
    with capture_logs() as logs:
        run = run_flow(stand_in_apis(_script(batches), flow_database_url), _request(), target=QUICK)
    assert run.report.verdict == "pass", run.report.first_failure

    batch_1 = [a for a in _attempts(logs, "llm") if a["point"] == "masterplan.batch-1"]
    assert [(a["number"], a["outcome"], a.get("error_type")) for a in batch_1] == [
        (1, "retry", OVERLOADED),
        (2, "retry", "RateLimitError"),
        (3, "ok", None),
    ]
    assert 0 < batch_1[0]["wait_s"] <= TINY_RETRIES.base_delay and batch_1[1]["wait_s"] == 0.0
    assert batch_1[1]["retry_after_s"] == 0.0
    assert batch_1[2]["output_tokens"] > 0 and batch_1[2]["cost_usd"] > 0

    # The report: the two failed attempts are folded into the call they were retries of.
    calls = run.observations["llm.calls"]
    assert {call["point"]: call["attempts"] for call in calls}["masterplan.batch-1"] == 3
    assert sum(call["attempts"] for call in calls) == len(calls) + 2
    usage = build_run_result(ReportedRun("retried", run, 0.0)).llm
    assert usage.totals.calls == len(calls)
    assert usage.totals.input_tokens == sum(call["input_tokens"] or 0 for call in calls)
    assert usage.totals.output_tokens == sum(call["output_tokens"] or 0 for call in calls)
    assert usage.totals.cost_usd == pytest.approx(sum(call["cost_usd"] or 0 for call in calls))
    assert usage.totals.spent_usd == usage.totals.cost_usd > 0  # a live run spends what it costs


@pytest.mark.slow
def test_serialization_failure_on_a_batch_commit_is_retried(stand_in_apis, flow_database_url) -> None:
    """PostgreSQL refuses the first batch commit with SQLSTATE 40001; the retry commits it and the plan completes."""
    with psycopg.connect(sqlalchemy_url(flow_database_url).replace("+psycopg", ""), autocommit=True) as connection:
        # A sequence survives the rollback of the failing transaction, so the trigger fails exactly once.
        connection.execute("CREATE SEQUENCE fail_once")
        connection.execute(
            """
            CREATE FUNCTION fail_first_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF nextval('fail_once') = 1 THEN
                RAISE EXCEPTION 'could not serialize access due to concurrent update'
                  USING ERRCODE = 'serialization_failure';
              END IF;
              RETURN NEW;
            END $$
            """
        )
        connection.execute(
            "CREATE TRIGGER fail_first_insert BEFORE INSERT ON masterplan_tasks "
            "FOR EACH STATEMENT EXECUTE FUNCTION fail_first_insert()"
        )
    texts = batch_texts(_plan())
    with capture_logs() as logs:
        run = run_flow(
            stand_in_apis(_script([MessageReply(t) for t in texts]), flow_database_url), _request(), target=QUICK
        )
    assert run.report.verdict == "pass", run.report.first_failure
    persisted = [a for a in _attempts(logs, "persist") if a["outcome"] != "ok"]
    assert [(a["point"], a["number"], a["error_type"]) for a in persisted] == [
        ("masterplan.batch-1", 1, "OperationalError")
    ]
    assert "could not serialize" in persisted[0]["error"]
    # The refused unit was rolled back with the error in flight, then committed again: batch 1's rows pass readback.
    passed = {(o.check.id, o.point) for o in run.report.outcomes if o.outcome is Outcome.PASSED}
    assert ("PERSIST001", "masterplan.batch-1") in passed
    total = sum(1 for _ in content.iter_tasks(_plan()))
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_tasks") == [(total,)]
