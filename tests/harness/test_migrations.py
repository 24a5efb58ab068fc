"""harness/migrations.py: an app's Alembic scripts read from its alembic.ini, its version table found, a trial run."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from harness.flow.database import migrations_ini
from harness.migrations import MigrationsError, apply_migrations, find_version_tables, load_migrations

SCHEMA_APP = Path(__file__).parents[1] / "probes" / "schema_app"
FIRST = "planner_0001_create_plans_tasks_and_tags"
SECOND = "planner_0002_add_task_estimate_hours"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of the planner app (tests/probes/schema_app); returns its folder."""
    folder = tmp_path / "planner"
    shutil.copytree(SCHEMA_APP, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture
def database(postgres_cluster) -> Iterator[str]:
    """An empty database of its own."""
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)


def _revision(folder: Path, revision: str, down: str, body: str) -> None:
    (folder / "migrations" / "versions" / f"{revision}.py").write_text(
        f'"""{revision}."""\n\nfrom alembic import op\n\nrevision = "{revision}"\ndown_revision = "{down}"\n'
        f"branch_labels = None\ndepends_on = None\n\n\ndef upgrade() -> None:\n{body}\n"
    )


def test_script_location_is_relative_to_the_ini_not_the_working_directory(app, tmp_path, monkeypatch) -> None:
    """A relative script_location is found beside the ini, wherever the harness runs from."""
    monkeypatch.chdir(tmp_path)
    scripts = load_migrations(app / "alembic.ini")
    assert scripts.script_location == app / "migrations"
    assert scripts.heads == (SECOND,)
    assert [(r.id, r.down_revisions, r.file) for r in scripts.revisions] == [
        (SECOND, (FIRST,), f"migrations/versions/{SECOND}.py"),
        (FIRST, (), f"migrations/versions/{FIRST}.py"),
    ]


def test_here_in_the_ini_is_the_ini_folder(app, tmp_path, monkeypatch) -> None:
    """``%(here)s`` in script_location names the ini's folder."""
    ini = app / "alembic.ini"
    ini.write_text(ini.read_text().replace("script_location = migrations", "script_location = %(here)s/migrations"))
    monkeypatch.chdir(tmp_path)
    assert load_migrations(ini).script_location == app / "migrations"


def test_loading_leaves_sys_path_as_it_was(app) -> None:
    """prepend_sys_path is used while the scripts load, not left in the harness's sys.path for good."""
    before = list(sys.path)
    load_migrations(app / "alembic.ini")
    assert sys.path == before


def test_reference_flow_has_an_ini_of_its_own() -> None:
    """The reference flow's migrations load through the same code, from the alembic.ini it ships."""
    scripts = load_migrations(migrations_ini())
    assert scripts.heads == ("0002",) and [r.id for r in scripts.revisions] == ["0002", "0001"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda app: (app / "alembic.ini").unlink(), "no such file"),
        (lambda app: (app / "alembic.ini").write_text("[alembic]\npath_separator = os\n"), "no script_location"),
        (
            lambda app: (app / "migrations" / "versions" / f"{SECOND}.py").write_text("def upgrade(:\n"),
            f"migrations/versions/{SECOND}.py",
        ),
        pytest.param(
            lambda app: _revision(app, "planner_0003_after_a_ghost", "planner_ghost_revision", "    pass"),
            "ghost",
            marks=pytest.mark.filterwarnings("ignore:Revision planner_ghost_revision"),  # alembic warns, then raises
        ),
    ],
    ids=["no-ini", "no-script-location", "syntax-error", "unknown-down-revision"],
)
def test_scripts_that_cannot_load_are_a_migrations_error_naming_why(app, change, needle) -> None:
    """A missing ini, no script_location, a broken revision file or a dangling down_revision is one clear error."""
    change(app)
    with pytest.raises(MigrationsError, match=needle):
        load_migrations(app / "alembic.ini")


def test_version_table_is_found_in_its_schema_with_long_revision_ids(app, database, postgres_cluster) -> None:
    """The planner keeps alembic_version in planning (version_table_schema); its 40-character id is read back."""
    run = apply_migrations(app / "alembic.ini", database, revision=FIRST, database_url_env="PLANNER_DATABASE_URL")
    assert run.succeeded, run
    postgres_cluster.run_sql("CREATE TABLE public.my_versions (version_num varchar(64) PRIMARY KEY)", _name(database))
    postgres_cluster.run_sql("INSERT INTO public.my_versions VALUES ('x1')", _name(database))
    engine = sa.create_engine(database, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            tables = find_version_tables(connection)
    finally:
        engine.dispose()
    # Those on the search_path ("$user", public here) come first.
    assert [(t.qualified_name, t.revisions) for t in tables] == [
        ("public.my_versions", ("x1",)),
        ("planning.alembic_version", (FIRST,)),
    ]


def _name(url: str) -> str:
    return make_url(url).database


def test_trial_run_sets_the_apps_variable_only_in_the_child(app, database) -> None:
    """The app's env.py sees its URL variable set to the database given; the harness's environment is untouched."""
    os.environ.pop("PLANNER_DATABASE_URL", None)
    run = apply_migrations(app / "alembic.ini", database, database_url_env="PLANNER_DATABASE_URL")
    assert run.succeeded, run
    assert "PLANNER_DATABASE_URL" not in os.environ


def test_env_py_that_connects_elsewhere_is_refused_before_migrating(app, database, postgres_cluster) -> None:
    """An env.py that ignores the URL it is given is stopped at connect: the other database stays untouched."""
    production = postgres_cluster.create_database()
    try:
        env = app / "migrations" / "env.py"
        env.write_text(
            env.read_text().replace('os.environ.get("PLANNER_DATABASE_URL")', 'os.environ["PRODUCTION_URL"]')
        )
        run = apply_migrations(
            app / "alembic.ini",
            database,
            database_url_env="PLANNER_DATABASE_URL",
            extra_environ={"PRODUCTION_URL": postgres_cluster.url(production)},
        )
        assert not run.succeeded and run.refused and production in run.refused
        engine = sa.create_engine(postgres_cluster.url(production), connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as connection:
                assert sa.inspect(connection).get_schema_names() == ["information_schema", "public"]
                assert sa.inspect(connection).get_table_names() == []
        finally:
            engine.dispose()
    finally:
        postgres_cluster.drop_database(production)


def test_failure_names_the_revision_and_never_the_password(app, database, postgres_cluster) -> None:
    """A migration that raises is reported by revision and file; a URL in its message loses its password."""
    _revision(
        app,
        "planner_0003_leaks_its_url",
        SECOND,
        '    import os\n    raise RuntimeError(os.environ["PLANNER_DATABASE_URL"])',
    )
    run = apply_migrations(app / "alembic.ini", database, database_url_env="PLANNER_DATABASE_URL")
    assert not run.succeeded
    assert run.failed_revision == "planner_0003_leaks_its_url"
    assert run.failed_file == "migrations/versions/planner_0003_leaks_its_url.py"
    assert run.error_type == "RuntimeError" and "127.0.0.1" in run.error
    assert postgres_cluster.info.password not in run.error


def test_a_migration_that_hangs_is_killed_at_the_timeout(app, database) -> None:
    """A migration that never finishes is stopped at the given bound and reported as a failed run."""
    _revision(app, "planner_0003_sleeps", SECOND, "    import time\n    time.sleep(60)")
    run = apply_migrations(app / "alembic.ini", database, database_url_env="PLANNER_DATABASE_URL", timeout=5)
    assert not run.succeeded and run.error_type == "TimeoutExpired"
