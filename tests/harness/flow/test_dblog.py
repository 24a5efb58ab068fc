"""SQLAlchemy transaction events logged at debug: begin, flush, commit, rollback with row counts."""

from __future__ import annotations

import uuid

import pytest
from structlog.testing import capture_logs

from harness.flow.database import make_engine, make_session_factory, session_scope
from harness.flow.models import DiscoveryDocument


def _own(logs: list[dict], session: object) -> list[dict]:
    """The captured events of ``session`` alone.

    ``capture_logs`` captures process-wide: a session another test left behind (rolled back when
    it is collected, or in a thread still running) may log into the capture while this test runs.
    """
    name = f"{id(session):x}"  # how harness.flow.dblog names a session
    return [event for event in logs if event.get("session") == name]


def _discovery() -> DiscoveryDocument:
    return DiscoveryDocument(
        session_id="sid-1",
        user_id="user-1",
        user_request="a task manager",
        domain="tasks",
        bounded_contexts=[],
        aggregates=[],
        value_objects=[],
        domain_events=[],
        services=[],
    )


@pytest.fixture
def factory(flow_database_url):
    """The flow's own session factory on a fresh database."""
    engine = make_engine(flow_database_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_commit_logs_begin_flush_and_commit_with_row_counts(factory) -> None:
    """One unit of work inserting two rows logs begun, flushed (2 inserted) and committed (2 inserted)."""
    with capture_logs() as logs, session_scope(factory) as session:
        session.add_all([_discovery(), _discovery()])
    logs = _own(logs, session)
    events = [(e["event"], e.get("inserted"), e["log_level"]) for e in logs if e["event"].startswith("db_")]
    assert events == [
        ("db_transaction_begun", None, "debug"),
        ("db_flushed", 2, "debug"),
        ("db_committed", 2, "debug"),
    ]
    assert next(e for e in logs if e["event"] == "db_flushed")["tables"] == ["discovery_documents"]


def test_rollback_logs_the_rows_it_undid(factory) -> None:
    """A failing unit of work logs db_rolled_back with the rows flushed before the error."""
    with capture_logs() as logs, pytest.raises(RuntimeError), session_scope(factory) as session:
        session.add(_discovery())
        session.flush()
        raise RuntimeError("boom")
    logs = _own(logs, session)
    rolled = [e for e in logs if e["event"] == "db_rolled_back"]
    assert [(e["inserted"], e["log_level"]) for e in rolled] == [(1, "debug")]
    assert not any(e["event"] == "db_committed" for e in logs)


def test_update_and_delete_are_counted(factory) -> None:
    """Changing one row and deleting another shows as updated=1 and deleted=1 at commit."""
    first, second = _discovery(), _discovery()
    with session_scope(factory) as session:
        session.add_all([first, second])
    with capture_logs() as logs, session_scope(factory) as session:
        session.get(DiscoveryDocument, first.discovery_id).domain = "renamed"
        session.delete(session.get(DiscoveryDocument, second.discovery_id))
    committed = next(e for e in _own(logs, session) if e["event"] == "db_committed")
    assert (committed["inserted"], committed["updated"], committed["deleted"]) == (0, 1, 1)
    assert uuid.UUID(str(first.discovery_id))
