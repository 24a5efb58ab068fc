"""The example applications run end to end on real PostgreSQL and the real SDKs, and each seeded bug shows.

Each app is imported from its own folder, migrated with its own Alembic scripts into a
database of its own, and run against the local stand-in APIs over HTTP; its rows are then
read over an independent psycopg connection. Nothing is mocked.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.cassettes import load_meta, replaying, scan_cassette
from harness.target import Target
from tests.examples import runs
from tests.examples.bugs import APPS_DIR, BUGS, BugError, apply_bug, apply_patch, copy_app
from tests.examples.runs import App, Scripted, load_app, migrate, read_saved, run_flow, script_for, serving
from tests.support import content

pytestmark = pytest.mark.slow

APP_NAMES = ("atlas", "beacon")
#: The status each app gives a plan it finished saving.
FINISHED_STATUS = {"atlas": "DRAFT", "beacon": "ready"}


@pytest.fixture
def database_url(postgres_cluster: Any) -> Iterator[str]:
    """A new empty database for one test (the app's own migrations build it); dropped afterwards."""
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.info.libpq_dsn(name)
    finally:
        postgres_cluster.drop_database(name)


def _healthy(name: str) -> App:
    return load_app(APPS_DIR / name / "pyproject.toml")


def _run(app: App, database_url: str, script: str = "healthy") -> tuple[runs.FlowOutcome, Scripted, dict[str, int]]:
    """Migrate, serve the scripted answers, run the flow once; returns the outcome, the script, unused replies."""
    migrate(app, database_url)
    scripted = script_for(app.name, script)
    with serving(scripted.script) as apis:
        outcome = run_flow(app, database_url, apis.environ, request=scripted.request)
        unused = apis.unused()
    return outcome, scripted, unused


def _line_of(app: App, where: tuple[str, str]) -> tuple[str, int]:
    file, text = where
    lines = (app.root / file).read_text(encoding="utf-8").splitlines()
    matches = [number for number, line in enumerate(lines, start=1) if text in line]
    assert len(matches) == 1, f"{text!r} is on {len(matches)} lines of {file}"
    return file, matches[0]


def _assert_whole_plan_saved(app_name: str, saved: runs.SavedPlan, scripted: Scripted) -> None:
    discovery, plan = scripted.discovery, scripted.plan
    assert saved.discoveries == ((discovery["domain"], discovery["bounded_contexts"]),)
    assert saved.plans == ((plan["project_name"], FINISHED_STATUS[app_name], plan["total_tasks"]),)
    assert saved.phases == len(plan["phases"])
    assert saved.milestones == sum(len(phase["milestones"]) for phase in plan["phases"])
    expected = {
        task["task_number"]: runs.SavedTask(task["title"], milestone["name"], frozenset(task["depends_on"]))
        for phase in plan["phases"]
        for milestone in phase["milestones"]
        for task in milestone["tasks"]
    }
    assert dict(saved.tasks) == expected


# -- healthy apps --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_NAMES)
def test_healthy_app_saves_discovery_plan_and_every_task(name: str, database_url: str) -> None:
    """A healthy run returns the ids of what it saved, and every row (dependencies included) is readable elsewhere."""
    app = _healthy(name)
    outcome, scripted, unused = _run(app, database_url)
    assert outcome.error is None, f"{type(outcome.error).__name__}: {outcome.error}"
    assert unused == {}
    assert set(outcome.result) >= {"discovery_id"} and all(outcome.result.values())
    saved = read_saved(name, database_url)
    _assert_whole_plan_saved(name, saved, scripted)
    assert sum(1 for task in saved.tasks.values() if task.depends_on) > len(saved.tasks) // 2
    if name == "atlas":
        # Atlas adds the cache token counts to the input tokens and prices them: the stand-in sends both.
        import psycopg

        with psycopg.connect(database_url, connect_timeout=5) as conn:
            tokens, cost = conn.execute(
                "SELECT llm_input_tokens, llm_cost_usd FROM planning.discovery_documents"
            ).fetchone()
        assert tokens > 0 and cost > 0


@pytest.mark.parametrize("name", APP_NAMES)
def test_configuration_names_what_the_app_has(name: str) -> None:
    """Every function in the app's points table exists, and the flow is async for atlas and sync for beacon."""
    import importlib

    app = _healthy(name)
    with runs.imported(app):
        target = Target(app.config)
        assert target.is_async is (name == "atlas")
        for dotted in (point for points in app.config.points.values() for point in points):
            module, _, qualname = dotted.partition(":")
            value: Any = importlib.import_module(module)
            for part in qualname.split("."):
                value = getattr(value, part)
            assert callable(value), dotted
    assert sorted(app.config.points) == (
        ["llm", "load", "parse", "persist"] if name == "atlas" else ["llm", "load", "persist"]
    )


def test_atlas_tables_live_in_planning_reached_through_the_search_path(database_url: str) -> None:
    """Atlas's first migration puts its tables in `planning` and makes the database's search_path find them."""
    import psycopg

    app = _healthy("atlas")
    migrate(app, database_url)
    with runs.imported(app):
        import atlas.models  # type: ignore[import-not-found]  # noqa: F401
        from atlas.db import Base  # type: ignore[import-not-found]

        assert all(table.schema is None for table in Base.metadata.tables.values())
    with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("planning, public",)
        located = conn.execute("SELECT to_regclass('planning.masterplans'), to_regclass('public.masterplans')")
        assert located.fetchone() == ("masterplans", None)
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        labels = conn.execute("SELECT enum_range(NULL::planning.planstatus)::text").fetchone()[0]
    assert version == runs.heads(app)[0] and len(version) > 32
    assert labels == "{DRAFT,GENERATING,APPROVED,IN_PROGRESS,COMPLETED,FAILED}"


@pytest.mark.parametrize("name", APP_NAMES)
def test_migrations_build_exactly_what_the_app_declares(name: str, database_url: str) -> None:
    """Alembic's autogenerate finds no difference between each app's migrated database and its metadata."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    app = _healthy(name)
    migrate(app, database_url)
    with runs.imported(app):
        metadata = Target(app.config).metadata
        engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        finally:
            engine.dispose()
    assert differences == []


def test_atlas_refuses_a_request_without_a_user(database_url: str) -> None:
    """Atlas's chat command raises ValueError before any LLM call when the conversation has no user."""
    app = _healthy("atlas")
    migrate(app, database_url)
    scripted = script_for("atlas")
    with serving(scripted.script) as apis:
        outcome = run_flow(app, database_url, apis.environ, request=scripted.request, user_id=None)
        assert apis.anthropic.requests == []
    assert type(outcome.error).__name__ == "ValueError"
    assert outcome.app_frame is not None and outcome.app_frame[0] == "src/atlas/services/chat_service.py"


def test_beacon_plans_without_examples_when_no_openai_key(database_url: str) -> None:
    """Without OPENAI_API_KEY beacon skips example retrieval, asks no embeddings, and still saves the whole plan."""
    app = _healthy("beacon")
    migrate(app, database_url)
    scripted = script_for("beacon")
    with serving(scripted.script) as apis:
        environ = {**apis.environ, "OPENAI_API_KEY": None}
        outcome = run_flow(app, database_url, environ, request=scripted.request)
        assert apis.openai.requests == []
    assert outcome.error is None
    _assert_whole_plan_saved("beacon", read_saved("beacon", database_url), scripted)


@pytest.mark.parametrize("script", ["long-title"])
@pytest.mark.parametrize("name", APP_NAMES)
def test_a_refused_write_fails_the_healthy_flow_loudly(name: str, script: str, database_url: str) -> None:
    """Without a seeded bug, a title too long for its column makes the flow raise DataError (the control case)."""
    app = _healthy(name)
    outcome, _scripted, _unused = _run(app, database_url, script)
    assert type(outcome.error).__name__ == "DataError"
    saved = read_saved(name, database_url)
    if name == "atlas":
        assert saved.plans == ()  # the plan and all its children were one unit of work
    else:
        assert [status for _name, status, _total in saved.plans] == ["failed"]
        assert len(saved.tasks) == runs.BEACON_BATCH_SIZE  # batch 1 stays, batch 2 was refused


# -- the seeded bugs -----------------------------------------------------------------------------


def _buggy(name: str, tmp_path: Path) -> App:
    return load_app(apply_bug(name, tmp_path))


@pytest.mark.parametrize("name", sorted(BUGS))
def test_every_bug_applies_cleanly(name: str, tmp_path: Path) -> None:
    """Each bug's old text is in its app exactly once; the patched copy has the new text and still compiles."""
    bug = BUGS[name]
    original = (APPS_DIR / bug.app / bug.file).read_text(encoding="utf-8")
    pyproject = apply_bug(name, tmp_path)
    patched = (pyproject.parent / bug.file).read_text(encoding="utf-8")
    assert original.count(bug.old) == 1
    assert patched == original.replace(bug.old, bug.new) != original
    compile(patched, bug.file, "exec")
    if bug.where is not None:
        _line_of(load_app(pyproject), bug.where)


def test_apply_bug_fails_loudly_when_the_old_text_is_not_there_exactly_once(tmp_path: Path) -> None:
    """A bug whose old text is missing, or appears twice, is refused with a message naming it."""
    root = copy_app("atlas", tmp_path)
    template = BUGS["atlas-double-commit"]
    absent = dataclasses.replace(template, name="absent", file="src/atlas/db.py", old="no such text")
    twice = dataclasses.replace(template, name="twice", file="src/atlas/db.py", old="db.")
    with pytest.raises(BugError, match="absent: the old text occurs 0 times"):
        apply_patch(absent, root)
    with pytest.raises(BugError, match=r"twice: the old text occurs (?![01] )\d+ times"):
        apply_patch(twice, root)
    with pytest.raises(BugError, match="no bug named"):
        apply_bug("no-such-bug", tmp_path)


@pytest.mark.parametrize("name", sorted(name for name, bug in BUGS.items() if bug.raises))
def test_bug_makes_the_flow_raise_at_the_expected_line(name: str, tmp_path: Path, database_url: str) -> None:
    """A bug that breaks the flow makes it raise the expected exception, passing last through the expected app line."""
    bug = BUGS[name]
    app = _buggy(name, tmp_path)
    outcome, _scripted, _unused = _run(app, database_url, bug.script)
    assert type(outcome.error).__name__ == bug.raises, f"{type(outcome.error).__name__}: {outcome.error}"
    assert bug.where is not None
    assert outcome.app_frame == _line_of(app, bug.where)


def test_atlas_llm_wrapper_returns_none(tmp_path: Path, database_url: str) -> None:
    """The discovery answer arrives complete, the wrapper drops it, and nothing is saved."""
    app = _buggy("atlas-llm-wrapper-returns-none", tmp_path)
    scripted = script_for("atlas")
    migrate(app, database_url)
    with serving(scripted.script) as apis:
        outcome = run_flow(app, database_url, apis.environ, request=scripted.request)
        assert len(apis.anthropic.requests) == 1
    assert "'NoneType' object is not subscriptable" in str(outcome.error)
    assert read_saved("atlas", database_url).discoveries == ()


def test_atlas_logging_keyword_arguments(tmp_path: Path, database_url: str) -> None:
    """The logging call raises before the discovery call: the API is never asked anything."""
    app = _buggy("atlas-logging-keyword-arguments", tmp_path)
    scripted = script_for("atlas")
    migrate(app, database_url)
    with serving(scripted.script) as apis:
        outcome = run_flow(app, database_url, apis.environ, request=scripted.request)
        assert apis.anthropic.requests == []
    assert "unexpected keyword argument 'session_id'" in str(outcome.error)


@pytest.mark.parametrize("name", ["atlas-migration-missing-column", "beacon-migration-missing-column"])
def test_migration_missing_column(name: str, tmp_path: Path, database_url: str) -> None:
    """The migration runs to head without complaint, the column is absent, and the save that needs it fails."""
    import psycopg

    bug = BUGS[name]
    app = _buggy(name, tmp_path)
    table, column = (
        ("masterplans", "estimated_duration_minutes") if bug.app == "atlas" else ("plan_tasks", "estimated_tokens")
    )
    migrate(app, database_url)
    with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
        columns = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
            )
        }
    assert column not in columns and len(columns) > 5
    outcome, _scripted, _unused = _run(app, database_url)
    assert f'column "{column}" of relation "{table}" does not exist' in str(outcome.error)
    saved = read_saved(bug.app, database_url)
    assert saved.tasks == {} and len(saved.discoveries) == 1
    if bug.app == "beacon":
        assert [status for _name, status, _total in saved.plans] == ["failed"]


def test_atlas_two_heads(tmp_path: Path, database_url: str) -> None:
    """Alembic reports two heads, and `upgrade head` refuses to run."""
    from alembic.util import CommandError

    app = _buggy("atlas-two-heads", tmp_path)
    assert runs.heads(app) == (
        "20251112_0002_record_llm_usage_and_generation_cost",
        "20251119_0003_unique_task_numbers_per_plan",
    )
    with pytest.raises(CommandError, match="Multiple head revisions"):
        migrate(app, database_url)


def test_atlas_swallowing_session_scope(tmp_path: Path, database_url: str) -> None:
    """The plan's save fails and is rolled back, the flow returns normally with a plan id, and no plan row exists."""
    app = _buggy("atlas-swallowing-session-scope", tmp_path)
    outcome, _scripted, unused = _run(app, database_url, BUGS["atlas-swallowing-session-scope"].script)
    assert outcome.error is None and unused == {}
    assert outcome.result["masterplan_id"] is not None
    saved = read_saved("atlas", database_url)
    assert len(saved.discoveries) == 1 and saved.plans == () and saved.tasks == {}


def test_atlas_double_commit(tmp_path: Path, database_url: str) -> None:
    """Every row is saved, and the session that saved the discovery committed twice."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    commits: dict[int, int] = {}

    def count(session: Session) -> None:
        # Keyed by a number kept on the session: id() of a closed session is reused by the next one.
        unit = session.info.setdefault("commit_counter_unit", len(commits))
        commits[unit] = commits.get(unit, 0) + 1

    app = _buggy("atlas-double-commit", tmp_path)
    event.listen(Session, "after_commit", count)
    try:
        outcome, scripted, _unused = _run(app, database_url)
    finally:
        event.remove(Session, "after_commit", count)
    assert outcome.error is None
    _assert_whole_plan_saved("atlas", read_saved("atlas", database_url), scripted)
    # _save_discovery: 2; get_discovery (twice) and _save_masterplan: 1 each; get_masterplan never commits.
    assert sorted(commits.values()) == [1, 1, 1, 2]


def test_atlas_save_never_commits(tmp_path: Path, database_url: str) -> None:
    """The flow returns a masterplan id, yet the plan and all its children were never committed."""
    app = _buggy("atlas-save-never-commits", tmp_path)
    outcome, _scripted, unused = _run(app, database_url)
    assert outcome.error is None and unused == {}
    assert outcome.result["masterplan_id"] is not None
    saved = read_saved("atlas", database_url)
    assert len(saved.discoveries) == 1 and saved.plans == () and saved.tasks == {}


def test_atlas_expire_on_commit(tmp_path: Path, database_url: str) -> None:
    """The discovery is saved, but reading the loaded one raises, so the plan is never asked for."""
    app = _buggy("atlas-expire-on-commit", tmp_path)
    outcome, _scripted, unused = _run(app, database_url)
    assert "is not bound to a Session" in str(outcome.error)
    assert unused == {"anthropic": 1}
    assert len(read_saved("atlas", database_url).discoveries) == 1


def test_beacon_row_in_prompt(tmp_path: Path, database_url: str) -> None:
    """The discovery is saved, then building the skeleton prompt raises: only the discovery call was made."""
    app = _buggy("beacon-row-in-prompt", tmp_path)
    outcome, _scripted, unused = _run(app, database_url)
    assert "Object of type datetime is not JSON serializable" in str(outcome.error)
    assert unused["anthropic"] == len(script_for("beacon").script.anthropic) - 1
    assert len(read_saved("beacon", database_url).discoveries) == 1


def test_beacon_swallowing_transaction(tmp_path: Path, database_url: str) -> None:
    """Batch 2 is refused and rolled back, yet the flow returns and the plan is marked ready without its tasks."""
    app = _buggy("beacon-swallowing-transaction", tmp_path)
    outcome, scripted, unused = _run(app, database_url, BUGS["beacon-swallowing-transaction"].script)
    assert outcome.error is None and unused == {}
    saved = read_saved("beacon", database_url)
    assert [status for _name, status, _total in saved.plans] == ["ready"]
    size = runs.BEACON_BATCH_SIZE
    assert sorted(saved.tasks) == [n for n in range(1, scripted.plan["total_tasks"] + 1) if not size < n <= 2 * size]


def test_beacon_write_never_committed(tmp_path: Path, database_url: str) -> None:
    """Every task is saved, but the plan's final status update was never committed: it still says 'generating'."""
    app = _buggy("beacon-write-never-committed", tmp_path)
    outcome, scripted, _unused = _run(app, database_url)
    assert outcome.error is None
    saved = read_saved("beacon", database_url)
    assert len(saved.tasks) == scripted.plan["total_tasks"]
    assert [status for _name, status, _total in saved.plans] == ["generating"]


def test_every_bug_has_a_test_of_its_effect() -> None:
    """Each bug in the table is exercised by a test of this module that shows its effect."""
    source = Path(__file__).read_text(encoding="utf-8")
    untested = [name for name in BUGS if f"test_{name.replace('-', '_')}" not in source and f'"{name}"' not in source]
    assert untested == []


def test_apps_import_nothing_from_the_harness() -> None:
    """The example apps are someone else's code: none of their modules imports harness or probes."""
    offenders = []
    for app in APP_NAMES:
        for path in sorted((APPS_DIR / app).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                offenders += [
                    f"{path.relative_to(APPS_DIR)}: {n}" for n in names if n.split(".")[0] in ("harness", "probes")
                ]
    assert offenders == []


# -- cassettes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_NAMES)
def test_healthy_cassette_replays_through_the_app(name: str, database_url: str) -> None:
    """The recorded healthy cassette answers every request the app makes today, and the whole plan is saved."""
    from harness.pytest_plugin import blocking_network

    app = _healthy(name)
    cassette = APPS_DIR / name / "cassettes" / "healthy.yaml"
    meta = load_meta(cassette)
    assert (meta.expect, meta.user_id, meta.session_id) == ("pass", runs.USER_ID, runs.SESSION_ID)
    migrate(app, database_url)
    environ = {
        "ANTHROPIC_API_KEY": runs.ANTHROPIC_KEY,
        "OPENAI_API_KEY": runs.OPENAI_KEY,
        "ANTHROPIC_BASE_URL": None,
        "OPENAI_BASE_URL": None,
    }
    with blocking_network(), replaying(cassette) as recorded:
        outcome = run_flow(app, database_url, environ, request=meta.request)
        assert recorded.all_played
    assert outcome.error is None, f"{type(outcome.error).__name__}: {outcome.error}"
    _assert_whole_plan_saved(name, read_saved(name, database_url), script_for(name))
    assert meta.request == content.request_for(runs.KINDS[name])


def test_cassettes_hold_no_secret() -> None:
    """`harness cassettes scan` finds no secret-shaped string in the example apps' cassettes."""
    cassettes = sorted(APPS_DIR.glob("*/cassettes/*.yaml"))
    assert [path.parent.parent.name for path in cassettes] == list(APP_NAMES)
    assert [hit for path in cassettes for hit in scan_cassette(path)] == []
    scanned = subprocess.run(
        [sys.executable, "-m", "harness.cli", "cassettes", "scan", str(APPS_DIR)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr
