"""Flow faults: one component of the flow swapped for a broken one, caught at its stage with evidence."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.orm import Session, sessionmaker

from harness.config import sqlalchemy_url
from harness.flow.database import make_engine
from harness.recording import content
from harness.recording.scenarios import healthy_script
from harness.recording.wire_server import WireScript
from harness.runner import NO_EVENT_SINK, FlowRequest, RunOptions, run_flow
from probes.core import Level, Outcome

KIND = "task_manager"

#: A trigger that refuses every discovery row: the database-side fault a swallowing scope hides.
_REFUSE_DISCOVERY = """
CREATE FUNCTION harness_refuse() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'discovery rows refused by the fault'; END $$;
CREATE TRIGGER harness_refuse BEFORE INSERT ON discovery_documents FOR EACH ROW EXECUTE FUNCTION harness_refuse();
"""


def _healthy_script() -> WireScript:
    return healthy_script(KIND)


def _request() -> FlowRequest:
    return FlowRequest(content.request_for(KIND), "user-1", "sid-1")


def _query(database_url: str, statement: str) -> list[tuple]:
    with psycopg.connect(sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2) as connection:
        return connection.execute(statement).fetchall()


def _execute(database_url: str, statement: str) -> None:
    with psycopg.connect(
        sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2, autocommit=True
    ) as connection:
        connection.execute(statement)


class SwallowingSession(Session):
    """The seed's suspected bug: a scope that logs a failed commit, rolls back, and does not re-raise."""

    def commit(self) -> None:
        try:
            super().commit()
        except Exception:
            self.rollback()  # swallowed: the caller believes the save succeeded


@pytest.mark.slow
def test_swallowing_session_scope_is_caught_by_readback(stand_in_apis, flow_database_url) -> None:
    """A commit that "succeeds" without a row is PERSIST001 at discovery, naming the table and the missing key."""
    _execute(flow_database_url, _REFUSE_DISCOVERY)
    engine = make_engine(flow_database_url)
    try:
        sessions = sessionmaker(bind=engine, class_=SwallowingSession, expire_on_commit=False)
        run = run_flow(stand_in_apis(_healthy_script(), flow_database_url), _request(), session_factory=sessions)
    finally:
        engine.dispose()
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("persist", "PERSIST001", "discovery")
    assert first.evidence["table"] == "discovery_documents"
    assert first.evidence["key"] == run.observations["saved.discovery"]["key"]
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


@pytest.mark.slow
def test_missing_event_sink_is_a_warning_that_fails_at_warning_level(stand_in_apis, flow_database_url) -> None:
    """No event sink: the run still passes at error level with AUTH004 warned; at warning level it fails there."""
    run = run_flow(stand_in_apis(_healthy_script(), flow_database_url), _request(), events=NO_EVENT_SINK)
    assert run.report.verdict == "pass", run.report.first_failure
    (warned,) = [o for o in run.report.outcomes if o.check.id == "AUTH004"]
    assert (warned.outcome, warned.point) == (Outcome.WARNED, "chat")
    assert warned.findings[0].evidence["events_emitted"] == 0
    assert run.observations["events.sink_missing"] is True

    strict = run_flow(
        stand_in_apis(WireScript(), flow_database_url), _request(), events=NO_EVENT_SINK, fail_level=Level.WARNING
    )
    assert strict.report.verdict == "auth:AUTH004"
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(1,)]  # only the first run's


@pytest.mark.slow
def test_event_sink_present_passes_auth004(stand_in_apis, flow_database_url) -> None:
    """With the default sink the command's AUTH004 passes at the chat point."""
    run = run_flow(stand_in_apis(_healthy_script(), flow_database_url), _request())
    outcomes = [(o.outcome, o.point) for o in run.report.outcomes if o.check.id == "AUTH004"]
    assert outcomes == [(Outcome.PASSED, "chat")]


@pytest.mark.slow
def test_canary_cleanup_holds_when_the_save_is_swallowed(stand_in_apis, flow_database_url) -> None:
    """A canary run under a failing save still removes its rows (PERSIST008 passes) and leaves none behind."""
    _execute(flow_database_url, _REFUSE_DISCOVERY.replace("discovery_documents", "masterplans"))
    run = run_flow(stand_in_apis(_healthy_script(), flow_database_url), _request(), options=RunOptions(canary=True))
    assert run.report.verdict.startswith("persist:"), run.report.verdict
    (cleanup,) = [o for o in run.report.outcomes if o.check.id == "PERSIST008"]
    assert cleanup.outcome is Outcome.PASSED
    assert run.observations["canary"]["rows_deleted"] >= 1  # the discovery was saved before the plan failed
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]
