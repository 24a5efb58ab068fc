"""Stage db: each database fault, injected into a real disposable cluster, is named by its check."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from harness.flow.models import metadata
from probes import db


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()
    accepted = []

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for connection in accepted:
        connection.close()
    server.close()


def _connect_findings(url: str) -> list:
    findings, engine, connection = db.open_probe_connection(url)
    if connection is not None:
        connection.close()
        engine.dispose()
    return findings


def _with(url: str, **parts) -> str:
    return make_url(url).set(**parts).render_as_string(hide_password=False)


def test_closed_port_is_db001_refused() -> None:
    """Nothing listening: DB001 with the refusal as evidence."""
    (finding,) = _connect_findings("postgresql://u:p@127.0.0.1:1/x")
    assert finding.id == "DB001" and "refused" in finding.message


def test_silent_listener_is_db001_timeout(silent_listener: int) -> None:
    """A server that accepts TCP and never answers gives a timeout verdict instead of hanging."""
    (finding,) = _connect_findings(f"postgresql://u:p@127.0.0.1:{silent_listener}/x")
    assert finding.id == "DB001" and "timeout" in finding.message
    assert finding.evidence["error_type"] == "ConnectionTimeout"


def test_wrong_password_is_db002_and_never_shows_the_password(flow_database_url: str) -> None:
    """Password authentication failing is DB002; the evidence hides the password."""
    url = _with(flow_database_url, password="wrong-password-123")
    (finding,) = _connect_findings(url)
    assert finding.id == "DB002"
    assert "wrong-password-123" not in str(finding.to_dict())


def test_missing_database_is_db003(flow_database_url: str) -> None:
    """A database name that does not exist is DB003."""
    (finding,) = _connect_findings(_with(flow_database_url, database="no_such_database_here"))
    assert finding.id == "DB003"


def _check(url: str, fn, *args):
    findings, engine, connection = db.open_probe_connection(url)
    assert findings == []
    try:
        return fn(connection, *args)
    finally:
        connection.close()
        engine.dispose()


def test_migrated_database_passes_every_schema_check(flow_database_url: str) -> None:
    """A database at head has all tables, columns, privileges, and accepts writes."""
    assert _check(flow_database_url, db.check_tables, metadata.tables.keys()) == []
    assert _check(flow_database_url, db.check_columns, metadata) == []
    assert _check(flow_database_url, db.check_privileges, metadata.tables.keys()) == []
    assert _check(flow_database_url, db.check_writable) == []
    findings = _check(flow_database_url, lambda c: db.check_server(c)[0])
    assert findings == []


def test_missing_table_is_db004(postgres_cluster, flow_database_url: str) -> None:
    """A dropped table is named by DB004."""
    postgres_cluster.run_sql("DROP TABLE masterplan_task_dependencies", make_url(flow_database_url).database)
    (finding,) = _check(flow_database_url, db.check_tables, metadata.tables.keys())
    assert finding.id == "DB004" and finding.evidence["missing_tables"] == ["masterplan_task_dependencies"]


@pytest.mark.parametrize(
    ("sql", "table", "column", "problem"),
    [
        ("ALTER TABLE masterplans DROP COLUMN total_tasks", "masterplans", "total_tasks", "missing"),
        (
            "ALTER TABLE masterplan_tasks ALTER COLUMN title TYPE integer USING 0",
            "masterplan_tasks",
            "title",
            "type changed",
        ),
        (
            "ALTER TABLE masterplan_phases ADD COLUMN owner text NOT NULL",
            "masterplan_phases",
            "owner",
            "extra NOT NULL column without a default",
        ),
        (
            "ALTER TABLE masterplans ALTER COLUMN description SET NOT NULL",
            "masterplans",
            "description",
            "NOT NULL in the database, nullable in the models",
        ),
    ],
)
def test_column_drift_is_db006_naming_table_and_column(
    postgres_cluster, flow_database_url, sql, table, column, problem
) -> None:
    """Each kind of column drift is reported with its table, column and problem."""
    postgres_cluster.run_sql(sql, make_url(flow_database_url).database)
    (finding,) = _check(flow_database_url, db.check_columns, metadata)
    assert finding.id == "DB006"
    assert {"table": table, "column": column, "problem": problem}.items() <= finding.evidence["columns"][0].items()


def test_extra_nullable_column_is_not_drift(postgres_cluster, flow_database_url) -> None:
    """A column the models do not know but that accepts NULL breaks nothing."""
    postgres_cluster.run_sql("ALTER TABLE masterplans ADD COLUMN notes text", make_url(flow_database_url).database)
    assert _check(flow_database_url, db.check_columns, metadata) == []


def test_migration_behind_head_is_db007(postgres_cluster, flow_database_url) -> None:
    """An alembic_version at another revision is a DB007 warning naming both revisions."""
    postgres_cluster.run_sql("UPDATE alembic_version SET version_num = 'abc123'", make_url(flow_database_url).database)
    (finding,) = _check(flow_database_url, db.check_migrations, "0001")
    assert finding.id == "DB007" and finding.evidence["database_revisions"] == ["abc123"]


def test_revoked_insert_is_db008_per_table(postgres_cluster, flow_database_url) -> None:
    """A role without INSERT on a table is named with the missing privilege."""
    name = make_url(flow_database_url).database
    postgres_cluster.run_sql("CREATE ROLE harness_app LOGIN PASSWORD 'app-pass-123456'", name)
    postgres_cluster.run_sql("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO harness_app", name)
    postgres_cluster.run_sql("REVOKE INSERT ON masterplan_tasks FROM harness_app", name)
    try:
        url = _with(flow_database_url, username="harness_app", password="app-pass-123456")
        (finding,) = _check(url, db.check_privileges, metadata.tables.keys())
    finally:
        postgres_cluster.run_sql("DROP OWNED BY harness_app; DROP ROLE harness_app", name)
    assert finding.id == "DB008" and finding.evidence["missing_privileges"] == {"masterplan_tasks": ["INSERT"]}


def test_read_only_default_is_db009(postgres_cluster, flow_database_url) -> None:
    """default_transaction_read_only on the database is DB009."""
    name = make_url(flow_database_url).database
    postgres_cluster.run_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    (finding,) = _check(flow_database_url, db.check_writable)
    assert finding.id == "DB009" and finding.evidence["default_transaction_read_only"] == "on"


def test_connection_slots_exhausted_is_db010(postgres_cluster, flow_database_url) -> None:
    """A role over its connection limit is told apart from an unreachable server."""
    name = make_url(flow_database_url).database
    postgres_cluster.run_sql("CREATE ROLE harness_limited LOGIN PASSWORD 'limited-pass-1234' CONNECTION LIMIT 0", name)
    try:
        (finding,) = _connect_findings(
            _with(flow_database_url, username="harness_limited", password="limited-pass-1234")
        )
    finally:
        postgres_cluster.run_sql("DROP ROLE harness_limited")
    assert finding.id == "DB010"


def test_old_server_version_is_db005(monkeypatch) -> None:
    """A server older than the minimum is DB005 (the version is faked: no old server can run here)."""

    class Row:
        def one(self):
            return (110022, "11.22", "app")

    class FakeConnection:
        engine = type("E", (), {"url": make_url("postgresql://h/app")})()

        def execute(self, *_):
            return Row()

    findings, facts = db.check_server(FakeConnection())
    assert [f.id for f in findings] == ["DB005"] and facts["server_version"] == "11.22"
