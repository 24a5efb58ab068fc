"""Database faults injected into real PostgreSQL: statement timeout, slots exhausted, the server going away mid-commit.

The faults that stop or fill a server run on a cluster of their own (started once for this
module), so the session's shared cluster is never disturbed. The reference flow runs as the
harness runs any target; where the fault needs the flow to try a unit of work only once, the
target is the shim :func:`tests.faults.shims.run_without_retries`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from harness.config import sqlalchemy_url
from harness.flow.models import MasterPlanTask
from harness.postgres import DatabaseFactory, PostgresUnavailable, start_cluster
from harness.runner import FlowRequest, RunOptions, run_flow
from harness.target import Target, reference_config
from probes.core import Outcome
from tests.faults import shims
from tests.support import content
from tests.support.scenarios import healthy_script
from tests.support.wire_server import WireScript

KIND = "task_manager"
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


def _dsn(database_url: str) -> str:
    return sqlalchemy_url(database_url).replace("+psycopg", "")


def _query(database_url: str, statement: str) -> list[tuple]:
    with psycopg.connect(_dsn(database_url), connect_timeout=2) as connection:
        return connection.execute(statement).fetchall()


def _expected_tasks() -> int:
    return sum(1 for _ in content.iter_tasks(content.masterplan_for(KIND)))


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Any]:
    """A cluster of this module's own, which its tests may stop, kill and fill."""
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        pytest.fail(f"no disposable PostgreSQL could be started: {exc}", pytrace=False)
    with cluster:
        if not cluster.owns_server:
            pytest.skip("the test cluster is not ours to stop (external server or Docker)")
        yield cluster


@pytest.fixture(scope="module")
def own_databases(own_cluster: Any) -> DatabaseFactory:
    """Fresh databases on the module's cluster, built by the reference target's own migrations."""
    return DatabaseFactory(own_cluster, prepare_template=Target(reference_config()).build_schema)


@pytest.fixture
def own_database_url(own_databases: DatabaseFactory) -> Iterator[str]:
    """A fresh migrated database on the module's own cluster."""
    url = own_databases.new_database()
    try:
        yield url
    finally:
        own_databases.drop(url)


@pytest.mark.slow
def test_statement_timeout_on_the_save_is_persist006_with_sqlstate(stand_in_apis, flow_database_url) -> None:
    """A save blocked past statement_timeout is PERSIST006 (kind canceled, SQLSTATE 57014) at discovery; nothing is saved.

    Mapped to the existing PERSIST006 ("save committed without a database error"): the evidence's
    SQLSTATE and kind tell a timeout apart, and the hint (read the SQLSTATE) fits.
    """
    name = _dsn(flow_database_url).rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(_dsn(flow_database_url), autocommit=True, connect_timeout=2) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET statement_timeout = 300')
    with psycopg.connect(_dsn(flow_database_url), connect_timeout=2) as locker:
        locker.execute("LOCK TABLE discovery_documents IN SHARE MODE")  # readers pass, the INSERT waits
        run = run_flow(stand_in_apis(healthy_script(KIND), flow_database_url), _request())
        locker.rollback()
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("persist", "PERSIST006", "discovery")
    assert first.evidence["sqlstate"] == "57014"
    assert "canceled" in first.message and "statement timeout" in first.evidence["error"]
    assert first.evidence["location"].startswith("harness/flow/")  # the app's line that made the save
    assert _query(flow_database_url, "SELECT count(*) FROM discovery_documents") == [(0,)]


@contextmanager
def _server_stopped_during_first_batch_insert(own_cluster: Any, mode: str) -> Iterator[list[str]]:
    """Stop the server (``mode``) as the first batch's tasks are inserted, inside their unit of work, before commit."""
    fired: list[str] = []

    def do_orm_execute(state: Any) -> None:
        table = getattr(state.statement, "table", None)
        if not fired and state.is_insert and getattr(table, "name", None) == MasterPlanTask.__tablename__:
            fired.append(mode)
            own_cluster.restart(mode)  # down and back up: this transaction's connection is gone

    # On the Session class: the flow builds its own session factory inside the call.
    event.listen(Session, "do_orm_execute", do_orm_execute)
    try:
        yield fired
    finally:
        event.remove(Session, "do_orm_execute", do_orm_execute)


def _durable(database_url: str) -> None:
    """Commits that survive a crash: the test cluster runs with synchronous_commit=off, which may lose them."""
    name = _dsn(database_url).rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(_dsn(database_url), autocommit=True, connect_timeout=2) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate", "kill"])
def test_server_stopped_during_a_plan_commit_is_retried_and_loses_nothing(
    stand_in_apis, own_cluster, own_database_url, mode
) -> None:
    """Server stopped mid-commit (fast, immediate, SIGKILL): the batch is redone on a new connection, plan complete."""
    _durable(own_database_url)
    with _server_stopped_during_first_batch_insert(own_cluster, mode) as fired, capture_logs() as logs:
        run = run_flow(stand_in_apis(healthy_script(KIND), own_database_url), _request())
    assert fired == [mode]
    assert run.report.verdict == "pass", run.report.first_failure
    passed = {(o.check.id, o.point) for o in run.report.outcomes if o.outcome is Outcome.PASSED}
    assert {("PERSIST001", "masterplan.batch-1"), ("PERSIST003", "masterplan")} <= passed
    retried = [
        entry
        for entry in logs
        if entry["event"] == "call_attempt" and entry["point"] == "masterplan.batch-1" and entry["stage"] == "persist"
    ]
    assert [entry["outcome"] for entry in retried] == ["retry", "ok"]
    assert retried[0]["error_type"] == "OperationalError"
    expected = _expected_tasks()
    assert _query(own_database_url, "SELECT status::text, total_tasks FROM masterplans") == [("draft", expected)]
    assert _query(own_database_url, "SELECT count(*) FROM masterplan_tasks") == [(expected,)]  # none twice


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate", "kill"])
def test_server_stopped_during_a_plan_commit_without_retries_leaves_plan_failed(
    stand_in_apis, own_cluster, own_database_url, mode
) -> None:
    """With no retry left, a server stopped mid-commit is PERSIST006 (connection lost); no partial plan is visible."""
    _durable(own_database_url)
    target = shims.shim_target(shims.run_without_retries)
    with _server_stopped_during_first_batch_insert(own_cluster, mode) as fired:
        run = run_flow(stand_in_apis(healthy_script(KIND), own_database_url), _request(), target=target)
    assert fired == [mode]
    first = run.report.first_failure
    assert (first.stage.value, first.id, first.point) == ("persist", "PERSIST006", "masterplan.batch-1")
    assert "connection_lost" in first.message, first.message
    ((status, failed_batch, error),) = _query(
        own_database_url, "SELECT status::text, failed_batch, error_message FROM masterplans"
    )
    assert (status, failed_batch) == ("failed", 1) and error.startswith("batch 1:")
    assert _query(own_database_url, "SELECT count(*) FROM masterplan_tasks") == [(0,)]
    assert _query(own_database_url, "SELECT count(*) FROM masterplans WHERE status = 'draft'") == [(0,)]


@pytest.mark.slow
def test_canary_cleanup_holds_after_the_server_was_killed(stand_in_apis, own_cluster, own_database_url) -> None:
    """A canary run whose server is killed mid-commit removes every row it wrote, by the keys seen, once it is back."""
    _durable(own_database_url)
    target = shims.shim_target(shims.run_without_retries)
    with _server_stopped_during_first_batch_insert(own_cluster, "kill") as fired:
        run = run_flow(
            stand_in_apis(healthy_script(KIND), own_database_url),
            _request(),
            target=target,
            options=RunOptions(canary=True),
        )
    assert fired == ["kill"]
    assert run.report.verdict == "persist:PERSIST006"
    assert [o.outcome for o in run.report.outcomes if o.check.id == "PERSIST008"] == [Outcome.PASSED]
    canary = run.observations["canary"]
    assert canary["rows_deleted"] >= 3  # the discovery, the plan, its phases and milestones: all committed before
    assert {"discovery_documents", "masterplans", "masterplan_phases"} <= set(canary["tables"])
    for table in TABLES:
        assert _query(own_database_url, f"SELECT count(*) FROM {table}") == [(0,)], table


@pytest.mark.slow
def test_server_out_of_connection_slots_is_db010(stand_in_apis, own_cluster, own_database_url) -> None:
    """Every slot of max_connections taken: the db stage fails with DB010 and SQLSTATE 53300; the flow never runs."""
    held: list[psycopg.Connection] = []
    try:
        while True:
            try:
                held.append(psycopg.connect(_dsn(own_database_url), connect_timeout=2))
            except psycopg.OperationalError as exc:
                assert "too many clients" in str(exc) or "reserved" in str(exc), exc
                break
            assert len(held) < 200, "max_connections never reached"
        run = run_flow(stand_in_apis(WireScript(), own_database_url), _request())
    finally:
        for connection in held:
            connection.close()
    first = run.report.first_failure
    assert (first.stage.value, first.id) == ("db", "DB010")
    assert "too many clients" in first.evidence["error"]
    assert run.returned is None and "llm.calls" not in run.observations  # no LLM call, no row
    blocked = [o for o in run.report.outcomes if o.check.id in ("LLM100", "PERSIST001")]
    assert blocked and all(o.outcome is Outcome.BLOCKED for o in blocked)
