"""Stage db: each database fault, injected into a real disposable cluster, is named by its check."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import make_url

from harness.config import TIMEOUTS, Settings, plain_url
from harness.dbconnect import connect_ahead
from harness.flow.database import migrations_ini
from harness.flow.models import metadata
from harness.replay import REPLAY_ANTHROPIC_KEY
from harness.runner import FlowRequest, LLMMode, RunOptions, run_flow
from harness.target import Target, reference_config
from probes import db
from probes.core import Stage


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


def test_migrated_database_passes_every_schema_check(postgres_cluster, flow_database_url: str) -> None:
    """The reference flow at head: no finding from DB004-DB009, DB011 or DB012 (its migrations build its models)."""
    assert _check(flow_database_url, db.check_tables, metadata) == []
    assert _check(flow_database_url, db.check_columns, metadata) == []
    assert _check(flow_database_url, db.check_migration_version, metadata, migrations_ini()) == []
    assert _check(flow_database_url, db.check_privileges, metadata) == []
    assert _check(flow_database_url, db.check_writable) == []
    findings = _check(flow_database_url, lambda c: db.check_server(c)[0])
    assert findings == []
    assert db.check_migration_heads(migrations_ini()) == []
    new_database = lambda: postgres_cluster.url(postgres_cluster.create_database())
    drop_database = lambda url: postgres_cluster.drop_database(make_url(url).database)
    assert db.check_migrations_build_models(metadata, migrations_ini(), new_database, drop_database) == []


def test_table_keys_still_name_the_tables_to_find(flow_database_url: str) -> None:
    """Bare table keys (the runner's call today) are judged like the metadata that has them."""
    assert _check(flow_database_url, db.check_tables, metadata.tables.keys()) == []
    assert _check(flow_database_url, db.check_tables, ["masterplans", "no_such_table"])[0].evidence[
        "missing_tables"
    ] == ["no_such_table"]


def test_missing_table_is_db004(postgres_cluster, flow_database_url: str) -> None:
    """A dropped table is named by DB004."""
    postgres_cluster.run_sql("DROP TABLE masterplan_task_dependencies", make_url(flow_database_url).database)
    (finding,) = _check(flow_database_url, db.check_tables, metadata)
    assert finding.id == "DB004" and finding.evidence["missing_tables"] == ["masterplan_task_dependencies"]


@pytest.mark.parametrize(
    ("sql", "table", "column", "problem"),
    [
        ("ALTER TABLE masterplans DROP COLUMN total_tasks", "public.masterplans", "total_tasks", "missing"),
        (
            "ALTER TABLE masterplan_tasks ALTER COLUMN title TYPE integer USING 0",
            "public.masterplan_tasks",
            "title",
            "incompatible type",
        ),
        (
            "ALTER TABLE masterplan_phases ADD COLUMN owner text NOT NULL",
            "public.masterplan_phases",
            "owner",
            "extra NOT NULL column without a default",
        ),
        (
            "ALTER TABLE masterplans ALTER COLUMN description SET NOT NULL",
            "public.masterplans",
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
    """An alembic_version at an older revision is a DB007 warning naming it, the head and what is pending."""
    postgres_cluster.run_sql("UPDATE alembic_version SET version_num = '0001'", make_url(flow_database_url).database)
    (finding,) = _check(flow_database_url, db.check_migration_version, metadata, migrations_ini())
    assert finding.id == "DB007" and finding.level.name == "WARNING"
    assert finding.evidence["database_revisions"] == ["0001"] and finding.evidence["heads"] == ["0002"]
    assert finding.evidence["pending_revisions"] == ["0002"]
    assert finding.evidence["version_table"] == "public.alembic_version"


def test_revision_the_scripts_do_not_know_is_db007(postgres_cluster, flow_database_url) -> None:
    """A database stamped with a revision absent from the app's scripts is DB007 naming it as unknown."""
    postgres_cluster.run_sql("UPDATE alembic_version SET version_num = 'abc123'", make_url(flow_database_url).database)
    (finding,) = _check(flow_database_url, db.check_migration_version, metadata, migrations_ini())
    assert finding.id == "DB007" and finding.evidence["unknown_revisions"] == ["abc123"]


def test_revoked_insert_is_db008_per_table(postgres_cluster, flow_database_url) -> None:
    """A role without INSERT on a table is named with the missing privilege."""
    name = make_url(flow_database_url).database
    postgres_cluster.run_sql("CREATE ROLE harness_app LOGIN PASSWORD 'app-pass-123456'", name)
    postgres_cluster.run_sql("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO harness_app", name)
    postgres_cluster.run_sql("REVOKE INSERT ON masterplan_tasks FROM harness_app", name)
    try:
        url = _with(flow_database_url, username="harness_app", password="app-pass-123456")
        (finding,) = _check(url, db.check_privileges, metadata)
    finally:
        postgres_cluster.run_sql("DROP OWNED BY harness_app; DROP ROLE harness_app", name)
    assert finding.id == "DB008" and finding.evidence["missing_privileges"] == {"public.masterplan_tasks": ["INSERT"]}


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
            return (110022, "11.22", "app", "public")

    class FakeConnection:
        engine = type("E", (), {"url": make_url("postgresql://h/app")})()

        def execute(self, *_):
            return Row()

    findings, facts = db.check_server(FakeConnection())
    assert [f.id for f in findings] == ["DB005"] and facts["server_version"] == "11.22"


# -- connecting ahead, and schema verdicts a clone inherits from its template -------------------------


def test_a_connection_begun_ahead_that_timed_out_is_the_verdict_without_a_second_wait(counting_listener) -> None:
    """diagnose begins connecting before its imports: the probe reports that attempt's timeout and never connects again."""
    port, accepted = counting_listener
    url = f"postgresql://u:p@127.0.0.1:{port}/x"
    connect_ahead(url, TIMEOUTS)
    (finding,) = _connect_findings(url)
    assert finding.id == "DB001" and finding.evidence["error_type"] == "ConnectionTimeout"
    assert len(accepted) == 1  # the early attempt only: the probe did not wait out a timeout of its own


def test_a_connection_begun_ahead_that_succeeded_leaves_the_probe_connecting_as_usual(flow_database_url) -> None:
    """When the early attempt connected, the probe opens its own connection, and a healthy database passes."""
    connect_ahead(flow_database_url, TIMEOUTS)
    findings, engine, connection = db.open_probe_connection(flow_database_url)
    try:
        assert findings == [] and connection.closed is False
    finally:
        connection.close()
        engine.dispose()


def _preflight(url: str, template: str | None) -> Any:
    settings = Settings(database_url=plain_url(url), anthropic_api_key=REPLAY_ANTHROPIC_KEY)
    options = RunOptions(stages=frozenset({Stage.ENV, Stage.DB, Stage.AUTH}), llm=LLMMode.REPLAY, template=template)
    return run_flow(settings, FlowRequest("plan", "user-1", "sid-1"), target=Target(reference_config()), options=options)


def _outcome(run: Any, check_id: str) -> str:
    return next(o.outcome.value for o in run.report.outcomes if o.check.id == check_id)


def test_clones_of_one_template_inherit_its_schema_verdict_and_others_are_judged_afresh(
    postgres_cluster, flow_database_factory
) -> None:
    """The schema checks judged on one clone of a template (DB012 from the template's own build by the migrations)
    are inherited by its other clones; a database not declared a clone is judged on its own, and a broken one fails."""
    template = flow_database_factory.prepare()
    first, second, other = (flow_database_factory.new_database() for _ in range(3))
    schema_checks = ["DB004", "DB006", "DB007", "DB008", "DB012"]
    try:
        judged = _preflight(first, template)
        # No disposable database was given: DB012 judged the clone the migrations' build made, no trial of its own.
        assert [_outcome(judged, c) for c in schema_checks] == ["passed"] * 5
        inherited = _preflight(second, template)
        assert inherited.observations["db.inherited"] == {"template": template, "checks": schema_checks}
        assert [_outcome(inherited, c) for c in schema_checks] == ["passed"] * 5
        postgres_cluster.run_sql("ALTER TABLE masterplans DROP COLUMN total_milestones", make_url(other).database)
        afresh = _preflight(other, None)
        assert "db.inherited" not in afresh.observations and _outcome(afresh, "DB006") == "failed"
        assert _outcome(afresh, "DB012") == "skipped"  # not a clone, and no disposable database for a trial
    finally:
        for url in (first, second, other):
            flow_database_factory.drop(url)
