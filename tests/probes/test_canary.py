"""Canary rows a killed diagnose run left behind: found, removed with their children, reported — and nothing else.

The leftovers are real: the reference flow replays the healthy cassette under a canary
session id, as a run killed before its cleanup leaves it (discovery, plan, phases,
milestones, tasks, dependencies), on a disposable PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from harness.cassettes import load_meta, replaying
from harness.config import Settings, plain_url, sqlalchemy_url
from harness.replay import REPLAY_ANTHROPIC_KEY, REPLAY_OPENAI_KEY, flow_env
from harness.runner import FlowRequest, LLMMode, RunOptions, run_flow
from harness.target import load_target
from probes import canary, persist
from probes.core import Outcome, Stage

CASSETTE = Path(__file__).resolve().parents[2] / "cassettes" / "healthy-task-manager.yaml"
KILLED = "harness-canary-20250301T081502Z-0badc0de"
COUNTED = ("discovery_documents", "masterplans", "masterplan_phases", "masterplan_milestones", "masterplan_tasks")


def _settings(database_url: str) -> Settings:
    return Settings(
        database_url=plain_url(database_url),
        anthropic_api_key=REPLAY_ANTHROPIC_KEY,
        openai_api_key=REPLAY_OPENAI_KEY,
    )


def _write_plan(database_url: str, session_id: str) -> None:
    """Run the reference flow on the healthy cassette under ``session_id``: a whole plan, committed, never removed."""
    meta = load_meta(CASSETTE)
    run = run_flow(
        _settings(database_url),
        FlowRequest(meta.request, "user-1", session_id),
        options=RunOptions(llm=LLMMode.REPLAY, flow_env=tuple(sorted(flow_env(meta).items()))),
        answers=lambda: replaying(CASSETTE),
    )
    assert run.report.verdict == "pass"


def _count(database_url: str, sql: str, *args: object) -> int:
    with psycopg.connect(sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2) as connection:
        return connection.execute(sql, args).fetchone()[0]


def _rows_of(database_url: str, session_id: str) -> dict[str, int]:
    """Rows of each table belonging to the plan(s) of ``session_id``."""
    plans = "(SELECT masterplan_id FROM masterplans WHERE session_id = %s)"
    return {
        "discovery_documents": _count(database_url, "SELECT count(*) FROM discovery_documents WHERE session_id = %s", session_id),
        "masterplans": _count(database_url, "SELECT count(*) FROM masterplans WHERE session_id = %s", session_id),
        "masterplan_phases": _count(database_url, f"SELECT count(*) FROM masterplan_phases WHERE masterplan_id IN {plans}", session_id),
        "masterplan_tasks": _count(database_url, f"SELECT count(*) FROM masterplan_tasks WHERE masterplan_id IN {plans}", session_id),
    }


def test_canary_ids_carry_the_time_they_were_made() -> None:
    """A new canary id names its UTC time, read back to the second; an id of an older harness has no time."""
    made = datetime(2026, 11, 30, 15, 20, 47, tzinfo=UTC)
    session_id = canary.new_session_id(made)
    assert session_id.startswith(persist.CANARY_PREFIX) and len(session_id) <= 64
    assert canary.written_at(session_id) == made
    assert canary.written_at("harness-canary-1a2b3c4d5e6f") is None
    assert canary.new_session_id() != canary.new_session_id()


def test_session_columns_are_found_by_name_and_by_what_this_run_wrote() -> None:
    """The reference models' session_id columns are canary columns; a differently named one only once seen."""
    metadata = load_target().metadata
    found = {(table.name, column.name) for table, column in canary.canary_columns(metadata)}
    assert found == {("discovery_documents", "session_id"), ("masterplans", "session_id")}
    seen = {(table.name, column.name) for table, column in canary.canary_columns(metadata, [("masterplans", "user_id")])}
    assert ("masterplans", "user_id") in seen


@pytest.mark.slow
def test_a_killed_runs_plan_is_removed_with_its_children_and_nothing_else(flow_database_url: str) -> None:
    """A dead run's canary plan is removed whole and named with when it was written; a real user's plan stays."""
    _write_plan(flow_database_url, KILLED)
    _write_plan(flow_database_url, "sid-real-user")
    real_before = _rows_of(flow_database_url, "sid-real-user")
    assert _rows_of(flow_database_url, KILLED)["masterplan_tasks"] > 100

    swept = canary.sweep(flow_database_url, load_target().metadata)

    assert [left.session_id for left in swept.leftovers] == [KILLED]
    (left,) = swept.leftovers
    assert left.written_at == datetime(2025, 3, 1, 8, 15, 2, tzinfo=UTC) and left.removed
    assert left.rows["masterplan_tasks"] > 100 and left.rows["masterplan_milestones"] > 0
    assert swept.remaining == {} and swept.error is None
    assert set(_rows_of(flow_database_url, KILLED).values()) == {0}
    assert _count(flow_database_url, "SELECT count(*) FROM masterplan_task_dependencies d WHERE NOT EXISTS "
                  "(SELECT 1 FROM masterplan_tasks t WHERE t.task_id = d.task_id)") == 0
    assert _rows_of(flow_database_url, "sid-real-user") == real_before


@pytest.mark.slow
def test_a_live_runs_canary_is_left_alone(flow_database_url: str) -> None:
    """Rows of a canary whose run still holds its advisory lock are neither removed nor counted; once it is gone they are."""
    _write_plan(flow_database_url, KILLED)
    with canary.holding(flow_database_url, KILLED) as held:
        assert held
        swept = canary.sweep(flow_database_url, load_target().metadata)
        assert swept.live == [KILLED] and swept.leftovers == [] and swept.remaining == {}
        assert _rows_of(flow_database_url, KILLED)["masterplans"] == 1
    swept = canary.sweep(flow_database_url, load_target().metadata)
    assert [left.session_id for left in swept.leftovers] == [KILLED]
    assert _rows_of(flow_database_url, KILLED)["masterplans"] == 0


@pytest.mark.slow
def test_a_canary_another_sessions_row_hangs_from_is_never_deleted(flow_database_url: str) -> None:
    """A real plan pointing at a canary discovery keeps that canary in place (ON DELETE CASCADE would take the plan)."""
    _write_plan(flow_database_url, KILLED)
    _write_plan(flow_database_url, "sid-real-user")
    with psycopg.connect(sqlalchemy_url(flow_database_url).replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(
            "UPDATE masterplans SET discovery_id = (SELECT discovery_id FROM discovery_documents WHERE session_id = %s)"
            " WHERE session_id = 'sid-real-user'",
            (KILLED,),
        )
    real_before = _rows_of(flow_database_url, "sid-real-user")

    swept = canary.sweep(flow_database_url, load_target().metadata)

    assert swept.kept == {KILLED: {"masterplans": 1}}
    assert [(left.session_id, left.removed) for left in swept.leftovers] == [(KILLED, False)]
    assert swept.remaining[KILLED]["discovery_documents"] == 1
    assert _rows_of(flow_database_url, "sid-real-user") == real_before


def _diagnose_without_the_flow(database_url: str, **options: object) -> dict[str, object]:
    run = run_flow(
        _settings(database_url),
        FlowRequest("a to-do app", "user-1", "sid-1"),
        options=RunOptions(llm=LLMMode.OFF, canary=True, **options),  # type: ignore[arg-type]
    )
    return {o.check.id: o for o in run.report.outcomes if o.check.id in ("PERSIST008", "PERSIST014")}


@pytest.mark.slow
def test_the_next_diagnose_reports_a_killed_runs_rows_as_a_warning_of_their_own(flow_database_url: str) -> None:
    """The next diagnose (even --llm off) removes a killed run's rows: PERSIST014 warns with the time, PERSIST008 passes."""
    _write_plan(flow_database_url, KILLED)
    outcomes = _diagnose_without_the_flow(flow_database_url)
    assert outcomes["PERSIST014"].outcome is Outcome.WARNED
    (finding,) = outcomes["PERSIST014"].findings
    assert KILLED in finding.message and "2025-03-01 08:15:02 UTC" in finding.message
    assert finding.evidence["written_at"] == "2025-03-01T08:15:02+00:00" and finding.evidence["removed"] is True
    assert outcomes["PERSIST008"].outcome is Outcome.PASSED
    assert set(_rows_of(flow_database_url, KILLED).values()) == {0}


@pytest.mark.slow
def test_persist008_fails_while_any_canary_row_remains(flow_database_url: str) -> None:
    """A canary that could not be removed fails PERSIST008 naming its session, though it is not this run's."""
    _write_plan(flow_database_url, KILLED)
    _write_plan(flow_database_url, "sid-real-user")
    with psycopg.connect(sqlalchemy_url(flow_database_url).replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(
            "UPDATE masterplans SET discovery_id = (SELECT discovery_id FROM discovery_documents WHERE session_id = %s)"
            " WHERE session_id = 'sid-real-user'",
            (KILLED,),
        )
    outcomes = _diagnose_without_the_flow(flow_database_url)
    assert outcomes["PERSIST008"].outcome is Outcome.FAILED
    (finding,) = outcomes["PERSIST008"].findings
    assert KILLED in finding.evidence["remaining"] and "left in place" in finding.message
    assert outcomes["PERSIST014"].outcome is Outcome.WARNED and "NOT removed" in outcomes["PERSIST014"].findings[0].message


@pytest.mark.slow
def test_read_only_or_deselected_persist_leaves_leftovers_alone(flow_database_url: str) -> None:
    """--read-only and a --stage without persist skip the sweep (said so), and the rows stay."""
    _write_plan(flow_database_url, KILLED)
    read_only = _diagnose_without_the_flow(flow_database_url, read_only=True)
    assert read_only["PERSIST014"].outcome is Outcome.SKIPPED and "--read-only" in (read_only["PERSIST014"].reason or "")
    deselected = _diagnose_without_the_flow(flow_database_url, stages=frozenset({Stage.ENV, Stage.DB}))
    assert deselected["PERSIST008"].outcome is Outcome.SKIPPED
    assert _rows_of(flow_database_url, KILLED)["masterplans"] == 1
