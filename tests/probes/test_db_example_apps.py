"""Stage db on the example applications (tests/examples): someone else's schema, judged with no false alarm.

atlas keeps its tables in ``planning`` through a search_path its first migration sets, runs on
psycopg2, stores uppercase enum names and has 40-character revision ids; beacon is Core tables on
async psycopg 3 in ``public``. Each is migrated by its own Alembic scripts; the seeded migration
bugs must be named exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from harness.target import Target
from probes import db
from tests.examples.bugs import APPS_DIR, apply_bug
from tests.examples.runs import App, imported, load_app, migrate

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(postgres_cluster: Any) -> Iterator[str]:
    """A new empty database (the app's own migrations build it); dropped afterwards."""
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.info.libpq_dsn(name)
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture
def disposable(postgres_cluster: Any) -> tuple:
    """``(new_database, drop_database)`` for DB012."""
    return (
        lambda: postgres_cluster.info.libpq_dsn(postgres_cluster.create_database()),
        lambda url: postgres_cluster.drop_database(make_url(url).database),
    )


def _probe(url: str, fn: Any, *args: Any) -> Any:
    findings, engine, connection = db.open_probe_connection(url)
    assert findings == []
    try:
        return fn(connection, *args)
    finally:
        connection.close()
        engine.dispose()


def _schema_findings(app: App, url: str, disposable: tuple) -> dict[str, list]:
    with imported(app):
        metadata = Target(app.config).metadata
        ini = app.config.migrations
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
                database_url_env=app.database_env,
                search_path=search_path,
                drivername=make_url(url).drivername,
            ),
        }


@pytest.mark.parametrize("name", ["atlas", "beacon"])
def test_healthy_example_app_draws_no_schema_finding(name: str, database_url: str, disposable: tuple) -> None:
    """Migrated by its own scripts, each example app passes DB004, DB006, DB007, DB008, DB011 and DB012."""
    app = load_app(APPS_DIR / name / "pyproject.toml")
    migrate(app, database_url)
    findings = _schema_findings(app, database_url, disposable)
    assert findings == {check: [] for check in findings}


@pytest.mark.parametrize(
    ("bug", "table", "column"),
    [
        ("atlas-migration-missing-column", "planning.masterplans", "estimated_duration_minutes"),
        ("beacon-migration-missing-column", "public.plan_tasks", "estimated_tokens"),
    ],
)
def test_seeded_missing_column_is_named_exactly_by_db006_and_db012(
    bug: str, table: str, column: str, tmp_path: Path, database_url: str, disposable: tuple
) -> None:
    """The column a seeded migration forgets is the one problem DB006 and DB012 report, and nothing else fires."""
    app = load_app(apply_bug(bug, tmp_path))
    migrate(app, database_url)
    findings = _schema_findings(app, database_url, disposable)
    assert {check: [f.id for f in found] for check, found in findings.items()} == {
        "DB004": [],
        "DB006": ["DB006"],
        "DB007": [],
        "DB008": [],
        "DB011": [],
        "DB012": ["DB012"],
    }
    for check in ("DB006", "DB012"):
        (problem,) = findings[check][0].evidence["columns"]
        assert (problem["table"], problem["column"], problem["problem"]) == (table, column, "missing")


def test_seeded_two_heads_are_db011(tmp_path: Path) -> None:
    """atlas with two heads: DB011 names both revisions and their files."""
    app = load_app(apply_bug("atlas-two-heads", tmp_path))
    with imported(app):
        (finding,) = db.check_migration_heads(app.config.migrations)
    assert finding.id == "DB011"
    assert [(h["revision"], h["file"]) for h in finding.evidence["heads"]] == [
        (
            "20251112_0002_record_llm_usage_and_generation_cost",
            "migrations/versions/20251112_0002_record_llm_usage_and_generation_cost.py",
        ),
        (
            "20251119_0003_unique_task_numbers_per_plan",
            "migrations/versions/20251119_0003_unique_task_numbers_per_plan.py",
        ),
    ]
