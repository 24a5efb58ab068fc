"""Flow faults: one component of the reference flow broken in a shim, caught at its stage with the app's own line.

Each test gives the runner a target whose flow is a shim of :mod:`tests.faults.shims` (the
reference flow's entry point with one component swapped, as a team's own code would have it)
and runs it over HTTP against the stand-in APIs — or, where a failure must be provoked in a
second run, against a recorded cassette — on a real disposable PostgreSQL. Rows are checked
over a connection of the test's own.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from harness.cassettes import load_meta
from harness.config import sqlalchemy_url
from harness.replay import replay_cassette
from harness.runner import FlowRequest, RunOptions, run_flow
from probes.core import Level, Outcome
from tests.faults import shims
from tests.support import content
from tests.support.scenarios import healthy_script
from tests.support.wire_server import EmbeddingReply, MessageReply, WireScript

KIND = "task_manager"
ROOT = Path(__file__).resolve().parents[2]
#: The recorded healthy run the provoked-failure tests replay (a second run needs the same answers again).
HEALTHY_CASSETTE = ROOT / "cassettes" / "healthy-task-manager.yaml"
SINGLE_CALL = RunOptions(flow_env=(("MASTERPLAN_GENERATION_MODE", "single"),))

#: A deferred constraint that refuses every task row when its transaction commits (not when it is inserted).
_REFUSE_TASKS_AT_COMMIT = """
CREATE FUNCTION harness_refuse() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'task rows refused at commit by the fault'; END $$;
CREATE CONSTRAINT TRIGGER harness_refuse AFTER INSERT ON masterplan_tasks
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION harness_refuse();
"""
TABLES = (
    "masterplan_task_dependencies",
    "masterplan_tasks",
    "masterplan_milestones",
    "masterplan_phases",
    "masterplans",
    "discovery_documents",
)


def _request() -> FlowRequest:
    return FlowRequest(content.request_for(KIND), "user-1", "sid-1")


def _single_call_script() -> WireScript:
    plan = content.masterplan_for(KIND)
    return WireScript(
        anthropic=[
            MessageReply(content.render_reply(content.discovery_for(KIND))),
            MessageReply(content.render_reply(plan)),
        ],
        openai=[EmbeddingReply()],
    )


def _query(database_url: str, statement: str) -> list[tuple]:
    with psycopg.connect(sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2) as connection:
        return connection.execute(statement).fetchall()


def _execute(database_url: str, statement: str) -> None:
    with psycopg.connect(
        sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2, autocommit=True
    ) as connection:
        connection.execute(statement)


def _counts(database_url: str) -> dict[str, int]:
    return {table: _query(database_url, f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}


def _line(path: str, text: str, *, within: str | None = None) -> str:
    """``path:line`` of the one line of ``path`` (relative to the repository) holding ``text`` (after ``within``'s line)."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    start = next(number for number, line in enumerate(lines) if within in line) if within else 0
    found = [number for number, line in enumerate(lines, start=1) if number > start and text in line]
    assert found and (within or len(found) == 1), f"{text!r} is on {len(found)} lines of {path}"
    return f"{path}:{found[0]}"


SHIMS = "tests/faults/shims/__init__.py"


# -- auth: the event sink ----------------------------------------------------------------------------


@pytest.mark.slow
def test_missing_event_sink_is_a_warning_that_fails_at_warning_level(stand_in_apis, flow_database_url) -> None:
    """No event sink: the run passes at error level with AUTH004 warned; at warning level the verdict is AUTH004.

    New design: AUTH004 is judged from outside, by the reference target's ``events`` point never
    being called, so it is known only once the flow has run — the strict run runs the flow too.
    """
    target = shims.shim_target(shims.run_without_an_event_sink)
    run = run_flow(stand_in_apis(healthy_script(KIND), flow_database_url), _request(), target=target)
    assert run.report.verdict == "pass", run.report.first_failure
    (warned,) = [o for o in run.report.outcomes if o.check.id == "AUTH004"]
    assert warned.outcome is Outcome.WARNED
    (finding,) = warned.findings
    assert finding.point == "chat" and finding.evidence["events_emitted"] == 0
    assert finding.evidence["event_points"] == ["harness.flow.events:CollectingSink.emit"]

    strict = run_flow(
        stand_in_apis(healthy_script(KIND), flow_database_url), _request(), target=target, fail_level=Level.WARNING
    )
    assert strict.report.verdict == "auth:AUTH004"
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(2,)]


# -- llm: the team's code around the SDK ------------------------------------------------------------


@pytest.mark.slow
def test_key_read_from_an_unset_variable_is_llm101_before_any_call(stand_in_apis, flow_database_url) -> None:
    """A client never built (its key read from an unset variable) is LLM101 at discovery, with the raising line."""
    target = shims.shim_target(shims.run_reading_the_key_from_another_variable)
    run = run_flow(stand_in_apis(healthy_script(KIND), flow_database_url), _request(), target=target)
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("llm", "LLM101", "discovery")
    assert first.evidence["error"]["type"] == "MissingCredentials"
    assert first.evidence["location"] == _line("harness/flow/llm.py", "raise MissingCredentials(variable)")
    assert "ANTHROPIC_API_KEY is not set" in first.message
    assert run.observations["llm.calls"] == []  # nothing crossed the wire
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


@pytest.mark.slow
def test_wrapper_failing_on_a_good_answer_is_llm102_naming_the_wrapper(stand_in_apis, flow_database_url) -> None:
    """The API answers end_turn, the client wrapper hands on a dict, create_message raises: LLM102 at discovery."""
    target = shims.shim_target(shims.run_with_a_client_that_returns_dicts)
    run = run_flow(stand_in_apis(healthy_script(KIND), flow_database_url), _request(), target=target)
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("llm", "LLM102", "discovery")
    evidence = first.evidence
    assert evidence["wrapper"] == "harness.flow.llm:create_message"
    assert evidence["defined_at"] == _line("harness/flow/llm.py", "async def create_message(")
    assert (evidence["status"], evidence["stop_reason"]) == (200, "end_turn")
    assert evidence["error"]["type"] == "AttributeError" and "'dict' object has no attribute 'content'" in first.message
    # The answer itself was good: the llm check of the exchange passed, and nothing after it is judged a failure.
    assert [f.id for f in run.report.findings] == ["LLM102"]
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


# -- parse: the team's code handling an answer ------------------------------------------------------


@pytest.mark.slow
def test_failure_handling_the_skeleton_is_parse101_not_hidden_by_marking_the_plan_failed(
    stand_in_apis, flow_database_url
) -> None:
    """MASTERPLAN_BATCH_MAX_TASKS=0 fails cutting the skeleton into batches: PARSE101 at masterplan.skeleton.

    The flow then marks its plan failed (an UPDATE storing the error); that write came after
    the failure and must not make it look like a failure before the next LLM call (LLM101).
    """
    options = RunOptions(flow_env=(("MASTERPLAN_BATCH_MAX_TASKS", "0"),))
    run = run_flow(stand_in_apis(healthy_script(KIND), flow_database_url), _request(), options=options)
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("parse", "PARSE101", "masterplan.skeleton")
    assert first.evidence["location"] == _line("harness/flow/batching.py", 'raise ValueError("a batch must hold')
    assert first.evidence["answer_point"] == "masterplan.skeleton"
    assert "end_turn" in first.message  # the answer it was handling was complete
    ((status, failed_batch, error),) = _query(
        flow_database_url, "SELECT status::text, failed_batch, error_message FROM masterplans"
    )
    assert (status, failed_batch) == ("failed", 0)
    assert error == "skeleton: ValueError: a batch must hold at least one task"


# -- persist: the team's session scope --------------------------------------------------------------


@pytest.mark.slow
def test_swallowing_session_scope_is_persist011_by_the_provoked_run(flow_database_url) -> None:
    """Replayed answers: a failure provoked in the first save is swallowed at the scope's rollback line (PERSIST011).

    The first run fails nothing — a swallowing scope looks healthy until a save fails — so only
    the provoked second run shows it; the reference flow's own scope, which re-raises, passes it.
    """
    meta = load_meta(HEALTHY_CASSETTE)
    result = replay_cassette(meta, flow_database_url, target=shims.shim_target(shims.run_with_a_swallowing_session))
    assert result.verdict == "persist:PERSIST011", result.run.report.first_failure
    (finding,) = result.run.report.findings
    assert finding.evidence["provoked_in"] == "discovery_documents"
    # The failed commit rolled the unit back inside SQLAlchemy, at the scope's own commit line.
    assert finding.evidence["rolled_back_at"] == _line(SHIMS, "super().commit()")
    assert finding.evidence["flow_ended_with"].startswith("DiscoveryNotFound: ")
    assert (finding.evidence["writes_after"], finding.evidence["calls_after"]) == (0, 0)
    # The first run's rows are all there: the provoked run's rows were refused.
    assert _query(flow_database_url, "SELECT status::text FROM masterplans") == [("draft",)]

    control = replay_cassette(meta, flow_database_url)
    assert control.verdict == "pass"
    assert [o.outcome for o in control.run.report.outcomes if o.check.id == "PERSIST011"] == [Outcome.PASSED]


@pytest.mark.slow
def test_swallowed_plan_save_is_persist013_although_the_flow_returned(stand_in_apis, flow_database_url) -> None:
    """Single-call mode: the plan's commit is refused and swallowed, the flow returns its id — PERSIST013 at masterplan."""
    _execute(flow_database_url, _REFUSE_TASKS_AT_COMMIT)
    target = shims.shim_target(shims.run_with_a_swallowing_session)
    run = run_flow(
        stand_in_apis(_single_call_script(), flow_database_url), _request(), target=target, options=SINGLE_CALL
    )
    assert run.returned is not None and run.returned.masterplan_id is not None  # the caller believes it was saved
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("persist", "PERSIST013", "masterplan")
    assert first.evidence["document"] == "plan"
    assert first.evidence["identified_by"] == content.masterplan_for(KIND)["project_name"]
    assert _query(flow_database_url, "SELECT status::text, total_tasks FROM masterplans") == [("generating", 0)]
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_tasks") == [(0,)]


@pytest.mark.slow
def test_swallowed_batch_save_is_persist011_before_its_consequence_never_a_phase_taken_for_a_task(
    stand_in_apis, flow_database_url
) -> None:
    """Batch 1's commit is refused and swallowed: PERSIST011 names the swallowing scope, before batch 2's failure.

    Nothing is provoked here (live answers): the refused commit itself, rolled back and never
    re-raised, is the evidence. Batch 2's save then fails on the tasks it links to — a consequence,
    not a finding of its own. With no task rows saved, the plan's phases must not be matched as
    its tasks (which once gave a PERSIST002 comparing phase descriptions with task descriptions).
    """
    _execute(flow_database_url, _REFUSE_TASKS_AT_COMMIT)
    target = shims.shim_target(shims.run_with_a_swallowing_session)
    run = run_flow(stand_in_apis(healthy_script(KIND), flow_database_url), _request(), target=target)
    first = run.report.first_failure
    assert (first.stage.value, first.id) == ("persist", "PERSIST011")
    assert first.evidence["swallowed_in"].startswith("commit (tests/faults/shims/__init__.py:")
    assert "masterplan_tasks" in first.evidence["tables"]
    assert [f.id for f in run.report.findings] == ["PERSIST011"]
    (consequence,) = [o for o in run.report.outcomes if o.check.id == "PERSIST101"]
    assert consequence.outcome is Outcome.NOT_APPLICABLE and "KeyError followed PERSIST011" in consequence.reason
    ((status, failed_batch, committed),) = _query(
        flow_database_url, "SELECT status::text, failed_batch, batches_committed FROM masterplans"
    )
    # Batch 1's whole unit was rolled back, yet the flow went on to batch 2.
    assert (status, failed_batch, committed) == ("failed", 2, 0)
    assert _query(flow_database_url, "SELECT count(*) FROM masterplan_tasks") == [(0,)]


@pytest.mark.slow
def test_rows_flushed_and_never_committed_are_persist012(stand_in_apis, flow_database_url) -> None:
    """A session whose commit only flushes: the discovery row is flushed, thrown away at close — PERSIST012."""
    target = shims.shim_target(shims.run_with_a_session_that_never_commits)
    run = run_flow(stand_in_apis(healthy_script(KIND), flow_database_url), _request(), target=target)
    first = run.report.first_failure
    assert (first.stage.value, first.id) == ("persist", "PERSIST012")
    assert first.evidence["tables"] == ["discovery_documents"]
    assert first.evidence["ended_at"] == _line("harness/flow/database.py", "session.close()")
    assert len(first.evidence["rows"]) == 1
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


@pytest.mark.slow
def test_audit_hook_raising_while_saving_is_persist101_at_its_line(stand_in_apis, flow_database_url) -> None:
    """The team's before_flush hook raises KeyError saving the discovery: PERSIST101 at discovery, at the hook's line."""
    target = shims.shim_target(shims.run_with_an_audited_session)
    run = run_flow(stand_in_apis(healthy_script(KIND), flow_database_url), _request(), target=target)
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("persist", "PERSIST101", "discovery")
    assert first.evidence["location"] == _line(SHIMS, 'actor = session.info["actor"]')
    assert first.evidence["error"]["type"] == "KeyError"
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


# -- canary rows under faults ------------------------------------------------------------------------


@pytest.mark.slow
def test_canary_cleanup_holds_when_the_save_is_swallowed(stand_in_apis, flow_database_url) -> None:
    """A canary run whose batch save is swallowed still removes every row it wrote, children first (PERSIST008)."""
    _execute(flow_database_url, _REFUSE_TASKS_AT_COMMIT)
    target = shims.shim_target(shims.run_with_a_swallowing_session)
    run = run_flow(
        stand_in_apis(healthy_script(KIND), flow_database_url),
        _request(),
        target=target,
        options=RunOptions(canary=True),
    )
    assert run.report.verdict == "persist:PERSIST011", run.report.first_failure
    (cleanup,) = [o for o in run.report.outcomes if o.check.id == "PERSIST008"]
    assert cleanup.outcome is Outcome.PASSED
    plan = content.masterplan_for(KIND)
    phases = len(plan["phases"])
    milestones = sum(len(phase["milestones"]) for phase in plan["phases"])
    canary = run.observations["canary"]
    assert canary["rows_deleted"] == 1 + 1 + phases + milestones  # discovery, plan, its phases and milestones
    assert canary["tables"] == ["discovery_documents", "masterplan_milestones", "masterplan_phases", "masterplans"]
    assert canary["session_id"].startswith("harness-canary-") and run.session_id == canary["session_id"]
    assert _counts(flow_database_url) == dict.fromkeys(TABLES, 0)
