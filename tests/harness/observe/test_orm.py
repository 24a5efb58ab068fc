"""The database-writes watcher against real PostgreSQL, through psycopg 3 and psycopg2.

Every location asserted here is a line of this file: the watch's AppCode is this folder, and the
lines are found by their ``# L:name`` markers so the assertions survive edits above them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Engine,
    ForeignKey,
    Identity,
    Integer,
    MetaData,
    String,
    create_engine,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session, sessionmaker

from harness.observe.code import AppCode
from harness.observe.orm import OrmWatch
from harness.observe.timeline import (
    CodeLocation,
    Event,
    RowsWritten,
    RowWrite,
    Timeline,
    UnitClosed,
    UnitCommitted,
    UnitOpened,
    UnitRolledBack,
    UntrackedWrite,
)

THIS_FILE = Path(__file__)
SOURCE = THIS_FILE.read_text().splitlines()
CONNECT_ARGS = {"connect_timeout": 5}


def line(marker: str) -> int:
    """The line of this file that ends with ``# L:marker``."""
    found = [number for number, text_ in enumerate(SOURCE, start=1) if text_.rstrip().endswith(f"# L:{marker}")]
    assert len(found) == 1, f"marker {marker!r} found {len(found)} times"
    return found[0]


def at(location: CodeLocation | None) -> int | None:
    """The line of a location in this file (``None`` for a location elsewhere or none)."""
    if location is None or not location.file.endswith(THIS_FILE.name):
        return None
    return location.line


# -- the application under watch ---------------------------------------------------------------


class Base(DeclarativeBase):
    metadata = MetaData()


class Plan(Base):
    __tablename__ = "plans"

    plan_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column("plan_title", String(200))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    tech_stack: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    plan_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("plans.plan_id", deferrable=True, initially="DEFERRED")
    )
    number: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))


class Note(Base):
    __tablename__ = "notes"

    note_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=text("gen_random_uuid()"))
    body: Mapped[str]


class Edge(Base):
    __tablename__ = "task_edges"

    task_id: Mapped[int] = mapped_column(primary_key=True)
    depends_on: Mapped[int] = mapped_column(primary_key=True)


class AuditEntry(Base):
    __tablename__ = "entries"
    __table_args__ = {"schema": "audit"}

    id: Mapped[int] = mapped_column(primary_key=True)
    what: Mapped[str]


class Widget(Base):
    """Declared without a schema: the database's search_path puts it in schema ``app``."""

    __tablename__ = "widgets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


TABLES = ("plans", "tasks", "notes", "task_edges", "audit.entries", "widgets")
plans, tasks, edges = Plan.__table__, Task.__table__, Edge.__table__


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(params=["psycopg", "psycopg2"])
def driver(request: pytest.FixtureRequest) -> str:
    """Each test runs through psycopg 3 and through psycopg2."""
    return request.param


def _prepare(postgres_cluster: Any, name: str) -> None:
    postgres_cluster.run_sql(f"ALTER DATABASE {name} SET search_path = app, public", database=name)
    postgres_cluster.run_sql("CREATE SCHEMA app; CREATE SCHEMA audit", database=name)
    engine = create_engine(postgres_cluster.url(name), connect_args=CONNECT_ARGS)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()


@pytest.fixture
def database(postgres_cluster: Any) -> Iterator[str]:
    """An empty database with the application's tables (``widgets`` in schema ``app`` via search_path)."""
    name = postgres_cluster.create_database()
    try:
        _prepare(postgres_cluster, name)
        yield name
    finally:
        postgres_cluster.drop_database(name)


@pytest.fixture
def engine(postgres_cluster: Any, database: str, driver: str) -> Iterator[Engine]:
    """The application's engine, through the driver under test."""
    engine = create_engine(
        postgres_cluster.info.url(database, driver=f"postgresql+{driver}"), connect_args=CONNECT_ARGS
    )
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def timeline() -> Timeline:
    """A fresh timeline for one run."""
    return Timeline()


@pytest.fixture
def watch(timeline: Timeline) -> Iterator[OrmWatch]:
    """A watch whose application code is this folder, recording the application's tables only; it must not fail."""
    watch = OrmWatch(timeline, AppCode([THIS_FILE.parent]), tables=TABLES)
    yield watch
    assert watch.problems == []
    assert not watch.installed


def kinds(timeline: Timeline) -> list[str]:
    return [type(event).__name__ for event in timeline]


def only(timeline: Timeline, kind: type[Event]) -> Any:
    found = timeline.of(kind)
    assert len(found) == 1, kinds(timeline)
    return found[0]


def rows_in(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# -- sessions ------------------------------------------------------------------------------------


def test_orm_add_and_commit_is_one_unit_with_its_rows_and_lines(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """An ORM add + commit is a session unit opened at its first begin, one row by key and column name, one commit."""
    plan_id = uuid.uuid4()
    with watch, Session(engine) as session:
        session.add(Plan(plan_id=plan_id, title="Clinic booking"))  # L:orm-add
        session.commit()  # L:orm-commit
        token = watch.unit_of(session)

    assert kinds(timeline) == ["UnitOpened", "RowsWritten", "UnitCommitted"]
    opened, written, committed = list(timeline)
    assert isinstance(opened, UnitOpened) and opened.kind == "session" and opened.unit == token
    assert at(opened.location) == line("orm-add")
    expected = RowWrite(
        "plans",
        "insert",
        (plan_id,),
        {"plan_id": plan_id, "plan_title": "Clinic booking", "status": "draft", "tech_stack": {}},
    )
    assert isinstance(written, RowsWritten) and written.writes == (expected,)
    assert written.via == "flush" and written.unit == opened.unit
    assert isinstance(committed, UnitCommitted) and committed.writes == (expected,) and committed.number == 1
    assert at(committed.location) == line("orm-commit")


def test_database_url_names_the_database_without_its_password(
    engine: Engine, watch: OrmWatch, timeline: Timeline, postgres_cluster: Any, database: str
) -> None:
    """UnitOpened names the database the unit writes to, with the password replaced."""
    with watch, Session(engine) as session:
        session.add(Plan(title="x"))
        session.commit()
    url = only(timeline, UnitOpened).database_url
    assert url is not None and url.endswith(f"/{database}")
    password = postgres_cluster.info.password
    assert password and password not in url and "***" in url


def test_orm_bulk_insert_of_dicts_records_every_row_with_client_side_defaults(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """session.execute(insert(Model), [dicts]) records each row, its client-generated key and defaults."""
    with watch, Session(engine) as session:
        session.execute(insert(Plan), [{"title": f"plan {n}"} for n in range(3)])  # L:bulk
        session.commit()
        stored = {row.plan_id: row.title for row in session.scalars(select(Plan))}

    written = only(timeline, RowsWritten)
    assert written.via == "execute" and at(written.location) == line("bulk")
    assert {write.key: write.values["plan_title"] for write in written.writes} == {
        (key,): title for key, title in stored.items()
    }
    assert all(write.values["status"] == "draft" for write in written.writes)
    assert only(timeline, UnitCommitted).writes == written.writes


def test_orm_bulk_insert_with_returning_knows_the_server_generated_keys(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """An ORM bulk insert with RETURNING has each row's Identity key, as the database assigned it."""
    with watch, Session(engine) as session:
        returned = session.scalars(
            insert(Task).returning(Task.id), [{"number": n, "title": f"t{n}"} for n in (1, 2, 3)]
        ).all()
        session.commit()
    written = only(timeline, RowsWritten)
    assert [write.key for write in written.writes] == [(key,) for key in returned]
    assert [write.values["number"] for write in written.writes] == [1, 2, 3]


def test_server_generated_keys_are_known_through_returning(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """Identity and gen_random_uuid() keys the database made are the rows' keys (fetched by RETURNING)."""
    with watch:
        with Session(engine) as session:
            note, task = Note(body="hello"), Task(number=1, title="first")
            session.add_all([note, task])
            session.commit()
            keys = {"notes": (note.note_id,), "tasks": (task.id,)}
        with engine.begin() as conn:
            result = conn.execute(insert(Note.__table__).values(body="core"))
            core_key = tuple(result.inserted_primary_key)

    written = {
        write.table: write.key
        for event in timeline.of(RowsWritten)
        for write in event.writes
        if write.values.get("body") != "core"
    }
    assert written == keys
    core = [write for event in timeline.of(RowsWritten) for write in event.writes if write.values.get("body") == "core"]
    assert [write.key for write in core] == [core_key] and core_key[0] is not None


def test_keys_from_the_applications_own_returning_and_its_rows_still_there(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """Core insert(...).returning(key): the row's key is recorded, and the application still fetches its rows."""
    with watch, engine.begin() as conn:
        note_id = conn.execute(
            insert(Note.__table__).values(body="one").returning(Note.__table__.c.note_id)
        ).scalar_one()
        many = conn.execute(
            insert(tasks).returning(tasks.c.id, tasks.c.title, sort_by_parameter_order=True),
            [{"number": n, "title": f"t{n}"} for n in (1, 2, 3)],
        ).all()
        unordered = conn.execute(
            insert(tasks).returning(tasks.c.id), [{"number": n, "title": "u"} for n in (4, 5)]
        ).all()
    single, ordered, unknown = [event.writes for event in timeline.of(RowsWritten)]
    assert [write.key for write in single] == [(note_id,)]
    assert [write.key for write in ordered] == [(row.id,) for row in many] and [row.title for row in many] == [
        "t1",
        "t2",
        "t3",
    ]
    assert len(unordered) == 2 and [write.key for write in unknown] == [None, None]


def test_double_commit_in_one_session_is_numbered_with_each_commits_line(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """db.commit() inside a scope that commits again: one unit, commits number 1 (inner line) and 2 (scope's line)."""

    @contextmanager
    def get_db_context(factory: sessionmaker[Session]) -> Iterator[Session]:
        session = factory()
        try:
            yield session
            session.commit()  # L:scope-commit
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    factory = sessionmaker(engine, expire_on_commit=False)
    with watch, get_db_context(factory) as db:
        plan = Plan(title="twice")
        db.add(plan)
        db.commit()  # L:inner-commit

    commits = timeline.of(UnitCommitted)
    assert [commit.number for commit in commits] == [1, 2]
    assert [at(commit.location) for commit in commits] == [line("inner-commit"), line("scope-commit")]
    assert len({commit.unit for commit in commits}) == 1 and len(timeline.of(UnitOpened)) == 1
    assert [write.key for write in commits[0].writes] == [(plan.plan_id,)] and commits[1].writes == ()


def test_swallowing_scope_is_a_rollback_with_the_exception_it_swallowed(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """except: rollback (no raise) is UnitRolledBack with the exception in flight and the line that raised it."""

    @contextmanager
    def swallowing_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
        session = factory()
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()  # L:swallow-rollback
        finally:
            session.close()

    factory = sessionmaker(engine)
    with watch, swallowing_scope(factory) as db:
        db.add(Plan(title="lost"))
        db.flush()
        raise ValueError("the plan did not parse")  # L:swallowed-raise

    rolled_back = only(timeline, UnitRolledBack)
    assert at(rolled_back.location) == line("swallow-rollback") and not rolled_back.savepoint
    assert rolled_back.error is not None and rolled_back.error.type == "ValueError"
    assert rolled_back.error.message == "the plan did not parse" and at(rolled_back.error.location) == line(
        "swallowed-raise"
    )
    assert [write.values["plan_title"] for write in rolled_back.discarded] == ["lost"]
    assert not timeline.of(UnitCommitted) and not timeline.of(UnitClosed)
    assert rows_in(engine, "plans") == 0


def test_a_flush_never_committed_is_pending_then_closed_uncommitted(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """Rows flushed and never committed show in pending() and, once the session closes, in UnitClosed."""
    with watch:
        session = Session(engine)
        plan = Plan(title="never committed")
        session.add(plan)
        session.flush()
        pending = watch.pending()
        session.close()  # L:close-uncommitted
        after = watch.pending()

    unit = only(timeline, UnitOpened).unit
    assert [write.key for write in pending[unit]] == [(plan.plan_id,)]
    closed = only(timeline, UnitClosed)
    assert closed.unit == unit and closed.uncommitted == pending[unit]
    assert at(closed.location) == line("close-uncommitted")
    assert after == {} and not timeline.of(UnitRolledBack)


def test_a_closed_session_used_again_is_a_new_unit(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """commit, close, then commit again on the same Session object: two units, each committing once."""
    with watch:
        session = Session(engine)
        session.add(Plan(title="a"))
        session.commit()
        session.close()
        session.add(Plan(title="b"))
        session.commit()
        session.close()
    commits = timeline.of(UnitCommitted)
    assert [commit.number for commit in commits] == [1, 1]
    assert len({commit.unit for commit in commits}) == 2


def test_savepoint_rollback_discards_only_its_rows(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """begin_nested() rolled back discards the rows written inside it; the commit makes the others durable."""
    kept_id = uuid.uuid4()
    with watch, Session(engine) as session:
        session.add(Plan(plan_id=kept_id, title="kept"))
        session.flush()
        nested = session.begin_nested()
        session.add(Plan(title="dropped"))
        session.flush()
        nested.rollback()  # L:savepoint-rollback
        session.commit()

    rolled_back = only(timeline, UnitRolledBack)
    assert rolled_back.savepoint and at(rolled_back.location) == line("savepoint-rollback")
    assert [write.values["plan_title"] for write in rolled_back.discarded] == ["dropped"]
    committed = only(timeline, UnitCommitted)
    assert [write.key for write in committed.writes] == [(kept_id,)]
    assert rows_in(engine, "plans") == 1


def test_scoped_session_and_sessionmaker_subclasses_are_seen(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """A scoped_session made before the watch was installed is still seen (listeners are on the Session class)."""
    registry = scoped_session(sessionmaker(engine))
    registry().info["made"] = "before the watch"
    with watch:
        registry.add(Plan(title="scoped"))
        registry.commit()
        registry.remove()
    assert [write.values["plan_title"] for write in only(timeline, UnitCommitted).writes] == ["scoped"]


def test_a_session_joining_the_applications_transaction_commits_nothing_itself(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """Session(bind=conn) inside conn.begin(): its commit makes nothing durable; the connection's commit does."""
    with watch, engine.connect() as conn:
        transaction = conn.begin()  # L:external-begin
        with Session(bind=conn) as session:
            session.add(Plan(title="joined"))
            session.commit()  # L:joined-commit
        transaction.commit()  # L:external-commit

    session_commit, connection_commit = timeline.of(UnitCommitted)
    assert session_commit.writes == () and at(session_commit.location) == line("joined-commit")
    assert [write.values["plan_title"] for write in connection_commit.writes] == ["joined"]
    assert at(connection_commit.location) == line("external-commit")
    owner = next(event for event in timeline.of(UnitOpened) if event.unit == connection_commit.unit)
    assert owner.kind == "connection" and at(owner.location) == line("external-begin")
    assert only(timeline, RowsWritten).via == "flush"


def test_sessions_in_threads_are_separate_units(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """Sessions committing from several threads at once each get their own unit with their own row."""
    from concurrent.futures import ThreadPoolExecutor

    def save(number: int) -> None:
        with Session(engine) as session:
            session.add(Task(id=number, number=number, title=f"thread {number}"))
            session.commit()

    with watch, ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(save, range(1, 9)))
    commits = timeline.of(UnitCommitted)
    assert sorted(write.key for commit in commits for write in commit.writes) == [(n,) for n in range(1, 9)]
    assert len({commit.unit for commit in commits}) == 8 and all(commit.number == 1 for commit in commits)


# -- Core ----------------------------------------------------------------------------------------


def test_core_insert_and_executemany_in_engine_begin_are_a_connection_unit(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """engine.begin() with Core inserts is a connection unit: keys in primary-key order, committed at the block's end."""
    with watch, engine.begin() as conn:  # L:core-begin
        first = conn.execute(insert(tasks).values(number=1, title="one")).inserted_primary_key[0]
        conn.execute(insert(edges), [{"depends_on": 1, "task_id": 2}, {"depends_on": 1, "task_id": 3}])  # L:core-many

    opened = only(timeline, UnitOpened)
    assert opened.kind == "connection" and at(opened.location) == line("core-begin")
    single, many = timeline.of(RowsWritten)
    assert single.writes == (RowWrite("tasks", "insert", (first,), {"number": 1, "title": "one"}),)
    assert [write.key for write in many.writes] == [(2, 1), (3, 1)] and at(many.location) == line("core-many")
    committed = only(timeline, UnitCommitted)
    assert committed.writes == single.writes + many.writes and committed.unit == opened.unit


def test_multi_row_values_insert_records_each_row(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """insert().values([row, row]) (one statement, many rows) records each row with its own values."""
    with watch, engine.begin() as conn:
        conn.execute(insert(edges).values([{"task_id": 7, "depends_on": 5}, {"task_id": 7, "depends_on": 6}]))
    written = only(timeline, RowsWritten)
    assert written.writes == (
        RowWrite("task_edges", "insert", (7, 5), {"task_id": 7, "depends_on": 5}),
        RowWrite("task_edges", "insert", (7, 6), {"task_id": 7, "depends_on": 6}),
    )


def test_updates_by_key_and_by_other_where_clauses(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """An UPDATE by primary key (ORM, Core =, IN) has its keys; by another WHERE it has the WHERE clause instead."""
    with engine.begin() as conn:
        ids = conn.scalars(
            insert(tasks).returning(tasks.c.id), [{"number": n, "title": f"t{n}"} for n in (1, 2, 3)]
        ).all()
    with watch:
        with Session(engine) as session:
            task = session.get(Task, ids[0])
            assert task is not None
            task.title = "renamed"
            session.commit()
        with engine.begin() as conn:
            conn.execute(update(tasks).where(tasks.c.id == ids[1]).values(number=20))
            conn.execute(update(tasks).where(tasks.c.id.in_(ids[1:])).values(title="bulk"))
            conn.execute(update(tasks).where(tasks.c.title == "bulk", tasks.c.number > 10).values(number=99))

    orm, by_key, by_in, by_where = [event.writes for event in timeline.of(RowsWritten)]
    assert orm == (RowWrite("tasks", "update", (ids[0],), {"title": "renamed"}),)
    assert by_key == (RowWrite("tasks", "update", (ids[1],), {"number": 20}),)
    assert [write.key for write in by_in] == [(ids[1],), (ids[2],)] and by_in[0].values == {"title": "bulk"}
    assert len(by_where) == 1 and by_where[0].key is None and by_where[0].values == {"number": 99}
    assert (
        by_where[0].where is not None
        and "tasks.title = 'bulk'" in by_where[0].where
        and "tasks.number > 10" in by_where[0].where
    )


def test_deletes_by_key(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """ORM session.delete() and Core DELETE ... WHERE key = / OR key = are recorded by key."""
    with engine.begin() as conn:
        ids = conn.scalars(insert(tasks).returning(tasks.c.id), [{"number": n, "title": "x"} for n in (1, 2, 3)]).all()
    with watch:
        with Session(engine) as session:
            session.delete(session.get(Task, ids[0]))
            session.commit()
        with engine.begin() as conn:
            conn.execute(delete(tasks).where((tasks.c.id == ids[1]) | (tasks.c.id == ids[2])))
    orm, core = [event.writes for event in timeline.of(RowsWritten)]
    assert orm == (RowWrite("tasks", "delete", (ids[0],), {}),)
    assert core == (RowWrite("tasks", "delete", (ids[1],), {}), RowWrite("tasks", "delete", (ids[2],), {}))
    assert rows_in(engine, "tasks") == 0


def test_schemas_explicit_and_through_search_path(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """A model with schema= is recorded as schema.table; one reached through search_path by its bare name."""
    with watch, Session(engine) as session:
        session.add_all([AuditEntry(id=1, what="saved"), Widget(id=1, name="w")])
        session.commit()
    written = [write for event in timeline.of(RowsWritten) for write in event.writes]
    assert sorted((write.table, write.key) for write in written) == [("audit.entries", (1,)), ("widgets", (1,))]
    assert rows_in(engine, "app.widgets") == 1 and rows_in(engine, "audit.entries") == 1


def test_raw_sql_writes_are_untracked_writes_naming_the_applications_tables(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """text() and exec_driver_sql INSERTs are UntrackedWrite naming the watched tables; writes elsewhere are ignored."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (id int)")
    edges_sql = text(
        "INSERT INTO task_edges (task_id, depends_on) SELECT * FROM unnest(CAST(:a AS int[]), CAST(:b AS int[]))"
    )
    with watch, engine.begin() as conn:
        conn.execute(edges_sql, {"a": [1], "b": [2]})  # L:text-insert
        conn.exec_driver_sql("UPDATE audit.entries SET what = 'x' WHERE id = 1")
        conn.execute(text("INSERT INTO scratch VALUES (1)"))
        conn.execute(text("SELECT 'insert into tasks' AS not_a_write"))
        conn.execute(insert(edges).from_select(["task_id", "depends_on"], select(tasks.c.id, tasks.c.number)))

    untracked = timeline.of(UntrackedWrite)
    assert [event.tables for event in untracked] == [("task_edges",), ("audit.entries",), ("task_edges",)]
    assert untracked[2].sql.startswith("INSERT INTO task_edges (task_id, depends_on) SELECT")
    assert untracked[0].sql.startswith("INSERT INTO task_edges") and at(untracked[0].location) == line("text-insert")
    assert not timeline.of(RowsWritten)
    assert only(timeline, UnitCommitted).writes == ()


def test_without_a_table_list_every_table_is_recorded(engine: Engine, timeline: Timeline) -> None:
    """tables=None records writes to any table, raw SQL naming its tables as PostgreSQL folds them."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (id int)")
    with OrmWatch(timeline, None), engine.begin() as conn:
        conn.execute(text('INSERT INTO Scratch VALUES (1); INSERT INTO "app"."widgets" (id, name) VALUES (9, \'x\')'))
        conn.execute(insert(AuditEntry.__table__).values(id=3, what="y"))
    assert only(timeline, UntrackedWrite).tables == ("scratch", "app.widgets")
    assert [write.table for write in only(timeline, RowsWritten).writes] == ["audit.entries"]


def test_writes_to_tables_outside_the_watch_are_ignored(engine: Engine, timeline: Timeline) -> None:
    """With tables= naming only plans, a task row written beside a plan row is not recorded."""
    with OrmWatch(timeline, AppCode([THIS_FILE.parent]), tables={"plans"}), Session(engine) as session:
        session.add_all([Plan(title="watched"), Task(number=1, title="not watched")])
        session.commit()
    written = [write.table for event in timeline.of(RowsWritten) for write in event.writes]
    assert written == ["plans"]


def test_a_connection_closed_with_rows_is_closed_uncommitted(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """engine.connect() with an insert and no commit: pending while open, UnitClosed when closed."""
    with watch, engine.connect() as conn:
        conn.execute(insert(tasks).values(id=41, number=1, title="x"))
        pending = watch.pending()
    closed = only(timeline, UnitClosed)
    assert [write.key for write in pending[closed.unit]] == [(41,)]
    assert [write.key for write in closed.uncommitted] == [(41,)] and not timeline.of(UnitRolledBack)


def test_connection_savepoint_rollback_and_exception_rollback(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """On a Connection: a rolled-back savepoint drops its rows only; an exception leaving engine.begin() rolls back with it."""
    with watch:
        with engine.begin() as conn:
            conn.execute(insert(tasks).values(id=1, number=1, title="kept"))
            savepoint = conn.begin_nested()
            conn.execute(insert(tasks).values(id=2, number=2, title="dropped"))
            savepoint.rollback()
        with pytest.raises(LookupError), engine.begin() as conn:
            conn.execute(insert(tasks).values(id=3, number=3, title="failed"))
            raise LookupError("no such milestone")  # L:core-raise

    savepoint_event, failed = timeline.of(UnitRolledBack)
    assert savepoint_event.savepoint and [write.key for write in savepoint_event.discarded] == [(2,)]
    assert [write.key for write in only(timeline, UnitCommitted).writes] == [(1,)]
    assert not failed.savepoint and [write.key for write in failed.discarded] == [(3,)]
    assert (
        failed.error is not None
        and failed.error.type == "LookupError"
        and at(failed.error.location) == line("core-raise")
    )


def test_rolling_back_an_outer_savepoint_discards_the_inner_ones_too(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """ROLLBACK TO an outer savepoint also discards the rows of a savepoint released inside it."""
    with watch, engine.begin() as conn:
        conn.execute(insert(tasks).values(id=1, number=1, title="kept"))
        outer = conn.begin_nested()
        conn.execute(insert(tasks).values(id=2, number=2, title="outer"))
        inner = conn.begin_nested()
        conn.execute(insert(tasks).values(id=3, number=3, title="inner"))
        inner.commit()
        outer.rollback()
        conn.execute(insert(tasks).values(id=4, number=4, title="after"))
    assert [write.key for write in only(timeline, UnitRolledBack).discarded] == [(2,), (3,)]
    assert [write.key for write in only(timeline, UnitCommitted).writes] == [(1,), (4,)]
    assert rows_in(engine, "tasks") == 2


def test_expunge_all_inside_a_transaction_keeps_the_unit(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """session.expunge_all() mid-transaction is not a close: the commit still belongs to the unit that wrote."""
    with watch, Session(engine) as session:
        session.add(Plan(title="a"))
        session.flush()
        session.expunge_all()
        session.commit()
    assert len(timeline.of(UnitOpened)) == 1
    assert [write.values["plan_title"] for write in only(timeline, UnitCommitted).writes] == ["a"]


def test_a_refused_core_write_swallowed_by_the_app_is_still_a_rollback_with_it(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """engine.begin() whose only write is refused, the error swallowed: a connection unit rolled back with it."""
    with watch:
        try:
            with engine.begin() as conn:
                conn.execute(insert(tasks).values(id=1, number=1, title="x" * 300))  # L:refused-write
        except DataError:
            pass
        try:
            with engine.begin() as conn:
                conn.execute(select(tasks.c.id))
                raise ValueError("nothing written, still rolled back")
        except ValueError:
            pass

    refused, read_only = timeline.of(UnitRolledBack)
    assert refused.discarded == () and refused.error is not None and refused.error.type == "DataError"
    assert at(refused.error.location) == line("refused-write")
    assert read_only.error is not None and read_only.error.type == "ValueError"
    assert [opened.kind for opened in timeline.of(UnitOpened)] == ["connection", "connection"]


def test_a_commit_the_database_refuses_is_no_commit(engine: Engine, watch: OrmWatch, timeline: Timeline) -> None:
    """A deferred foreign key failing at COMMIT: the app gets the same IntegrityError, and no UnitCommitted is recorded."""
    with watch:
        conn = engine.connect()
        conn.execute(insert(tasks).values(id=1, plan_id=uuid.uuid4(), number=1, title="orphan"))
        with pytest.raises(IntegrityError):
            conn.commit()  # L:refused-commit
        conn.close()
        with Session(engine) as session:
            session.add(Task(id=2, plan_id=uuid.uuid4(), number=2, title="orphan too"))
            with pytest.raises(IntegrityError):
                session.commit()
            session.rollback()

    assert not timeline.of(UnitCommitted)
    discarded = [[write.key for write in event.discarded] for event in timeline.of(UnitRolledBack)]
    assert discarded == [[(1,)], [(2,)]]
    refused = timeline.of(UnitRolledBack)[0]
    assert refused.error is not None and refused.error.type == "IntegrityError"
    assert at(refused.location) == line("refused-commit") and at(refused.error.location) == line("refused-commit")
    assert rows_in(engine, "tasks") == 0


def test_a_failed_flush_propagates_unchanged_and_is_a_rollback_with_it(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """A duplicate key: the app gets SQLAlchemy's IntegrityError as without the watch; the unit's rollback carries it."""
    with engine.begin() as conn:
        conn.execute(insert(tasks).values(id=5, number=1, title="taken"))
    with watch, Session(engine) as session:
        session.add(Task(id=5, number=2, title="duplicate"))
        with pytest.raises(IntegrityError, match="duplicate key"):
            session.flush()  # L:failed-flush
    rolled_back = only(timeline, UnitRolledBack)
    assert rolled_back.error is not None and rolled_back.error.type == "IntegrityError"
    assert at(rolled_back.location) == line("failed-flush") and at(rolled_back.error.location) == line("failed-flush")


def test_a_second_engine_to_another_database_is_seen_as_another_database(
    engine: Engine, watch: OrmWatch, timeline: Timeline, postgres_cluster: Any, database: str, driver: str
) -> None:
    """Writes through a second engine name the other database in their UnitOpened."""
    other = postgres_cluster.create_database()
    try:
        _prepare(postgres_cluster, other)
        other_engine = create_engine(
            postgres_cluster.info.url(other, driver=f"postgresql+{driver}"), connect_args=CONNECT_ARGS
        )
        with watch:
            with Session(engine) as session:
                session.add(Plan(title="here"))
                session.commit()
            with other_engine.begin() as conn:
                conn.execute(insert(plans).values(plan_title="there"))
        other_engine.dispose()
    finally:
        postgres_cluster.drop_database(other)
    urls = [event.database_url or "" for event in timeline.of(UnitOpened)]
    assert [url.rsplit("/", 1)[-1] for url in urls] == [database, other]


def test_secret_shaped_values_in_a_where_clause_are_redacted(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """A WHERE clause recorded as SQL never carries an API-key-shaped value."""
    key = "sk-ant-api03-abcdefghijklmnop"
    with watch, engine.begin() as conn:
        conn.execute(update(plans).where(plans.c.plan_title == key).values(status="x"))
    where = only(timeline, RowsWritten).writes[0].where
    assert where is not None and key not in where and "***" in where


# -- async ---------------------------------------------------------------------------------------


def test_async_session_with_psycopg_async(
    postgres_cluster: Any, database: str, watch: OrmWatch, timeline: Timeline
) -> None:
    """AsyncSession (psycopg 3 async): rows, commit and swallowed-exception rollback at the coroutine's lines."""
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

    async def flow() -> uuid.UUID:
        engine = create_async_engine(postgres_cluster.url(database), connect_args=CONNECT_ARGS)
        try:
            async with AsyncSession(engine) as session:
                plan = Plan(plan_id=uuid.uuid4(), title="async")
                plan_id = plan.plan_id
                session.add(plan)  # L:async-add
                await session.commit()  # L:async-commit
            async with async_sessionmaker(engine)() as session:
                try:
                    session.add(Plan(title="swallowed"))
                    await session.flush()
                    raise ValueError("async parse failed")  # L:async-raise
                except ValueError:
                    await session.rollback()  # L:async-rollback
            async with AsyncSession(engine) as session:  # L:async-close
                session.add(Plan(title="never committed"))
                await session.flush()
            return plan_id
        finally:
            await engine.dispose()

    with watch:
        plan_id = asyncio.run(flow())

    first, second, third = timeline.of(UnitOpened)
    assert at(first.location) == line("async-add")
    committed = only(timeline, UnitCommitted)
    assert at(committed.location) == line("async-commit") and [write.key for write in committed.writes] == [(plan_id,)]
    rolled_back = only(timeline, UnitRolledBack)
    assert rolled_back.unit == second.unit and at(rolled_back.location) == line("async-rollback")
    assert rolled_back.error is not None and rolled_back.error.type == "ValueError"
    assert at(rolled_back.error.location) == line("async-raise")
    closed = only(timeline, UnitClosed)
    assert closed.unit == third.unit and at(closed.location) == line("async-close")
    assert [write.values["plan_title"] for write in closed.uncommitted] == ["never committed"]


# -- installation --------------------------------------------------------------------------------


def test_nothing_is_recorded_after_the_block_and_nested_blocks_keep_watching(
    engine: Engine, watch: OrmWatch, timeline: Timeline
) -> None:
    """Entering the watch twice keeps it installed until the outer block ends; after it, a write records nothing."""
    with watch:
        with watch:
            pass
        assert watch.installed
        with Session(engine) as session:
            session.add(Plan(title="inside"))
            session.commit()
    recorded = len(timeline)
    with Session(engine) as session:
        session.add(Plan(title="after"))
        session.commit()
    with engine.begin() as conn:
        conn.execute(insert(tasks).values(number=1, title="after"))
    assert recorded == 3 and len(timeline) == recorded and not watch.installed


def test_two_watches_record_independently(engine: Engine) -> None:
    """Two watches installed together each see the write, with their own unit tokens; removing one leaves the other."""
    first, second = Timeline(), Timeline()
    outer = OrmWatch(first, None, tables=TABLES)
    with outer:
        with OrmWatch(second, None, tables=TABLES), Session(engine) as session:
            session.add(Plan(title="both"))
            session.commit()
        with Session(engine) as session:
            session.add(Plan(title="first only"))
            session.commit()
    assert [len(event.writes) for event in first.of(UnitCommitted)] == [1, 1]
    assert [len(event.writes) for event in second.of(UnitCommitted)] == [1]


class _BrokenCode(AppCode):
    """An AppCode that fails: stands in for a bug in the watch's own bookkeeping."""

    def owns(self, filename: str) -> bool:
        raise RuntimeError("bookkeeping bug")


def test_bookkeeping_errors_never_reach_the_application(engine: Engine, timeline: Timeline) -> None:
    """When the watch's own code fails, the application's commit still succeeds and the failure is noted."""
    watch = OrmWatch(timeline, _BrokenCode([THIS_FILE.parent]), tables=TABLES)
    with watch, Session(engine) as session:
        session.add(Plan(title="still saved"))
        session.commit()
    assert rows_in(engine, "plans") == 1
    assert watch.problems and "RuntimeError: bookkeeping bug" in watch.problems[0]
