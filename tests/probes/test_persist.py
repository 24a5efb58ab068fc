"""Stage persist: the document matcher, the probes' own readback and cleanup, and every persist check end to end.

The end-to-end tests run the reference flow through the runner, as ``harness replay`` does:
the recorded healthy cassette answers the LLM calls, the database is a fresh migrated
PostgreSQL, and a bug is brought in the way an application brings its own code — a
target whose flow is a small shim (``shim_app/persist_shims.py``) that builds the reference
flow's chat command with one broken component.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import (
    JSON,
    Column,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    Uuid,
    create_engine,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

import harness
from harness.cassettes import load_meta, replaying
from harness.config import Settings, plain_url, sqlalchemy_url
from harness.flow.database import session_scope
from harness.flow.models import DiscoveryDocument, MasterPlanStatus
from harness.replay import REPLAY_ANTHROPIC_KEY, REPLAY_OPENAI_KEY, flow_env
from harness.runner import FlowRequest, FlowRun, LLMMode, RunOptions, run_flow
from harness.target import Target, reference_config
from probes import persist
from probes.core import Outcome
from probes.documents import RowRef, Saved, match_discovery, match_plan, same
from tests.support import content

KIND = "task_manager"
ROOT = Path(harness.__file__).resolve().parents[1]
HEALTHY = ROOT / "cassettes" / "healthy-task-manager.yaml"
SHIM_APP = Path(__file__).resolve().parent / "shim_app"
SHIM_FILE = SHIM_APP / "persist_shims.py"
#: The reference flow's tables, children first.
FLOW_TABLES = (
    "masterplan_task_dependencies",
    "masterplan_tasks",
    "masterplan_milestones",
    "masterplan_phases",
    "masterplans",
    "discovery_documents",
)


# -- comparing values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("saved", "generated"),
    [
        ("DRAFT", "draft"),  # an enum stored by its name
        (MasterPlanStatus.DRAFT, "draft"),
        (Decimal("0.25"), 0.25),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        ('["a", "b"]', ["a", "b"]),  # JSON kept in a text column
        ({"name": "x", "note": None}, {"name": "x"}),  # an absent key and a null one mean the same
        (None, ""),
        ([], None),
    ],
)
def test_values_an_application_means_alike_are_the_same(saved: Any, generated: Any) -> None:
    """A saved value is the generated one when an application would mean it so: enum names, numbers, UUIDs, JSON."""
    assert same(saved, generated)


@pytest.mark.parametrize(
    ("saved", "generated"),
    [
        ("Alpha", "alpha"),  # case matters unless one side is an enum name
        (["a", "b"], ["b", "a"]),
        ("Initialise repository layout", "Initialise repository layout and dependency manifest"),
        ({"name": "x"}, {"name": "x", "note": "kept"}),
        (0.25, 0.26),
        (None, "something"),
        ("[not json", ["a"]),
    ],
)
def test_values_that_differ_are_not_the_same(saved: Any, generated: Any) -> None:
    """A value cut, reordered, changed or lost is never taken for the generated one."""
    assert not same(saved, generated)


# -- the document matcher, on rows built here ----------------------------------------------------


def _plan_tables(dependencies: str, *, schema: str | None = None) -> MetaData:
    """An application's plan tables: task titles in ``name``; dependencies in a link table, task ids or task numbers."""
    metadata = MetaData(schema=schema)
    Table(
        "plans",
        metadata,
        Column("id", String, primary_key=True),
        Column("project_name", String),
        Column("description", String),
        Column("tech_stack", JSON),
        Column("architecture_style", String),
        Column("status", String),
    )
    Table(
        "phases",
        metadata,
        Column("id", String, primary_key=True),
        Column("plan_id", ForeignKey("plans.id")),
        Column("phase_number", Integer),
        Column("name", String),
        Column("description", String),
    )
    Table(
        "milestones",
        metadata,
        Column("id", String, primary_key=True),
        Column("phase_id", ForeignKey("phases.id")),
        Column("milestone_number", Integer),
        Column("name", String),
        Column("description", String),
    )
    task_columns = [
        Column("id", String, primary_key=True),
        Column("plan_id", ForeignKey("plans.id")),
        Column("milestone_id", ForeignKey("milestones.id")),
        Column("task_number", Integer),
        Column("name", String),
        Column("description", String),
        Column("complexity", String),
        Column("target_files", JSON),
        Column("estimated_tokens", Integer),
    ]
    if dependencies in ("ids", "numbers"):
        task_columns.append(Column("depends_on_tasks", JSON))
    Table("tasks", metadata, *task_columns)
    if dependencies == "link":
        Table(
            "task_links",
            metadata,
            Column("task_id", ForeignKey("tasks.id"), primary_key=True),
            Column("prerequisite_id", ForeignKey("tasks.id"), primary_key=True),
        )
    return metadata


def _saved_plan(plan: dict[str, Any], dependencies: str) -> tuple[Saved, dict[str, Any]]:
    """``plan`` saved the way a correct application with these tables saves it; returns the rows and their ids."""
    metadata = _plan_tables(dependencies)
    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {name: {} for name in metadata.tables}
    ids: dict[str, Any] = {"plan": "plan-1", "milestones": {}, "tasks": {}}
    rows["plans"][("plan-1",)] = {
        "id": "plan-1",
        "project_name": plan["project_name"],
        "description": plan["description"],
        "tech_stack": plan["tech_stack"],
        "architecture_style": plan["architecture_style"],
        "status": "DRAFT",
    }
    for pi, phase in enumerate(plan["phases"], start=1):
        phase_id = f"phase-{pi}"
        rows["phases"][(phase_id,)] = {
            "id": phase_id,
            "plan_id": "plan-1",
            "phase_number": phase.get("phase_number", pi),
            "name": phase["name"],
            "description": phase.get("description"),
        }
        for mi, milestone in enumerate(phase["milestones"], start=1):
            milestone_id = f"milestone-{pi}.{mi}"
            ids["milestones"][(pi, mi)] = milestone_id
            rows["milestones"][(milestone_id,)] = {
                "id": milestone_id,
                "phase_id": phase_id,
                "milestone_number": milestone.get("milestone_number", mi),
                "name": milestone["name"],
                "description": milestone.get("description"),
            }
            for task in milestone["tasks"]:
                ids["tasks"][task["task_number"]] = f"task-{uuid.uuid4()}"
    for pi, phase in enumerate(plan["phases"], start=1):
        for mi, milestone in enumerate(phase["milestones"], start=1):
            for task in milestone["tasks"]:
                task_id = ids["tasks"][task["task_number"]]
                row = {
                    "id": task_id,
                    "plan_id": "plan-1",
                    "milestone_id": ids["milestones"][(pi, mi)],
                    "task_number": task["task_number"],
                    "name": task["title"],
                    "description": task["description"],
                    "complexity": task["complexity"],
                    "target_files": task["target_files"],
                    "estimated_tokens": task["estimated_tokens"],
                }
                if dependencies == "ids":
                    row["depends_on_tasks"] = json.dumps([ids["tasks"][n] for n in task["depends_on"]])
                elif dependencies == "numbers":
                    row["depends_on_tasks"] = list(task["depends_on"])
                rows["tasks"][(task_id,)] = row
                if dependencies == "link":
                    for number in task["depends_on"]:
                        link = {"task_id": task_id, "prerequisite_id": ids["tasks"][number]}
                        rows["task_links"][(task_id, link["prerequisite_id"])] = link
    tables = {table.fullname: table for table in metadata.sorted_tables}
    return Saved({name: found for name, found in rows.items() if found}, tables), ids


def _match(saved: Saved, plan: dict[str, Any]):
    return match_plan(plan, list(content.iter_tasks(plan)), saved)


def _generated_edges(plan: dict[str, Any]) -> Counter:
    return Counter((task["task_number"], dep) for task in content.iter_tasks(plan) for dep in set(task["depends_on"]))


def _task_row(saved: Saved, ids: dict[str, Any], number: int) -> dict[str, Any]:
    return saved.rows["tasks"][(ids["tasks"][number],)]


@pytest.mark.parametrize(
    ("dependencies", "stored_in"),
    [
        ("link", "link table task_links"),
        ("ids", "list column depends_on_tasks of tasks"),
        ("numbers", "list column depends_on_tasks of tasks"),
    ],
)
def test_a_plan_saved_correctly_matches_whatever_the_layout(dependencies: str, stored_in: str) -> None:
    """Plan, phases, milestones and tasks are found by their values, titles in a ``name`` column, the graph rebuilt."""
    plan = content.masterplan_for(KIND)
    saved, _ = _saved_plan(plan, dependencies)
    match = _match(saved, plan)
    assert match.plan == RowRef("plans", ("plan-1",))
    assert (match.phase_table, match.milestone_table, match.task_table) == ("phases", "milestones", "tasks")
    assert match.task_columns["title"] == "name"
    assert len(match.tasks) == len(list(content.iter_tasks(plan)))
    assert (match.mismatches, match.missing, match.extra, match.misplaced) == ([], [], [], [])
    assert match.edges_from == stored_in
    assert match.edges == _generated_edges(plan) and sum(match.edges.values()) > 50


def test_a_title_saved_differently_is_a_mismatch_naming_task_field_and_column() -> None:
    """A task whose ``name`` column holds another title than generated is reported as that task's title."""
    plan = content.masterplan_for(KIND)
    saved, ids = _saved_plan(plan, "link")
    _task_row(saved, ids, 17)["name"] = "Something else entirely"
    (mismatch,) = _match(saved, plan).mismatches
    assert (mismatch.where, mismatch.field, mismatch.column, mismatch.saved) == (
        "task 17",
        "title",
        "name",
        "Something else entirely",
    )


def test_a_task_under_another_milestone_is_misplaced() -> None:
    """A task saved with the wrong parent is misplaced, naming the milestone it belongs to and the one it hangs from."""
    plan = content.masterplan_for(KIND)
    saved, ids = _saved_plan(plan, "ids")
    first = plan["phases"][0]["milestones"][0]["tasks"][0]["task_number"]
    _task_row(saved, ids, first)["milestone_id"] = ids["milestones"][(1, 2)]
    match = _match(saved, plan)
    assert match.misplaced == [("task", first, "milestone 1.1", "milestone 1.2")]
    assert match.missing == [] and match.extra == []


def test_missing_and_extra_task_rows_are_named() -> None:
    """A generated task with no row is missing; a task row of the plan no document holds is extra."""
    plan = content.masterplan_for(KIND)
    saved, ids = _saved_plan(plan, "numbers")
    gone = ids["tasks"][40]
    del saved.rows["tasks"][(gone,)]
    stray = dict(_task_row(saved, ids, 41), id="task-stray", task_number=999)
    saved.rows["tasks"][("task-stray",)] = stray
    match = _match(saved, plan)
    assert ("task", 40) in match.missing
    assert RowRef("tasks", ("task-stray",)) in match.extra


def test_dependency_ids_dropped_from_the_json_column_are_missing_edges() -> None:
    """Dependencies kept as task ids in a JSON column: an id dropped is a missing edge, nothing else."""
    plan = content.masterplan_for(KIND)
    saved, ids = _saved_plan(plan, "ids")
    task = next(t for t in content.iter_tasks(plan) if len(t["depends_on"]) >= 2)
    kept = [ids["tasks"][n] for n in task["depends_on"][1:]]
    _task_row(saved, ids, task["task_number"])["depends_on_tasks"] = json.dumps(kept)
    match = _match(saved, plan)
    assert _generated_edges(plan) - match.edges == Counter({(task["task_number"], task["depends_on"][0]): 1})
    assert match.edges - _generated_edges(plan) == Counter()


def test_a_link_table_with_no_rows_is_a_graph_with_no_edges() -> None:
    """When the flow saved no dependency row at all, the saved graph is empty — not unknown."""
    plan = content.masterplan_for(KIND)
    saved, _ = _saved_plan(plan, "link")
    del saved.rows["task_links"]
    match = _match(saved, plan)
    assert match.edges_from == "link table task_links"
    assert match.edges == Counter()


def test_the_discovery_row_is_found_by_its_domain_and_compared_field_by_field() -> None:
    """The discovery is found among every saved row by its domain; a list saved short is a mismatch of that field."""
    discovery = content.discovery_for(KIND)
    metadata = MetaData()
    Table(
        "discoveries",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("domain", String),
        Column("bounded_contexts", JSON),
        Column("aggregates", JSON),
        Column("value_objects", JSON),
        Column("domain_events", JSON),
        Column("services", String),  # kept as JSON text
    )
    row = {"id": 7, **{name: discovery[name] for name in ("domain", "bounded_contexts", "aggregates", "value_objects")}}
    row["domain_events"] = discovery["domain_events"][:-1]
    row["services"] = json.dumps(discovery["services"])
    other = {"id": 8, "domain": "another domain", "bounded_contexts": [], "aggregates": [], "value_objects": []}
    saved = Saved({"discoveries": {(7,): row, (8,): other}}, {"discoveries": metadata.tables["discoveries"]})
    ref, mismatches = match_discovery(discovery, saved)
    assert ref == RowRef("discoveries", (7,))
    assert [(m.where, m.field, m.column) for m in mismatches] == [("discovery", "domain_events", "domain_events")]


# -- the probes' own connection: Readback ---------------------------------------------------------


@pytest.fixture
def scratch_tables(flow_database_url: str) -> dict[str, Table]:
    """Tables of another application, in schema ``planning``: a composite key, a UUID key, JSON; created empty."""
    metadata = MetaData(schema="planning")
    Table(
        "entries",
        metadata,
        Column("book", String, primary_key=True),
        Column("line", Integer, primary_key=True),
        Column("body", JSON),
    )
    Table("notes", metadata, Column("id", Uuid(as_uuid=True), primary_key=True), Column("text", String))
    engine = create_engine(sqlalchemy_url(flow_database_url), poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA planning")
        metadata.create_all(connection)
    engine.dispose()
    return dict(metadata.tables)


def _insert(url: str, table: Table, rows: list[dict[str, Any]]) -> None:
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(insert(table), rows)
    engine.dispose()


def test_readback_returns_committed_rows_by_key_as_their_types_read_them(flow_database_url, scratch_tables) -> None:
    """Rows come back by primary key — composite or UUID, any count — with JSON and UUIDs typed; unknown keys are absent."""
    entries, notes = scratch_tables["planning.entries"], scratch_tables["planning.notes"]
    _insert(flow_database_url, entries, [{"book": "b", "line": n, "body": {"n": n}} for n in range(1, 1201)])
    note = uuid.uuid4()
    _insert(flow_database_url, notes, [{"id": note, "text": "kept"}])
    reader = persist.Readback(flow_database_url)
    try:
        wanted = [("b", n) for n in range(1, 1201)] + [("b", 5000)]
        found = reader.rows_by_key(entries, wanted)
        by_uuid = reader.rows_by_key(notes, [(note,), (uuid.uuid4(),)])
    finally:
        reader.close()
    assert len(found) == 1200 and ("b", 5000) not in found
    assert found[("b", 1200)] == {"book": "b", "line": 1200, "body": {"n": 1200}}
    assert by_uuid == {(note,): {"id": note, "text": "kept"}}


class _Code(TypeDecorator):
    """An application's own key type: text stored upper-cased."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return value.upper() if value is not None else None


def test_readback_reads_keys_of_the_applications_own_types_and_each_row_once(flow_database_url) -> None:
    """A key of the app's own type (a TypeDecorator), a native enum key and a composite key asked for twice:
    each row comes back once, as its type reads it."""
    metadata = MetaData()
    codes = Table("codes", metadata, Column("code", _Code, primary_key=True), Column("label", String))
    level = Enum("low", "high", name="level")
    levels = Table("levels", metadata, Column("level", level, primary_key=True), Column("weight", Integer))
    pairs = Table("pairs", metadata, Column("a", Integer, primary_key=True), Column("b", Integer, primary_key=True))
    engine = create_engine(sqlalchemy_url(flow_database_url), poolclass=NullPool)
    with engine.begin() as connection:
        metadata.create_all(connection)
        connection.execute(insert(codes), [{"code": "ab", "label": "first"}, {"code": "cd", "label": "second"}])
        connection.execute(insert(levels), [{"level": "low", "weight": 1}, {"level": "high", "weight": 9}])
        connection.execute(insert(pairs), [{"a": 1, "b": 2}, {"a": 2, "b": 1}])
    engine.dispose()
    reader = persist.Readback(flow_database_url)
    try:
        assert reader.rows_by_key(codes, [("ab",), ("zz",)]) == {("AB",): {"code": "AB", "label": "first"}}
        assert reader.rows_by_key(levels, [("high",)]) == {("high",): {"level": "high", "weight": 9}}
        found = reader.rows_by_key(pairs, [(1, 2), (1, 2), (2, 1), (3, 3)])
    finally:
        reader.close()
    assert found == {(1, 2): {"a": 1, "b": 2}, (2, 1): {"a": 2, "b": 1}}


def test_readback_sees_only_what_is_committed(flow_database_url, scratch_tables) -> None:
    """A row inserted in a transaction still open elsewhere is invisible to the readback until it commits."""
    notes = scratch_tables["planning.notes"]
    note = uuid.uuid4()
    reader = persist.Readback(flow_database_url)
    try:
        with psycopg.connect(plain_url(flow_database_url)) as writer:
            writer.execute("INSERT INTO planning.notes (id, text) VALUES (%s, 'pending')", (note,))
            assert reader.rows_by_key(notes, [(note,)]) == {}
            writer.commit()
        assert list(reader.rows_by_key(notes, [(note,)])) == [(note,)]
    finally:
        reader.close()


def test_readback_reconnects_once_when_its_connection_was_killed(
    flow_database_url, scratch_tables, postgres_cluster
) -> None:
    """A kept connection the server dropped since the last readback is replaced, and the query answered."""
    notes = scratch_tables["planning.notes"]
    note = uuid.uuid4()
    _insert(flow_database_url, notes, [{"id": note, "text": "kept"}])
    reader = persist.Readback(flow_database_url)
    try:
        assert reader.rows_by_key(notes, [(note,)])
        name = make_url(flow_database_url).database
        postgres_cluster.run_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        assert list(reader.rows_by_key(notes, [(note,)])) == [(note,)]
    finally:
        reader.close()


# -- removing what a run wrote --------------------------------------------------------------------


def _family(flow_database_url: str) -> tuple[MetaData, dict[str, list[tuple[Any, ...]]]]:
    """Three tables in schema ``planning``, each row a child of the one before (no ON DELETE CASCADE), two families saved."""
    metadata = MetaData(schema="planning")
    Table("plans", metadata, Column("id", Integer, primary_key=True))
    Table(
        "steps", metadata, Column("id", Integer, primary_key=True), Column("plan_id", ForeignKey("planning.plans.id"))
    )
    Table(
        "links",
        metadata,
        Column("step_id", ForeignKey("planning.steps.id"), primary_key=True),
        Column("after_id", ForeignKey("planning.steps.id"), primary_key=True),
    )
    engine = create_engine(sqlalchemy_url(flow_database_url), poolclass=NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE SCHEMA planning")
        metadata.create_all(connection)
        tables = metadata.tables
        connection.execute(insert(tables["planning.plans"]), [{"id": 1}, {"id": 2}])
        connection.execute(
            insert(tables["planning.steps"]),
            [{"id": 10, "plan_id": 1}, {"id": 11, "plan_id": 1}, {"id": 20, "plan_id": 2}],
        )
        connection.execute(insert(tables["planning.links"]), [{"step_id": 11, "after_id": 10}])
    engine.dispose()
    # The run's keys, parents first (the order a watcher sees them written).
    keys = {"planning.plans": [(1,)], "planning.steps": [(10,), (11,)], "planning.links": [(11, 10)]}
    return metadata, keys


def _count(url: str, table: str) -> int:
    with psycopg.connect(plain_url(url)) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_remove_rows_deletes_children_first_and_only_the_rows_named(flow_database_url) -> None:
    """The run's rows go, children before parents from the metadata's foreign keys, in any schema; others stay."""
    metadata, keys = _family(flow_database_url)
    findings, deleted = persist.remove_rows(flow_database_url, metadata, keys)
    assert (findings, deleted) == ([], 4)
    assert [_count(flow_database_url, f"planning.{t}") for t in ("plans", "steps", "links")] == [1, 1, 0]


def test_a_refused_removal_is_persist008_with_the_database_error(flow_database_url, postgres_cluster) -> None:
    """A cleanup the database refuses is PERSIST008 carrying its SQLSTATE and message; nothing is half removed."""
    metadata, keys = _family(flow_database_url)
    name = make_url(flow_database_url).database
    postgres_cluster.run_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    (finding,), deleted = persist.remove_rows(flow_database_url, metadata, keys)
    assert finding.id == "PERSIST008" and deleted == 0
    assert finding.evidence["sqlstate"] == "25006" and "read-only transaction" in finding.evidence["error"]
    assert finding.evidence["tables"] == {"planning.plans": 1, "planning.steps": 2, "planning.links": 1}
    postgres_cluster.run_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
    assert _count(flow_database_url, "planning.steps") == 3


def test_rows_of_a_table_the_metadata_does_not_know_are_persist008(flow_database_url) -> None:
    """Keys in a table outside the application's metadata cannot be removed, and the finding says which table."""
    metadata, keys = _family(flow_database_url)
    findings, _ = persist.remove_rows(flow_database_url, metadata, {**keys, "audit.log": [(1,)]})
    assert [f.id for f in findings] == ["PERSIST008"] and findings[0].evidence["not_in_metadata"] == ["audit.log"]


# -- what the flow hands back and how its saves fail ----------------------------------------------


def _discovery_row(**changes: Any) -> DiscoveryDocument:
    values = {
        "session_id": "s",
        "user_id": "u",
        "user_request": "r",
        "domain": "d",
        "bounded_contexts": [],
        "aggregates": [],
        "value_objects": [],
        "domain_events": [],
        "services": [],
    }
    return DiscoveryDocument(**{**values, **changes})


def test_object_used_after_its_session_closed_is_persist005(flow_database_url) -> None:
    """With expire_on_commit=True (the seed's suspicion), a row returned from a closed session cannot be read."""
    engine = create_engine(sqlalchemy_url(flow_database_url))
    try:
        factory = sessionmaker(bind=engine, expire_on_commit=True)
        with session_scope(factory) as session:
            session.add(_discovery_row())
        with session_scope(factory) as session:
            row = session.scalars(select(DiscoveryDocument)).one()
        (finding,) = persist.check_detached(row, "discovery")
        healthy = sessionmaker(bind=engine, expire_on_commit=False)
        with session_scope(healthy) as session:
            readable = session.scalars(select(DiscoveryDocument)).one()
    finally:
        engine.dispose()
    assert finding.id == "PERSIST005" and finding.evidence["attribute"]
    assert persist.check_detached(readable, "discovery") == []


def test_write_refused_by_the_database_is_persist006(postgres_cluster, flow_database_url) -> None:
    """A save the database refuses (read-only) is PERSIST006 with SQLSTATE 25006."""
    name = make_url(flow_database_url).database
    postgres_cluster.run_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    engine = create_engine(sqlalchemy_url(flow_database_url))
    factory = sessionmaker(bind=engine)
    try:
        with pytest.raises(Exception) as caught, session_scope(factory) as session:
            session.add(_discovery_row())
    finally:
        engine.dispose()
    finding = persist.classify(caught.value, "discovery")
    assert finding.id == "PERSIST006" and finding.evidence["sqlstate"] == "25006" and finding.evidence["read_only"]


# -- every persist check, end to end through the runner --------------------------------------------


def _target(shim: str) -> Target:
    """The reference flow's target, its flow replaced by one of the shims (whose file counts as the app's code)."""
    config = dataclasses.replace(
        reference_config(),
        flow=f"persist_shims:{shim}",
        app_path=(SHIM_APP,),
        code=("harness.flow", "persist_shims"),
    )
    return Target(config)


def _replay(
    database_url: str, shim: str, *, provoke: bool = False, canary: bool = False, env: dict[str, str] | None = None
) -> FlowRun:
    """One run of ``shim`` as ``harness replay`` runs a cassette: the healthy task manager's recorded answers."""
    meta = load_meta(HEALTHY)
    settings = Settings(
        database_url=plain_url(database_url), anthropic_api_key=REPLAY_ANTHROPIC_KEY, openai_api_key=REPLAY_OPENAI_KEY
    )
    options = RunOptions(
        llm=LLMMode.REPLAY,
        provoke=provoke,
        canary=canary,
        flow_env=tuple(sorted({**flow_env(meta), **(env or {})}.items())),
    )
    return run_flow(
        settings,
        FlowRequest(meta.request, meta.user_id, meta.session_id),
        target=_target(shim),
        options=options,
        answers=lambda: replaying(HEALTHY),
    )


def _shims() -> Any:
    """The shim module, imported as the runner imports a target's flow (from its app path)."""
    return inspect.getmodule(_target("healthy").flow)


def _outcomes(run: FlowRun, check_id: str) -> list[Any]:
    return [o for o in run.report.outcomes if o.check.id == check_id]


def _finding(run: FlowRun, check_id: str) -> Any:
    return next(f for f in run.report.findings if f.id == check_id)


def _shim_line(marker: str) -> str:
    """``file:line`` of the shim line holding ``marker``, as a report shows the application's code."""
    (line,) = [n for n, text in enumerate(SHIM_FILE.read_text().splitlines(), start=1) if marker in text]
    return f"{SHIM_FILE.relative_to(ROOT)}:{line}"


#: Every persist check a healthy run decides by running it.
JUDGED = (
    "PERSIST001",
    "PERSIST002",
    "PERSIST003",
    "PERSIST004",
    "PERSIST005",
    "PERSIST007",
    "PERSIST009",
    "PERSIST010",
    "PERSIST012",
    "PERSIST013",
    "PERSIST101",
)


@pytest.mark.slow
def test_the_healthy_flow_through_a_shim_passes_every_persist_check(flow_database_url) -> None:
    """The control: the reference flow behind the shim seam saves everything, and each persist check ran and passed."""
    run = _replay(flow_database_url, "healthy")
    assert run.report.verdict == "pass"
    for check_id in JUDGED:
        outcomes = _outcomes(run, check_id)
        assert outcomes and all(o.outcome is Outcome.PASSED for o in outcomes), (check_id, outcomes)
    (provoked,) = _outcomes(run, "PERSIST011")
    assert provoked.outcome is Outcome.NOT_APPLICABLE and "no failure was provoked" in provoked.reason
    assert run.returned.masterplan_id is not None


@pytest.mark.slow
def test_a_field_saved_differently_from_the_answer_is_persist002(flow_database_url) -> None:
    """Task titles cut on the way to the database are PERSIST002, naming the task, the field and its column."""
    run = _replay(flow_database_url, "cut_titles")
    assert run.report.verdict == "persist:PERSIST002"
    finding = run.report.first_failure
    first = finding.evidence["fields"][0]
    assert (first["where"], first["field"], first["column"]) == ("task 1", "title", "title")
    assert len(first["saved"]) == _shims().TITLE_CHARS and first["generated"].startswith(first["saved"])
    assert finding.point == "masterplan"


@pytest.mark.slow
def test_a_task_never_saved_is_persist003_and_its_graph_still_checks(flow_database_url) -> None:
    """The plan's last task never inserted is PERSIST003 naming it; the dependencies of the tasks saved still pass."""
    run = _replay(flow_database_url, "drops_last_task")
    total = len(list(content.iter_tasks(content.masterplan_for(KIND))))
    assert run.report.verdict == "persist:PERSIST003"
    finding = _finding(run, "PERSIST003")
    assert finding.evidence["missing"] == [f"task {total}"] and finding.evidence["misplaced"] == []
    assert [o.outcome for o in _outcomes(run, "PERSIST004")] == [Outcome.PASSED]


@pytest.mark.slow
def test_dependencies_never_saved_are_persist004(flow_database_url) -> None:
    """Tasks saved without their dependency rows are PERSIST004 listing the missing edges, with nothing extra."""
    run = _replay(flow_database_url, "drops_dependencies")
    assert run.report.verdict == "persist:PERSIST004"
    finding = _finding(run, "PERSIST004")
    assert finding.evidence["missing"] and finding.evidence["extra"] == []
    assert finding.evidence["stored_in"] == "link table masterplan_task_dependencies"
    assert [o.outcome for o in _outcomes(run, "PERSIST003")] == [Outcome.PASSED]


@pytest.mark.slow
def test_a_plan_left_generating_is_persist007(flow_database_url) -> None:
    """A flow that returns without switching its plan out of 'generating' is PERSIST007 with that status."""
    run = _replay(flow_database_url, "never_finishes")
    assert run.report.verdict == "persist:PERSIST007"
    assert _finding(run, "PERSIST007").evidence["status"] == "generating"


@pytest.mark.slow
def test_a_plan_complete_before_its_batches_arrived_is_persist010(flow_database_url) -> None:
    """A plan committed as 'draft' while its tasks were still arriving is one PERSIST010, at the commit that wrote it."""
    run = _replay(flow_database_url, "publishes_at_skeleton")
    assert run.report.verdict == "persist:PERSIST010"
    finding = run.report.first_failure
    assert finding.evidence["status"] == "draft" and finding.point == "masterplan"
    judged = [(o.point, o.outcome) for o in _outcomes(run, "PERSIST010")]
    # One bug, one finding: the batches committed meanwhile leave the status as it was, judged where it was written.
    assert [f.id for f in run.report.findings].count("PERSIST010") == 1
    assert ("masterplan.batch-2", Outcome.NOT_APPLICABLE) in judged
    assert ("masterplan.batch-3", Outcome.PASSED) in judged  # the last batch is in: complete from there on


@pytest.mark.slow
def test_a_unit_that_commits_twice_is_a_persist009_warning_at_the_inner_commit(flow_database_url) -> None:
    """The seed's double commit is counted and located at the app's inner commit line, without failing the run."""
    run = _replay(flow_database_url, "double_commit")
    assert run.report.verdict == "pass"
    warned = _outcomes(run, "PERSIST009")
    assert warned and {o.outcome for o in warned} == {Outcome.WARNED, Outcome.PASSED}
    finding = _finding(run, "PERSIST009")
    assert finding.level.name == "WARNING" and finding.evidence["commits"] == 2
    assert finding.evidence["inner_commit_at"] == _shim_line("# the inner commit")
    assert finding.evidence["outer_commit_at"].startswith("harness/flow/database.py:")


@pytest.mark.slow
def test_rows_flushed_and_never_committed_are_persist012_where_the_unit_ended(flow_database_url) -> None:
    """A status change flushed and thrown away when its session closed is PERSIST012, before the plan it left unfinished."""
    run = _replay(flow_database_url, "flushes_without_commit")
    assert run.report.verdict == "persist:PERSIST012"
    finding = run.report.first_failure
    assert finding.evidence["tables"] == ["masterplans"]
    assert finding.evidence["ended_at"] == _shim_line("closing without a commit")
    assert _finding(run, "PERSIST007").evidence["status"] == "generating"


@pytest.mark.slow
def test_a_failed_save_swallowed_by_the_app_is_persist011_in_the_provoked_run(flow_database_url) -> None:
    """With a session that swallows failed commits, the provoked failure never reaches the caller: PERSIST011."""
    run = _replay(flow_database_url, "swallows_failed_commits", provoke=True)
    assert run.report.verdict == "persist:PERSIST011"
    finding = run.report.first_failure
    assert finding.evidence["provoked_in"] == "discovery_documents"
    assert finding.evidence["rolled_back_at"] == _shim_line("super().commit()")
    assert finding.evidence["flow_ended_with"].startswith("DiscoveryNotFound")


@pytest.mark.slow
def test_a_failed_save_that_reaches_the_caller_passes_persist011(flow_database_url) -> None:
    """The reference flow's session scope re-raises: the provoked failure comes out, and the run still passes."""
    run = _replay(flow_database_url, "healthy", provoke=True)
    assert run.report.verdict == "pass"
    assert [o.outcome for o in _outcomes(run, "PERSIST011")] == [Outcome.PASSED]


@pytest.mark.slow
def test_writes_to_another_database_are_persist001(flow_database_url, flow_database_factory) -> None:
    """An app that reads its URL from another variable writes elsewhere: PERSIST001 names both databases."""
    elsewhere = flow_database_factory.new_database()
    try:
        run = _replay(flow_database_url, "other_database", env={_shims().OTHER_DATABASE_ENV: plain_url(elsewhere)})
        saved_elsewhere = _count(elsewhere, "masterplan_tasks")
    finally:
        flow_database_factory.drop(elsewhere)
    assert run.report.verdict == "persist:PERSIST001"
    assert saved_elsewhere > 100 and _count(flow_database_url, "masterplan_tasks") == 0
    finding = next(f for f in run.report.findings if f.id == "PERSIST001" and "written_to" in f.evidence)
    (written_to,) = finding.evidence["written_to"]
    assert (
        make_url(elsewhere).database in written_to and make_url(flow_database_url).database in finding.evidence["given"]
    )
    assert make_url(elsewhere).password not in str(finding.to_dict())


@pytest.mark.slow
def test_rows_lost_after_their_commit_are_persist001_before_the_error_they_cause(flow_database_url) -> None:
    """Milestones deleted behind the flow's back are PERSIST001 at their commit; the flow's CommittedRowsMissing follows it."""
    run = _replay(flow_database_url, "milestones_vanish")
    assert run.report.verdict == "persist:PERSIST001"
    finding = run.report.first_failure
    assert finding.evidence["tables"] == ["masterplan_milestones"] and finding.point == "masterplan.skeleton"
    assert run.observations["flow.error"]["type"] == "CommittedRowsMissing"
    assert "milestone 1 of phase 1" in run.observations["flow.error"]["message"]
    (code,) = _outcomes(run, "PERSIST101")
    assert code.outcome is Outcome.NOT_APPLICABLE and "followed PERSIST001" in code.reason
    assert not [f for f in run.report.findings if f.id == "PERSIST002"]  # phases are never mistaken for tasks


@pytest.mark.slow
def test_an_object_read_after_its_session_closed_is_persist005_at_the_apps_line(flow_database_url) -> None:
    """Sessions that expire on commit (the seed's suspicion) fail the first read of a saved row: PERSIST005 at that line."""
    run = _replay(flow_database_url, "expires_on_commit")
    assert run.report.verdict == "persist:PERSIST005"
    finding = run.report.first_failure
    source = (ROOT / "harness" / "flow" / "discovery.py").read_text().splitlines()
    (line,) = [n for n, text in enumerate(source, start=1) if text.strip() == "return row.discovery_id"]
    assert finding.evidence["location"] == f"harness/flow/discovery.py:{line}"
    assert run.observations["flow.error"]["type"] == "DetachedInstanceError"


@pytest.mark.slow
def test_a_canary_run_tags_its_rows_and_removes_every_one(flow_database_url) -> None:
    """A canary run writes under a harness-canary- session id, then deletes exactly what it wrote: the tables are empty."""
    run = _replay(flow_database_url, "healthy", canary=True)
    assert run.session_id.startswith(persist.CANARY_PREFIX)
    assert run.report.verdict == "pass"
    assert [o.outcome for o in _outcomes(run, "PERSIST008")] == [Outcome.PASSED]
    assert run.observations["canary"]["rows_deleted"] == len(run.observations["saved"]) > 100
    assert [_count(flow_database_url, table) for table in FLOW_TABLES] == [0] * len(FLOW_TABLES)
