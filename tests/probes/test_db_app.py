"""Stage db on an application of its own (tests/probes/schema_app): its metadata, its search_path, its migrations.

Every database here is real and built by the app's own Alembic scripts, run through its
own env.py; the variants change only the scripts (a migration missing, a branch, a failure).
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from harness.config import Settings
from harness.migrations import apply_migrations
from harness.postgres import DatabaseFactory
from harness.target import Target, TargetConfig
from probes import db
from probes.context import PreflightContext
from probes.core import Level, NotApplicable, ProbeSkipped, Recorder, Stage
from probes.registry import Scope, probes_for

SCHEMA_APP = Path(__file__).parent / "schema_app"
URL_ENV = "PLANNER_DATABASE_URL"
SEARCH_PATH = "planning, public"
FIRST = "planner_0001_create_plans_tasks_and_tags"
SECOND = "planner_0002_add_task_estimate_hours"
BRANCH = "planner_0003_flag_archived_plans_on_a_branch"
BRANCH_FILE = f'''"""Plans can be archived (written on a branch beside {SECOND}).

Revision ID: {BRANCH}
Revises: {FIRST}
"""

import sqlalchemy as sa
from alembic import op

revision = "{BRANCH}"
down_revision = "{FIRST}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plans", sa.Column("archived", sa.Boolean(), nullable=True))
'''
BROKEN = "planner_0003_rename_a_table_that_is_not_there"
BROKEN_FILE = f'''"""Rename a table that does not exist.

Revision ID: {BROKEN}
Revises: {SECOND}
"""

from alembic import op

revision = "{BROKEN}"
down_revision = "{SECOND}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rename_table("task_notes", "notes")
'''


@pytest.fixture(scope="module")
def planner_metadata() -> Iterator[Any]:
    """The planner app's MetaData, imported from its own folder."""
    sys.path.insert(0, str(SCHEMA_APP))
    try:
        yield importlib.import_module("planner_app.models").metadata
    finally:
        sys.path.remove(str(SCHEMA_APP))


def _driver(url: str, drivername: str) -> str:
    return make_url(url).set(drivername=drivername).render_as_string(hide_password=False)


def _migrate(ini: Path, url: str, revision: str = "heads") -> None:
    run = apply_migrations(ini, url, revision=revision, database_url_env=URL_ENV)
    assert run.succeeded, run


@pytest.fixture(scope="module")
def planner_databases(postgres_cluster) -> DatabaseFactory:
    """Clones of a database the planner's migrations brought to head, its search_path set as in production."""

    def prepare(url: str) -> None:
        postgres_cluster.run_sql(f'ALTER DATABASE "{make_url(url).database}" SET search_path = {SEARCH_PATH}')
        _migrate(SCHEMA_APP / "alembic.ini", url)

    return DatabaseFactory(postgres_cluster, prepare)


@pytest.fixture
def empty_planner_database(postgres_cluster) -> Iterator[str]:
    """An empty database whose search_path is the planner's, as a DBA set it."""
    name = postgres_cluster.create_database()
    postgres_cluster.run_sql(f'ALTER DATABASE "{name}" SET search_path = {SEARCH_PATH}')
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture
def planner_database(planner_databases, postgres_cluster) -> Iterator[str]:
    """A database of the planner at head (settings of a database are not cloned: the search_path is set again)."""
    url = planner_databases.new_database()
    name = make_url(url).database
    postgres_cluster.run_sql(f'ALTER DATABASE "{name}" SET search_path = {SEARCH_PATH}')
    try:
        yield url
    finally:
        planner_databases.drop(url)


@pytest.fixture
def disposable(postgres_cluster) -> tuple[Callable[[], str], Callable[[str], None]]:
    """``(new_database, drop_database)`` for DB012, on the session's cluster."""
    return (
        lambda: postgres_cluster.url(postgres_cluster.create_database()),
        lambda url: postgres_cluster.drop_database(make_url(url).database),
    )


def _app_copy(tmp_path: Path, *, drop: tuple[str, ...] = (), add: dict[str, str] | None = None) -> Path:
    """A copy of the planner app with revision files dropped or added; returns its alembic.ini."""
    folder = tmp_path / "planner"
    shutil.copytree(SCHEMA_APP, folder, ignore=shutil.ignore_patterns("__pycache__"))
    versions = folder / "migrations" / "versions"
    for revision in drop:
        (versions / f"{revision}.py").unlink()
    for revision, source in (add or {}).items():
        (versions / f"{revision}.py").write_text(source)
    return folder / "alembic.ini"


def _probe(url: str, fn: Callable[..., Any], *args: Any) -> Any:
    findings, engine, connection = db.open_probe_connection(url)
    assert findings == []
    try:
        return fn(connection, *args)
    finally:
        connection.close()
        engine.dispose()


def _all_schema_checks(url: str, metadata: Any, ini: Path, disposable: tuple, drivername: str) -> dict[str, list]:
    search_path = _probe(url, lambda c: db.check_server(c)[1]["search_path"])
    return {
        "DB004": _probe(url, db.check_tables, metadata),
        "DB006": _probe(url, db.check_columns, metadata),
        "DB007": _probe(url, db.check_migration_version, metadata, ini),
        "DB008": _probe(url, db.check_privileges, metadata),
        "DB011": db.check_migration_heads(ini),
        "DB012": db.check_migrations_build_models(
            metadata,
            ini,
            *disposable,
            database_url_env=URL_ENV,
            search_path=search_path,
            drivername=drivername,
        ),
    }


@pytest.mark.parametrize("drivername", ["postgresql+psycopg", "postgresql+psycopg2"])
def test_healthy_app_has_no_finding_from_any_schema_check(planner_database, planner_metadata, disposable, drivername):
    """A healthy app — tables via search_path, equivalent type spellings, long revision ids — draws no finding
    from DB004, DB006, DB007, DB008, DB011 or DB012, whichever driver its URL names."""
    url = _driver(planner_database, drivername)
    findings = _all_schema_checks(url, planner_metadata, SCHEMA_APP / "alembic.ini", disposable, drivername)
    assert findings == {check: [] for check in findings}


def test_tables_resolve_in_the_schema_the_search_path_gives(planner_database, planner_metadata) -> None:
    """Unqualified tables are found where the database's search_path puts them; an explicit schema is kept."""
    found, missing = _probe(planner_database, db.locate_tables, planner_metadata)
    assert missing == ()
    assert {location.key: location.qualified_name for location in found} == {
        "plans": "planning.plans",
        "tasks": "planning.tasks",
        "planning.plan_tags": "planning.plan_tags",
    }


def test_tables_outside_the_search_path_are_db004_saying_where_they_are(
    planner_database, planner_metadata, postgres_cluster
) -> None:
    """Without the search_path setting, DB004 names the unqualified tables and the schema that holds them."""
    postgres_cluster.run_sql(f'ALTER DATABASE "{make_url(planner_database).database}" RESET search_path')
    (finding,) = _probe(planner_database, db.check_tables, planner_metadata)
    assert finding.id == "DB004"
    assert finding.evidence["missing_tables"] == ["plans", "tasks"]
    assert finding.evidence["found_elsewhere"] == {"plans": ["planning"], "tasks": ["planning"]}
    assert "planning" not in finding.evidence["schemas_on_path"]


def test_search_path_in_the_url_options_is_honoured(planner_database, planner_metadata, postgres_cluster) -> None:
    """A search_path given in the URL's options (not the database's settings) is the one the probes use."""
    postgres_cluster.run_sql(f'ALTER DATABASE "{make_url(planner_database).database}" RESET search_path')
    url = make_url(planner_database).update_query_dict({"options": "-csearch_path=planning"})
    url_text = url.render_as_string(hide_password=False)
    assert _probe(url_text, db.check_tables, planner_metadata) == []
    assert _probe(url_text, lambda c: db.check_server(c)[1]["search_path"]) == "planning"


def test_missing_table_is_db004_naming_only_it(planner_database, planner_metadata, postgres_cluster) -> None:
    """A dropped mapped table is the only one DB004 names; DB006 judges the tables that are there."""
    postgres_cluster.run_sql("DROP TABLE planning.tasks", make_url(planner_database).database)
    (finding,) = _probe(planner_database, db.check_tables, planner_metadata)
    assert finding.id == "DB004" and finding.evidence["missing_tables"] == ["tasks"]
    assert _probe(planner_database, db.check_columns, planner_metadata) == []


def test_column_no_migration_creates_is_db012_naming_exactly_it(
    tmp_path, planner_metadata, disposable, empty_planner_database
) -> None:
    """Without the migration that adds tasks.estimate_hours, DB012 names exactly that column — and DB006 on a
    database those migrations built names exactly it too."""
    ini = _app_copy(tmp_path, drop=(SECOND,))
    (finding,) = db.check_migrations_build_models(
        planner_metadata, ini, *disposable, database_url_env=URL_ENV, search_path=SEARCH_PATH
    )
    assert finding.id == "DB012"
    assert finding.evidence["missing_tables"] == []
    assert finding.evidence["columns"] == [
        {"table": "planning.tasks", "column": "estimate_hours", "problem": "missing", "expected": "NUMERIC(6, 2)"}
    ]
    _migrate(ini, empty_planner_database)
    (drift,) = _probe(empty_planner_database, db.check_columns, planner_metadata)
    assert drift.id == "DB006" and drift.evidence["columns"] == finding.evidence["columns"]


def test_two_heads_are_db011_naming_both_with_their_files(tmp_path, planner_metadata, disposable) -> None:
    """A branch beside the head is DB011 naming both heads and their files; DB012 still applies both heads."""
    ini = _app_copy(tmp_path, add={BRANCH: BRANCH_FILE})
    (finding,) = db.check_migration_heads(ini)
    assert finding.id == "DB011" and finding.level is Level.ERROR
    assert finding.evidence["heads"] == [
        {"revision": SECOND, "file": f"migrations/versions/{SECOND}.py"},
        {"revision": BRANCH, "file": f"migrations/versions/{BRANCH}.py"},
    ]
    assert (
        db.check_migrations_build_models(
            planner_metadata, ini, *disposable, database_url_env=URL_ENV, search_path=SEARCH_PATH
        )
        == []
    )


def test_database_behind_head_is_db007(planner_metadata, empty_planner_database) -> None:
    """A database migrated to the first revision only is a DB007 warning naming its revision, the head and
    what is pending, read from the version table in the planning schema."""
    _migrate(SCHEMA_APP / "alembic.ini", empty_planner_database, revision=FIRST)
    (finding,) = _probe(
        empty_planner_database, db.check_migration_version, planner_metadata, SCHEMA_APP / "alembic.ini"
    )
    assert finding.id == "DB007" and finding.level is Level.WARNING
    assert finding.evidence["database_revisions"] == [FIRST]
    assert finding.evidence["heads"] == [SECOND]
    assert finding.evidence["pending_revisions"] == [SECOND]
    assert finding.evidence["version_table"] == "planning.alembic_version"


def test_database_never_stamped_is_db007_not_at_head(planner_database, planner_metadata, postgres_cluster) -> None:
    """The app's tables without a version table: DB007 says the database was never stamped."""
    postgres_cluster.run_sql("DROP TABLE planning.alembic_version", make_url(planner_database).database)
    (finding,) = _probe(planner_database, db.check_migration_version, planner_metadata, SCHEMA_APP / "alembic.ini")
    assert finding.id == "DB007" and "never stamped" in finding.message
    assert finding.evidence["database_revisions"] == [] and finding.evidence["heads"] == [SECOND]


def test_empty_database_is_never_at_head(planner_metadata, empty_planner_database) -> None:
    """A database with none of the app's tables and no version table: DB007 says it was never migrated."""
    (finding,) = _probe(
        empty_planner_database, db.check_migration_version, planner_metadata, SCHEMA_APP / "alembic.ini"
    )
    assert finding.id == "DB007" and "never migrated" in finding.message


def test_stamped_at_head_without_tables_is_not_at_head(planner_database, planner_metadata, postgres_cluster) -> None:
    """A version table at head while none of the models' tables exists is still DB007."""
    postgres_cluster.run_sql(
        "DROP TABLE planning.plan_tags, planning.tasks, planning.plans CASCADE", make_url(planner_database).database
    )
    (finding,) = _probe(planner_database, db.check_migration_version, planner_metadata, SCHEMA_APP / "alembic.ini")
    assert finding.id == "DB007" and "none of the models' tables" in finding.message


def test_revoked_privileges_are_db008_with_schema_qualified_names(
    planner_database, planner_metadata, postgres_cluster
) -> None:
    """A role without INSERT on planning.tasks, and without USAGE on its id sequence, is DB008 naming both."""
    name = make_url(planner_database).database
    postgres_cluster.run_sql("CREATE ROLE planner_app LOGIN PASSWORD 'planner-pass-123456'")
    try:
        postgres_cluster.run_sql(
            "GRANT USAGE ON SCHEMA planning TO planner_app;"
            " GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA planning TO planner_app;"
            " REVOKE INSERT ON planning.tasks FROM planner_app",
            name,
        )
        url = _driver(
            make_url(planner_database)
            .set(username="planner_app", password="planner-pass-123456")
            .render_as_string(hide_password=False),
            "postgresql+psycopg2",
        )
        (finding,) = _probe(url, db.check_privileges, planner_metadata)
        postgres_cluster.run_sql(
            "GRANT INSERT ON planning.tasks TO planner_app;"
            " GRANT USAGE ON ALL SEQUENCES IN SCHEMA planning TO planner_app",
            name,
        )
        assert _probe(url, db.check_privileges, planner_metadata) == []
    finally:
        postgres_cluster.run_sql("DROP OWNED BY planner_app", name)
        postgres_cluster.run_sql("DROP ROLE planner_app")
    assert finding.id == "DB008"
    assert finding.evidence["missing_privileges"] == {
        "planning.tasks": ["INSERT"],
        "sequence planning.tasks_id_seq": ["USAGE"],
    }
    assert "planner-pass-123456" not in str(finding.to_dict())


def test_failing_migration_is_db012_with_its_revision_and_error(tmp_path, planner_metadata, disposable) -> None:
    """A migration that fails to apply from empty is DB012 naming the revision, its file and the database's error."""
    ini = _app_copy(tmp_path, add={BROKEN: BROKEN_FILE})
    (finding,) = db.check_migrations_build_models(
        planner_metadata, ini, *disposable, database_url_env=URL_ENV, search_path=SEARCH_PATH
    )
    assert finding.id == "DB012"
    assert finding.evidence["failed_revision"] == BROKEN
    assert finding.evidence["failed_file"] == f"migrations/versions/{BROKEN}.py"
    assert 'relation "task_notes" does not exist' in finding.evidence["error"]
    assert finding.evidence["error_type"] == "UndefinedTable"


def _preflight_db(url: str | None, ini: Path, disposable: tuple | None) -> dict[str, tuple[str, str | None]]:
    """The db stage's registered probes run as the runner runs them, on the planner as a real target."""
    target = Target(
        TargetConfig(
            source=SCHEMA_APP / "alembic.ini",
            flow="planner_app.models:Plan",
            metadata="planner_app.models:metadata",
            migrations=ini,
            database_url_env=URL_ENV,
            app_path=(SCHEMA_APP,),
        )
    )
    recorder = Recorder({Stage.DB: db.classify})
    ctx = PreflightContext(
        settings=Settings(database_url=url),
        target=target,
        identity=None,
        observe=recorder.observe,
        disposable=disposable,
    )
    try:
        for entry in probes_for(Stage.DB, Scope.PREFLIGHT):
            recorder.run_probe(entry, "db", ctx)
    finally:
        db.close_probe_connection(ctx.db)
    return {o.check.id: (o.outcome.value, o.reason) for o in recorder.finish().outcomes}


def test_registered_db_probes_pass_on_the_healthy_app(planner_database, planner_metadata, disposable) -> None:
    """Walked from the registry as the runner walks it, every db check passes on the healthy planner."""
    outcomes = _preflight_db(planner_database, SCHEMA_APP / "alembic.ini", disposable)
    assert {check: outcome for check, (outcome, _) in outcomes.items()} == {
        check.id: "passed" for check in db.CHECKS if check is not db.DB900
    }


def test_db012_without_a_disposable_database_is_skipped_never_passed(planner_database, planner_metadata) -> None:
    """With no disposable PostgreSQL, DB012 is recorded as skipped, with that reason."""
    with pytest.raises(ProbeSkipped, match="no disposable PostgreSQL"):
        db.check_migrations_build_models(planner_metadata, SCHEMA_APP / "alembic.ini", None, None)
    outcome, reason = _preflight_db(planner_database, SCHEMA_APP / "alembic.ini", None)["DB012"]
    assert outcome == "skipped" and "no disposable PostgreSQL" in reason


def test_migrations_that_cannot_load_are_db011_and_leave_db007_skipped(
    tmp_path, planner_database, planner_metadata
) -> None:
    """A revision file that does not import fails DB011; DB007, which cannot judge without it, is skipped saying so."""
    ini = _app_copy(tmp_path)
    (ini.parent / "migrations" / "versions" / f"{SECOND}.py").write_text("def upgrade(:\n")
    outcomes = _preflight_db(planner_database, ini, None)
    assert outcomes["DB011"][0] == "failed"
    assert outcomes["DB007"][0] == "skipped" and "cannot be loaded" in outcomes["DB007"][1]


def test_no_migrations_configured_skips_the_migration_checks(planner_database, planner_metadata, disposable) -> None:
    """An app that names no alembic.ini has DB007, DB011 and DB012 not applicable rather than passed."""
    with pytest.raises(NotApplicable):
        db.check_migration_heads(None)
    with pytest.raises(NotApplicable):
        _probe(planner_database, db.check_migration_version, planner_metadata, None)
    with pytest.raises(NotApplicable):
        db.check_migrations_build_models(planner_metadata, None, *disposable)
