"""Database writes, watched from outside: SQLAlchemy events registered on the ``Session``, ``Engine`` and ``Pool`` classes.

An :class:`OrmWatch` records, while it is installed, what any code in the process writes to a
database through SQLAlchemy 2 — every sessionmaker, ``scoped_session``, ``AsyncSession`` (its
``sync_session``), context manager or bare ``engine.begin()`` — without knowing those objects::

    with OrmWatch(timeline, app_code, tables={"masterplans", "masterplan_tasks"}) as watch:
        run_the_flow()
        never_committed = watch.pending()   # unit token -> rows flushed, never committed

What each event of the timeline is made from (measured against SQLAlchemy 2.0.35 and 2.1 with
psycopg 3 and psycopg2; see ``tests/harness/observe/test_orm.py``):

* **Units of work.** A Session is one unit from its first transaction to its close (its token is
  kept in ``session.info``, see :meth:`OrmWatch.unit_of`; a Session closed and used again is a new
  unit). A Connection transaction that no Session began is a unit of its own. A unit enters the
  timeline (:class:`UnitOpened`, dated and located at its first begin) when it first writes,
  commits, rolls back or is closed with rows pending, and a connection's transaction also when a
  write to a watched table fails in it or it is rolled back while an exception is being handled:
  sessions and connections that only read and are closed leave nothing.
* **Rows** (:class:`RowsWritten`) come from the engine's ``after_execute``: the compiled
  INSERT/UPDATE/DELETE, ``compiled_parameters`` (values as the application sent them, client-side
  defaults included, one dict per executemany row; ``_m<i>`` keys of a multi-row VALUES), primary
  keys from those values, from ``inserted_primary_key_rows`` (server-generated keys the ORM or an
  implicit RETURNING fetched) or from the application's own ``.returning(...)`` rows (read, then
  the result rewound onto them), and for UPDATE/DELETE the WHERE clause when it is a primary-key
  equality, IN or OR of those. Raw SQL text that writes (``text()``, ``exec_driver_sql``) and
  INSERT ... SELECT are :class:`UntrackedWrite`.
* **Durability** follows the connection's transaction: ``commit`` / ``rollback`` /
  ``rollback_savepoint`` engine events move rows; ``handle_error`` during a COMMIT means it failed.
  A Session's commit is reported at its ``after_commit`` (so a second ``commit()`` with nothing left
  to write is still seen, ``number=2``); its rollback at ``after_rollback`` with the exception being
  handled at that moment; a root transaction that ended with neither is :class:`UnitClosed`.
  A Connection unit's commit is reported once it is known to have succeeded (its next begin or
  statement, its return to the pool, or :meth:`OrmWatch.pending` / uninstall).

The watcher never changes what a statement does: its handlers swallow their own errors (kept in
:attr:`OrmWatch.problems`). Two departures from "events only", both invisible to the application:
reading an explicit RETURNING's rows rewinds the result onto them (what SQLAlchemy does itself for
``return_defaults()``); and inside asyncio SQLAlchemy runs the sync rollback or close in a greenlet
(sometimes in a shielded task) that sees neither the coroutine's exception nor its stack, so while
a watch is installed the async ``rollback`` and ``__aexit__`` methods of ``sqlalchemy.ext.asyncio``
are wrapped to hand both over through a context variable.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import re
import sys
import threading
import time
import weakref
from types import FrameType
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ColumnClause,
    Grouping,
    TextClause,
)

from harness.observe.code import AppCode, exception_info
from harness.observe.timeline import (
    CodeLocation,
    ExceptionInfo,
    RowsWritten,
    RowWrite,
    Timeline,
    UnitClosed,
    UnitCommitted,
    UnitKind,
    UnitOpened,
    UnitRolledBack,
    UntrackedWrite,
)
from harness.redaction import redact_text, redact_url

__all__ = ["OrmWatch"]

#: Characters of SQL text kept in an event (an UntrackedWrite's statement, a RowWrite's WHERE).
_SQL_CHARS = 300
#: Bookkeeping errors kept in :attr:`OrmWatch.problems`.
_MAX_PROBLEMS = 50
#: Primary keys expanded from one WHERE clause (an IN of more rows is recorded by its WHERE).
_MAX_KEYS = 10_000

_Op = Literal["insert", "update", "delete"]

try:  # greenlet is how SQLAlchemy runs sync code for AsyncSession; optional otherwise
    from greenlet import getcurrent as _current_greenlet
except ImportError:  # pragma: no cover - greenlet is installed wherever asyncio is used
    _current_greenlet = None


# -- where the application is ------------------------------------------------------------------


class _Locator:
    """Finds the application's innermost frame on the stack; locations are made once per (file, line, function)."""

    _MAX_CACHED = 4096

    def __init__(self, code: AppCode | None) -> None:
        self.code = code
        self._cache: dict[tuple[str, int, str], CodeLocation] = {}
        #: Code object → it is the application's (a dict lookup per frame instead of a path check).
        self._owned: dict[Any, bool] = {}

    def __call__(self) -> CodeLocation | None:
        if self.code is None:
            return None
        found = self._innermost(sys._getframe(1))
        caller = _async_caller.get() if found is None else None
        if caller is not None:
            found = self._innermost(caller[1])
        if found is None and _current_greenlet is not None:
            # Inside AsyncSession the sync code runs in a child greenlet whose stack ends at its start;
            # the application's coroutine is suspended in the parent greenlet, awaiting it.
            parent = _current_greenlet().parent
            while found is None and parent is not None:
                if parent.gr_frame is not None:
                    found = self._innermost(parent.gr_frame)
                parent = parent.parent
        return found

    def _innermost(self, frame: Any) -> CodeLocation | None:
        assert self.code is not None
        owned = self._owned
        while frame is not None:
            code = frame.f_code
            mine = owned.get(code)
            if mine is None:
                # The watch's own frames never count, even where its package is the application's (ours).
                mine = owned[code] = code.co_filename != __file__ and self.code.owns(code.co_filename)
            if mine:
                key = (code.co_filename, frame.f_lineno, code.co_name)
                location = self._cache.get(key)
                if location is None:
                    if len(self._cache) >= self._MAX_CACHED:
                        self._cache.clear()
                    location = self._cache[key] = self.code.location(*key)
                return location
            frame = frame.f_back
        return None


#: The exception an async caller was handling when it called rollback or __aexit__, and the caller's frame
#: (SQLAlchemy may run the sync part in a shielded task whose stack does not lead back to the caller).
_async_caller: ContextVar[tuple[BaseException | None, FrameType] | None] = ContextVar(
    "harness_orm_async_caller", default=None
)


def _in_flight() -> BaseException | None:
    """The exception being handled right now by the code that caused this event, if any."""
    caller = _async_caller.get()
    return sys.exception() or (caller[0] if caller is not None else None)


class _AsyncHandover:
    """Wraps the async ``rollback`` and ``__aexit__`` methods while at least one watch is installed (refcounted)."""

    _METHODS = ("rollback", "__aexit__")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: list[tuple[type, str, Any]] = []

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._install()

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                for cls, name, original in reversed(self._saved):
                    setattr(cls, name, original)
                self._saved.clear()

    def _install(self) -> None:
        try:
            from sqlalchemy.ext import asyncio as sa_asyncio
        except ImportError:  # pragma: no cover - part of SQLAlchemy; importable without greenlet
            return
        classes = [
            getattr(sa_asyncio, name, None)
            for name in ("AsyncSession", "AsyncSessionTransaction", "AsyncConnection", "AsyncTransaction")
        ]
        for cls in classes:
            if cls is None:
                continue
            for name in self._METHODS:
                original = cls.__dict__.get(name)
                if original is not None and inspect.iscoroutinefunction(original):
                    self._saved.append((cls, name, original))
                    setattr(cls, name, _handing_over(original))


def _handing_over(method: Callable[..., Any]) -> Callable[..., Any]:
    async def handing_over(*args: Any, **kwargs: Any) -> Any:
        outer = _async_caller.get()
        handled = sys.exception() or (outer[0] if outer is not None else None)
        token = _async_caller.set((handled, sys._getframe(1)))
        try:
            return await method(*args, **kwargs)
        finally:
            _async_caller.reset(token)

    handing_over.__name__ = method.__name__
    handing_over.__qualname__ = method.__qualname__
    handing_over.__doc__ = method.__doc__
    handing_over.__wrapped__ = method  # type: ignore[attr-defined]
    return handing_over


_ASYNC_HANDOVER = _AsyncHandover()


# -- what a compiled statement writes -----------------------------------------------------------

#: Where one primary-key column's value comes from in a statement's parameters.
_Ref = tuple[Literal["bind", "expanding"], str]
#: Alternatives (OR) of primary-key column name → where its value is.
_KeyTerms = list[dict[str, _Ref]]


@dataclass(frozen=True)
class _Plan:
    """How to read rows out of one compiled DML statement's parameters (cached per compiled object)."""

    table: str
    op: _Op | None
    #: ``op`` is None: rows cannot be known (INSERT ... SELECT); the statement is an UntrackedWrite.
    sql: str = ""
    #: Column name → parameter key, for a statement whose parameters are one row each.
    columns: tuple[tuple[str, str], ...] = ()
    #: A multi-row VALUES: per row, column name → parameter keys to try.
    multi: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...] | None = None
    #: Primary-key column names, in the table's primary-key order.
    pk: tuple[str, ...] = ()
    #: UPDATE/DELETE: where the primary key is in the WHERE clause (None: not a key lookup).
    key_terms: _KeyTerms | None = None
    #: UPDATE/DELETE with an unknown key: the WHERE clause with placeholders.
    where: str | None = None


def _build_plan(compiled: Any, table: Any, op: _Op, sample: Mapping[str, Any]) -> _Plan:
    """Read once per compiled statement; ``sample`` is its first execution's parameters (their keys are fixed)."""
    statement = compiled.statement
    fullname = str(table.fullname)
    pk = tuple(column.name for column in table.primary_key)
    if op == "insert" and getattr(statement, "select", None) is not None:
        return _Plan(fullname, None, sql=_sql_text(compiled.string))
    bind_names: Mapping[Any, str] = compiled.bind_names
    where_clause = getattr(statement, "whereclause", None) if op != "insert" else None
    where_names: set[str] = set()
    key_terms: _KeyTerms | None = None
    where_sql: str | None = None
    if op != "insert":
        if where_clause is None:
            where_sql = "TRUE"
        else:
            where_names = {
                bind_names.get(node, node.key)
                for node in visitors.iterate(where_clause)
                if isinstance(node, BindParameter)
            }
            key_terms = _key_terms(where_clause, fullname, set(pk), bind_names)
            if key_terms is not None and any(set(term) != set(pk) for term in key_terms):
                key_terms = None
            where_sql = _sql_text(str(where_clause))
    explicit = _explicit_values(compiled, table)
    state = getattr(compiled, "compile_state", None)
    multi_rows = getattr(state, "_multi_parameters", None) if getattr(state, "_has_multi_parameters", False) else None
    if op == "insert" and multi_rows:
        rows = tuple(
            tuple(
                (column.name, (f"{column.key}_m{index}", column.key) if index == 0 else (f"{column.key}_m{index}",))
                for column in table.c
            )
            for index in range(len(multi_rows))
        )
        return _Plan(fullname, op, multi=rows, pk=pk)
    columns = []
    for column in table.c:
        key = _parameter_key(column, explicit.get(column.key), bind_names, sample)
        if key is not None and key not in where_names:
            columns.append((column.name, key))
    return _Plan(fullname, op, columns=tuple(columns), pk=pk, key_terms=key_terms, where=where_sql)


def _explicit_values(compiled: Any, table: Any) -> dict[str, Any]:
    """Column key → what ``.values(...)`` gave it (a BindParameter, or an SQL expression whose value is unknown)."""
    state = getattr(compiled, "compile_state", None)
    given = getattr(state, "_dict_parameters", None) or {}
    found: dict[str, Any] = {}
    for target, value in given.items():
        key = target if isinstance(target, str) else getattr(target, "key", None)
        if key is not None and key in table.c:
            found[table.c[key].key] = value
    return found


def _parameter_key(column: Any, given: Any, bind_names: Mapping[Any, str], sample: Mapping[str, Any]) -> str | None:
    """Which parameter holds ``column``'s value (``None``: the statement computes it in SQL)."""
    if given is None:
        return column.key
    if not isinstance(given, BindParameter):
        return None
    # SQLAlchemy renames an anonymous .values() parameter after its column; a named bindparam() keeps its name.
    for candidate in (bind_names.get(given), given.key, column.key):
        if candidate is not None and candidate in sample:
            return candidate
    return None


def _key_terms(clause: Any, table: str, pk: set[str], bind_names: Mapping[Any, str]) -> _KeyTerms | None:
    """The primary keys a WHERE clause selects, as alternatives of column → parameter; None if not a key lookup."""
    while isinstance(clause, Grouping):
        clause = clause.element
    if isinstance(clause, BooleanClauseList):
        parts = [_key_terms(part, table, pk, bind_names) for part in clause.clauses]
        if clause.operator is operators.or_:
            if any(part is None for part in parts):
                return None
            return [term for part in parts if part is not None for term in part]
        if clause.operator is operators.and_:
            # Conditions that do not name the key only narrow the rows; the key decides which ones.
            known = [part for part in parts if part is not None]
            if not known:
                return None
            combined: _KeyTerms = [{}]
            for part in known:
                combined = [{**left, **right} for left in combined for right in part]
                if len(combined) > _MAX_KEYS:
                    return None
            return combined
        return None
    if not isinstance(clause, BinaryExpression):
        return None
    left, right = clause.left, clause.right
    if isinstance(right, ColumnClause) and not isinstance(left, ColumnClause):
        left, right = right, left
    if not isinstance(left, ColumnClause) or not isinstance(right, BindParameter):
        return None
    owner = getattr(left, "table", None)
    if owner is None or getattr(owner, "fullname", None) != table or left.name not in pk:
        return None
    name = bind_names.get(right, right.key)
    if clause.operator is operators.eq and not right.expanding:
        return [{left.name: ("bind", name)}]
    if clause.operator is operators.in_op and right.expanding:
        return [{left.name: ("expanding", name)}]
    return None


def _sql_text(sql: str) -> str:
    text = " ".join(sql.split())
    if len(text) > _SQL_CHARS:
        text = text[: _SQL_CHARS - 1] + "…"
    return redact_text(text)


def _kept(value: Any) -> Any:
    """A value as it was sent: containers are copied, so the application mutating them later changes nothing here."""
    if isinstance(value, dict):
        return {key: _kept(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_kept(item) for item in value]
    return value


def _expanded(name: str, params: Mapping[str, Any], expansion: Mapping[str, list[str]]) -> list[Any] | None:
    """The values an expanding IN parameter had (SQLAlchemy replaces ``name`` by ``name_1 .. name_n``)."""
    if name in expansion:
        return [params[key] for key in expansion[name] if key in params]
    if name in params and isinstance(params[name], (list, tuple)):
        return list(params[name])
    values = []
    for index in itertools.count(1):
        key = f"{name}_{index}"
        if key not in params:
            break
        values.append(params[key])
    return values or None


def _keys_from_where(
    plan: _Plan, params: Mapping[str, Any], expansion: Mapping[str, list[str]]
) -> list[tuple[Any, ...]] | None:
    assert plan.key_terms is not None
    keys: list[tuple[Any, ...]] = []
    for term in plan.key_terms:
        choices: list[list[Any]] = []
        for column in plan.pk:
            kind, name = term[column]
            if kind == "bind":
                if name not in params:
                    return None
                choices.append([params[name]])
            else:
                values = _expanded(name, params, expansion)
                if values is None:
                    return None
                choices.append(values)
        for key in itertools.product(*choices):
            if any(part is None for part in key):
                return None
            keys.append(key)
            if len(keys) > _MAX_KEYS:
                return None
    return list(dict.fromkeys(keys))


def _rows_written(plan: _Plan, context: Any, result: Any, statement: Any) -> list[RowWrite]:
    """The rows one execution of a planned statement touched."""
    assert plan.op is not None
    parameters: list[Mapping[str, Any]] = context.compiled_parameters or [{}]
    if plan.op == "insert":
        rows: list[dict[str, Any]]
        if plan.multi is not None:
            params = parameters[0]
            rows = []
            for row in plan.multi:
                values = {}
                for name, keys in row:
                    key = next((key for key in keys if key in params), None)
                    if key is not None:
                        values[name] = _kept(params[key])
                rows.append(values)
        else:
            rows = [{name: _kept(params[key]) for name, key in plan.columns if key in params} for params in parameters]
        returned: list[tuple[Any, ...] | None] | None = None
        writes = []
        for index, values in enumerate(rows):
            key: tuple[Any, ...] | None = tuple(values.get(name) for name in plan.pk) if plan.pk else None
            if key is not None and any(part is None for part in key):
                if returned is None:
                    returned = (
                        _inserted_keys(result, len(rows))
                        or _returned_keys(result, context, plan.pk, len(rows))
                        or [None] * len(rows)
                    )
                key = returned[index]
            writes.append(RowWrite(plan.table, "insert", key, values))
        return writes
    expansion = getattr(context, "_expanded_parameters", None) or {}
    writes = []
    for params in parameters:
        values = (
            {name: _kept(params[key]) for name, key in plan.columns if key in params} if plan.op == "update" else {}
        )
        keys = _keys_from_where(plan, params, expansion) if plan.key_terms is not None else None
        if keys is None:
            writes.append(RowWrite(plan.table, plan.op, None, values, where=_where_with_values(statement, plan)))
        else:
            writes.extend(RowWrite(plan.table, plan.op, key, values) for key in keys)
    return writes


def _inserted_keys(result: Any, rows: int) -> list[tuple[Any, ...] | None] | None:
    """Primary keys SQLAlchemy knows for inserted rows (RETURNING it asked for itself), one per row."""
    try:
        known = result.inserted_primary_key_rows
    except Exception:  # explicit RETURNING, or a dialect that cannot say
        return None
    if not known or len(known) != rows:
        return None
    return [tuple(key) if key is not None and all(part is not None for part in key) else None for key in known]


def _returned_keys(result: Any, context: Any, pk: tuple[str, ...], rows: int) -> list[tuple[Any, ...] | None] | None:
    """Primary keys from the application's own ``.returning(...)``, read without taking its rows away.

    SQLAlchemy refuses ``inserted_primary_key`` when the statement has an explicit RETURNING. Its
    rows are read here and the result is rewound onto them (``CursorResult._rewind``, what
    SQLAlchemy itself does for ``return_defaults()`` with supplemental columns), so the application
    fetches the same rows afterwards. Only when each row can be matched to its parameters: one
    row, or ``sort_by_parameter_order=True``.
    """
    if not pk or not getattr(context, "_is_explicit_returning", False) or not hasattr(result, "_rewind"):
        return None
    imv = getattr(context.compiled, "_insertmanyvalues", None)
    if rows != 1 and not getattr(imv, "sort_by_parameter_order", False):
        return None
    if not set(pk) <= set(result.keys()):
        return None
    fetched = result.all()
    result._rewind(fetched)
    if len(fetched) != rows:
        return None
    return [tuple(row._mapping[name] for name in pk) for row in fetched]


def _where_with_values(statement: Any, plan: _Plan) -> str | None:
    """The executed statement's WHERE with its values inline when they render, else with placeholders."""
    clause = getattr(statement, "whereclause", None)
    if clause is None:
        return plan.where
    try:
        return _sql_text(str(clause.compile(compile_kwargs={"literal_binds": True})))
    except Exception:
        return plan.where


# -- raw SQL text -------------------------------------------------------------------------------

_NAME = r'(?:"[^"]+"|[A-Za-z_][\w$]*)(?:\s*\.\s*(?:"[^"]+"|[A-Za-z_][\w$]*))?'
_TEXT_WRITES = re.compile(
    rf"\binsert\s+into\s+(?P<insert>{_NAME})"
    rf"|\bupdate\s+(?:only\s+)?(?P<update>{_NAME})(?:\s+(?:as\s+)?[A-Za-z_]\w*)?\s+set\b"
    rf"|\bdelete\s+from\s+(?:only\s+)?(?P<delete>{_NAME})"
    rf"|\bmerge\s+into\s+(?P<merge>{_NAME})"
    rf"|\btruncate\s+(?:table\s+)?(?:only\s+)?(?P<truncate>{_NAME})"
    rf"|\bcopy\s+(?P<copy>{_NAME})\s*(?:\(|from\b)",
    re.IGNORECASE,
)
_LITERALS_AND_COMMENTS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)


def _text_write_tables(sql: str) -> list[str] | None:
    """Tables a raw SQL statement writes to, as PostgreSQL names them (None: it does not write)."""
    bare = _LITERALS_AND_COMMENTS.sub(" ", sql)
    names = []
    for match in _TEXT_WRITES.finditer(bare):
        raw = next(group for group in match.groups() if group)
        parts = [part.strip() for part in raw.split(".")]
        names.append(".".join(part[1:-1] if part.startswith('"') else part.lower() for part in parts))
    return list(dict.fromkeys(names)) or None


# -- bookkeeping --------------------------------------------------------------------------------


@dataclass(eq=False)
class _Unit:
    """One unit of work as the watch keeps it."""

    token: str
    kind: UnitKind
    location: CodeLocation | None
    at: float
    database_url: str | None = None
    session: weakref.ref[Any] | None = None
    #: The Session's identity map when the unit began (weakly): a new one means the Session was closed since.
    identity_map: Callable[[], Any] = lambda: None
    opened: UnitOpened | None = None
    commits: int = 0
    #: Transactions of this unit on their connections, not yet ended.
    txs: list[_Tx] = field(default_factory=list)
    #: Rows a rolled-back savepoint discarded, until the Session's after_rollback reports them.
    savepoint_discarded: list[RowWrite] = field(default_factory=list)
    #: The Session's current root transaction ended by commit or rollback (not closed).
    settled: bool = False
    #: The Session's root transaction ended without commit or rollback: the next begin is a new unit.
    closed: bool = False

    def pending(self) -> list[RowWrite]:
        return [write for tx in self.txs for write in (*(tx.committing or ()), *tx.writes)]


@dataclass(eq=False)
class _Tx:
    """One root transaction on one Connection."""

    location: CodeLocation | None
    at: float
    connection: weakref.ref[Any]
    owner: _Unit | None = None
    writes: list[RowWrite] = field(default_factory=list)
    #: Open savepoints: (name, number of writes before it).
    savepoints: list[tuple[str | None, int]] = field(default_factory=list)
    #: COMMIT sent, outcome not yet known: the rows it would make durable.
    committing: list[RowWrite] | None = None
    commit_location: CodeLocation | None = None
    commit_at: float = 0.0
    dbapi_id: int | None = None
    #: The Session using the connection (its owner's, or one that joined a transaction the application began).
    session: weakref.ref[Any] | None = None
    #: An INSERT/UPDATE/DELETE on a watched table failed in this transaction.
    failed_write: bool = False


class OrmWatch:
    """Records units of work, rows written, commits and rollbacks of any SQLAlchemy code while installed.

    ``tables``: ``Table.fullname`` values to record (``None``: every table); writes to other tables
    (``alembic_version``, the harness's own) are ignored. Use it as a context manager; entering an
    installed watch again is harmless, and the listeners are gone once the outermost block exits.
    """

    def __init__(self, timeline: Timeline, code: AppCode | None, *, tables: Collection[str] | None = None) -> None:
        self.timeline = timeline
        self.code = code
        self.tables: frozenset[str] | None = frozenset(tables) if tables is not None else None
        #: Errors of the watch's own bookkeeping (the application never sees them): ``handler: Type: message``.
        self.problems: list[str] = []
        self._locate = _Locator(code)
        self._lock = threading.RLock()
        self._depth = 0
        self._listeners: list[tuple[Any, str, Callable[..., Any]]] = []
        self._serial = next(_WATCH_SERIAL)
        #: The key under which a Session's unit token is kept in ``session.info`` (one per watch).
        self.info_key = f"masterplan-harness.orm-unit.{self._serial}"
        self._session_units: weakref.WeakKeyDictionary[Any, _Unit] = weakref.WeakKeyDictionary()
        self._unit_numbers = itertools.count(1)
        self._units: dict[str, _Unit] = {}
        self._txs: weakref.WeakKeyDictionary[Any, _Tx] = weakref.WeakKeyDictionary()
        self._committing: weakref.WeakKeyDictionary[Any, _Tx] = weakref.WeakKeyDictionary()
        self._plans: weakref.WeakKeyDictionary[Any, _Plan | None] = weakref.WeakKeyDictionary()

    # -- installation ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    @property
    def installed(self) -> bool:
        return self._depth > 0

    def install(self) -> None:
        """Register the listeners (once; a nested install only counts)."""
        self._depth += 1
        if self._depth > 1:
            return
        wanted: list[tuple[Any, str, Callable[..., Any]]] = [
            (Engine, "begin", self._guarded(self._on_begin)),
            (Engine, "after_execute", self._guarded(self._on_after_execute)),
            (Engine, "after_cursor_execute", self._guarded(self._on_after_cursor_execute)),
            (Engine, "commit", self._guarded(self._on_commit)),
            (Engine, "rollback", self._guarded(self._on_rollback)),
            (Engine, "savepoint", self._guarded(self._on_savepoint)),
            (Engine, "rollback_savepoint", self._guarded(self._on_rollback_savepoint)),
            (Engine, "release_savepoint", self._guarded(self._on_release_savepoint)),
            (Engine, "handle_error", self._guarded(self._on_handle_error)),
            (Pool, "checkin", self._guarded(self._on_checkin)),
            (Session, "after_transaction_create", self._guarded(self._on_transaction_create)),
            (Session, "after_begin", self._guarded(self._on_session_begin)),
            (Session, "after_commit", self._guarded(self._on_session_commit)),
            (Session, "after_rollback", self._guarded(self._on_session_rollback)),
            (Session, "after_transaction_end", self._guarded(self._on_transaction_end)),
        ]
        try:
            for target, name, listener in wanted:
                event.listen(target, name, listener)
                self._listeners.append((target, name, listener))
            _ASYNC_HANDOVER.acquire()
        except BaseException:
            self._remove_listeners()
            self._depth = 0
            raise

    def uninstall(self) -> None:
        """Remove every listener (when the outermost install ends); commits still unconfirmed are reported."""
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        self._remove_listeners()
        _ASYNC_HANDOVER.release()
        with self._lock:
            self._confirm_commits()

    def _remove_listeners(self) -> None:
        while self._listeners:
            target, name, listener = self._listeners.pop()
            if event.contains(target, name, listener):
                event.remove(target, name, listener)

    # -- queries --------------------------------------------------------------------------------

    def pending(self) -> dict[str, tuple[RowWrite, ...]]:
        """Unit token → rows written and not committed (nor rolled back) right now; units with none are left out.

        Called when the flow has returned, these are the rows it left uncommitted.
        """
        with self._lock:
            self._confirm_commits()
            found = {token: tuple(unit.pending()) for token, unit in self._units.items()}
        return {token: writes for token, writes in found.items() if writes}

    def unit_of(self, session: Any) -> str | None:
        """The token of the unit a Session (or an AsyncSession) is in, as this watch named it."""
        info = getattr(getattr(session, "sync_session", session), "info", {})
        token = info.get(self.info_key)
        return token if isinstance(token, str) else None

    # -- plumbing ---------------------------------------------------------------------------------

    def _guarded(self, handler: Callable[..., None]) -> Callable[..., None]:
        """``handler`` as a listener: its own errors are noted, never raised into the application."""
        name = handler.__name__.removeprefix("_on_")

        def listener(*args: Any, **kwargs: Any) -> None:
            try:
                with self._lock:
                    handler(*args, **kwargs)
            except Exception as exc:
                self._note(name, exc)

        listener.__name__ = handler.__name__
        return listener

    def _note(self, handler: str, exc: Exception) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"{handler}: {type(exc).__name__}: {redact_text(str(exc))[:200]}")
        try:
            from harness.logs import get_logger

            get_logger("harness.observe.orm").debug("orm_watch_failed", handler=handler, error=type(exc).__name__)
        except Exception:  # pragma: no cover - logging must not fail the application either
            pass

    def _where(self) -> CodeLocation | None:
        return self._locate()

    def _error(self, location: CodeLocation | None, exc: BaseException | None = None) -> ExceptionInfo | None:
        exc = exc if exc is not None else _in_flight()
        if exc is None:
            return None
        info = exception_info(exc, self.code)
        # An exception still inside SQLAlchemy (a failed flush) has no application frame in its
        # traceback yet; the application's line is the one that called into SQLAlchemy.
        return dataclasses.replace(info, location=location) if info.location is None else info

    def _open(self, unit: _Unit) -> _Unit:
        """Put ``unit`` on the timeline if it is not there yet."""
        if unit.opened is None:
            unit.opened = self.timeline.add(
                UnitOpened(unit.token, unit.kind, unit.location, unit.database_url, at=unit.at)
            )
            self._units[unit.token] = unit
        return unit

    def _new_unit(self, kind: UnitKind, location: CodeLocation | None, at: float, url: str | None) -> _Unit:
        return _Unit(f"unit-{next(self._unit_numbers)}", kind, location, at, url)

    # -- sessions -------------------------------------------------------------------------------

    def _session_unit(self, session: Any, *, beginning: bool = False) -> _Unit:
        """The Session's current unit; a new one when it has none, or (at a begin) was closed since."""
        unit = self._session_units.get(session)
        current_map = session.identity_map
        # Session.close() (and reset()) replace the identity map: a closed Session used again is a new unit.
        reopened = beginning and unit is not None and (unit.closed or unit.identity_map() is not current_map)
        if unit is None or reopened:
            unit = self._new_unit(
                "session", self._where(), time.perf_counter(), _bind_url(getattr(session, "bind", None))
            )
            unit.session = weakref.ref(session)
            unit.identity_map = weakref.ref(current_map)
            self._session_units[session] = unit
            session.info[self.info_key] = unit.token
        return unit

    def _on_transaction_create(self, session: Any, transaction: Any) -> None:
        if transaction.parent is None:
            unit = self._session_unit(session, beginning=True)
            unit.settled = False

    def _on_session_begin(self, session: Any, transaction: Any, connection: Any) -> None:
        unit = self._session_unit(session)
        if unit.database_url is None:
            unit.database_url = _bind_url(connection)
            if unit.opened is not None and unit.opened.database_url is None:
                unit.opened.database_url = unit.database_url
        if transaction.nested:
            return
        tx = self._tx(connection)
        tx.session = weakref.ref(session)
        if tx.owner is None and _session_owns(transaction, connection):
            tx.owner = unit
            unit.txs.append(tx)

    def _on_session_commit(self, session: Any) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: its rows stay pending in the transaction
        unit = self._open(self._session_unit(session))
        durable: list[RowWrite] = []
        for tx in unit.txs:
            if tx.committing is not None:
                durable.extend(tx.committing)
                tx.committing = None
                connection = tx.connection()
                if connection is not None:
                    self._committing.pop(connection, None)
        self._drop_txs(unit)
        unit.commits += 1
        unit.settled = True
        self.timeline.add(UnitCommitted(unit.token, tuple(durable), self._where(), number=unit.commits))

    def _on_session_rollback(self, session: Any) -> None:
        unit = self._open(self._session_unit(session))
        location = self._where()
        if session.in_nested_transaction():
            discarded, unit.savepoint_discarded = unit.savepoint_discarded, []
            self.timeline.add(
                UnitRolledBack(unit.token, tuple(discarded), location, self._error(location), savepoint=True)
            )
            return
        discarded = unit.savepoint_discarded + unit.pending()
        unit.savepoint_discarded = []
        self._drop_txs(unit)
        unit.settled = True
        self.timeline.add(UnitRolledBack(unit.token, tuple(discarded), location, self._error(location)))

    def _on_transaction_end(self, session: Any, transaction: Any) -> None:
        if transaction.parent is not None:
            return
        unit = self._session_units.get(session)
        if unit is None:
            return
        if not unit.settled:
            uncommitted = unit.savepoint_discarded + unit.pending()
            unit.savepoint_discarded = []
            unit.closed = True
            if uncommitted or unit.opened is not None:
                self._open(unit)
                self.timeline.add(UnitClosed(unit.token, tuple(uncommitted), self._where()))
        self._drop_txs(unit)
        if unit.closed:
            self._units.pop(unit.token, None)

    def _drop_txs(self, unit: _Unit) -> None:
        for tx in unit.txs:
            connection = tx.connection()
            if connection is not None:
                if self._txs.get(connection) is tx:
                    del self._txs[connection]
                if self._committing.get(connection) is tx:
                    del self._committing[connection]
        unit.txs = []

    # -- connections ----------------------------------------------------------------------------

    def _tx(self, connection: Any) -> _Tx:
        """The connection's current transaction (one is made up when its begin was not seen)."""
        tx = self._txs.get(connection)
        if tx is None:
            tx = self._txs[connection] = _Tx(self._where(), time.perf_counter(), weakref.ref(connection))
        return tx

    def _owner(self, tx: _Tx, connection: Any) -> _Unit:
        """The unit a transaction's rows belong to: its Session's, or a connection unit of its own."""
        if tx.owner is None:
            tx.owner = self._new_unit("connection", tx.location, tx.at, _bind_url(connection))
            tx.owner.txs.append(tx)
        return self._open(tx.owner)

    def _on_begin(self, connection: Any) -> None:
        self._confirm_commit(connection)
        self._txs[connection] = _Tx(self._where(), time.perf_counter(), weakref.ref(connection))

    def _on_after_execute(
        self, connection: Any, statement: Any, multiparams: Any, params: Any, options: Any, result: Any
    ) -> None:
        if self._committing:
            self._confirm_commit(connection)
        context = getattr(result, "context", None)
        compiled = getattr(context, "compiled", None)
        if compiled is None:
            return  # exec_driver_sql: seen by after_cursor_execute
        element = compiled.statement
        if getattr(element, "is_dml", False):
            plan = self._plan(compiled, element, context)
            if plan is None:
                return
            tx = self._tx(connection)
            unit = self._owner(tx, connection)
            location = self._where()
            if plan.op is None:
                self.timeline.add(UntrackedWrite(unit.token, plan.sql, (plan.table,), location))
                return
            writes = _rows_written(plan, context, result, statement)
            if not writes:
                return
            tx.writes.extend(writes)
            session = tx.session() if tx.session is not None else None
            via: Literal["flush", "execute"] = "flush" if getattr(session, "_flushing", False) else "execute"
            self.timeline.add(RowsWritten(unit.token, tuple(writes), location, via=via))
        elif isinstance(element, TextClause):
            self._text_write(connection, compiled.string)

    def _on_after_cursor_execute(
        self, connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if getattr(context, "compiled", None) is None and isinstance(statement, str):
            self._text_write(connection, statement)

    def _plan(self, compiled: Any, element: Any, context: Any) -> _Plan | None:
        try:
            return self._plans[compiled]
        except KeyError:
            pass
        table = getattr(element, "table", None)
        op: _Op | None = (
            "insert"
            if getattr(element, "is_insert", False)
            else "update"
            if getattr(element, "is_update", False)
            else "delete"
            if getattr(element, "is_delete", False)
            else None
        )
        plan = None
        watched = table is not None and (self.tables is None or getattr(table, "fullname", None) in self.tables)
        if watched and op is not None and hasattr(table, "fullname"):
            sample = (context.compiled_parameters or [{}])[0]
            plan = _build_plan(compiled, table, op, sample)
        self._plans[compiled] = plan
        return plan

    def _is_watched_write(self, context: Any) -> bool:
        """The statement of an execution context is an INSERT/UPDATE/DELETE (or raw SQL) on a watched table."""
        compiled = getattr(context, "compiled", None)
        if compiled is None:
            statement = getattr(context, "statement", None)
            return isinstance(statement, str) and self._text_tables(statement) is not None
        element = compiled.statement
        if isinstance(element, TextClause):
            return self._text_tables(compiled.string) is not None
        table = getattr(element, "table", None) if getattr(element, "is_dml", False) else None
        return table is not None and (self.tables is None or getattr(table, "fullname", None) in self.tables)

    def _text_tables(self, sql: str) -> tuple[str, ...] | None:
        """The watched tables raw SQL writes to (None: it writes to none of them)."""
        named = _text_write_tables(sql)
        if named is None:
            return None
        if self.tables is None:
            return tuple(named)
        tables = tuple(
            table
            for table in sorted(self.tables)
            if any(table == name or ("." not in name and table.rsplit(".", 1)[-1] == name) for name in named)
        )
        return tables or None

    def _text_write(self, connection: Any, sql: str) -> None:
        tables = self._text_tables(sql)
        if tables is None:
            return
        unit = self._owner(self._tx(connection), connection)
        self.timeline.add(UntrackedWrite(unit.token, _sql_text(sql), tables, self._where()))

    def _on_commit(self, connection: Any) -> None:
        tx = self._txs.pop(connection, None)
        if tx is None:
            return
        tx.committing, tx.writes, tx.savepoints = tx.writes, [], []
        tx.commit_location, tx.commit_at = self._where(), time.perf_counter()
        if tx.owner is None:
            return  # nothing written in it
        try:
            tx.dbapi_id = id(connection.connection.dbapi_connection)
        except Exception:
            tx.dbapi_id = None
        self._committing[connection] = tx

    def _on_handle_error(self, context: Any) -> None:
        connection = getattr(context, "connection", None)
        tx = self._committing.pop(connection, None) if connection is not None else None
        if tx is None or tx.committing is None:
            if connection is not None and self._is_watched_write(getattr(context, "execution_context", None)):
                self._tx(connection).failed_write = True
            return
        # The COMMIT failed: PostgreSQL has ended the transaction, nothing of it is durable.
        failed, tx.committing = tx.committing, None
        owner = tx.owner
        if owner is None:
            return
        if owner.kind == "session":
            tx.writes = failed + tx.writes  # the Session's rollback or close reports them
            return
        location = self._where()
        error = context.sqlalchemy_exception or context.original_exception
        owner.txs = [other for other in owner.txs if other is not tx]
        self._units.pop(owner.token, None)
        self.timeline.add(
            UnitRolledBack(owner.token, tuple(failed + tx.writes), location, self._error(location, error))
        )

    def _confirm_commit(self, connection: Any) -> None:
        tx = self._committing.pop(connection, None)
        if tx is not None:
            self._committed(tx)

    def _confirm_commits(self) -> None:
        for connection, tx in list(self._committing.items()):
            if tx.owner is not None and tx.owner.kind == "connection":
                del self._committing[connection]
                self._committed(tx)

    def _committed(self, tx: _Tx) -> None:
        owner = tx.owner
        if owner is None or owner.kind != "connection" or tx.committing is None:
            return
        durable, tx.committing = tx.committing, None
        owner.txs = [other for other in owner.txs if other is not tx]
        owner.commits += 1
        self._units.pop(owner.token, None)
        self.timeline.add(
            UnitCommitted(owner.token, tuple(durable), tx.commit_location, number=owner.commits, at=tx.commit_at)
        )

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        if not self._committing or dbapi_connection is None:
            return
        for connection, tx in list(self._committing.items()):
            if tx.dbapi_id == id(dbapi_connection):
                del self._committing[connection]
                self._committed(tx)

    def _on_rollback(self, connection: Any) -> None:
        tx = self._txs.pop(connection, None)
        failed = self._committing.pop(connection, None)
        if tx is None:
            tx = failed
        if tx is None:
            return
        closing = _closing_connection()
        if tx.owner is None:
            # Nothing recorded in it; still a fact when a write to the application's tables failed in it,
            # or when the application rolled it back while handling an exception (a scope that may swallow it).
            if not (tx.failed_write or (not closing and _in_flight() is not None)):
                return
            self._owner(tx, connection)
        owner = tx.owner
        assert owner is not None
        if owner.kind == "session":
            return  # the Session's after_rollback (or close) reports what it discarded
        discarded = (*(tx.committing or ()), *tx.writes)
        tx.committing, tx.writes = None, []
        owner.txs = [other for other in owner.txs if other is not tx]
        self._units.pop(owner.token, None)
        location = self._where()
        if closing:
            self.timeline.add(UnitClosed(owner.token, discarded, location))
        else:
            self.timeline.add(UnitRolledBack(owner.token, discarded, location, self._error(location)))

    def _on_savepoint(self, connection: Any, name: str | None) -> None:
        tx = self._tx(connection)
        if name is None:
            # SQLAlchemy names it after this event: sa_savepoint_<n>, n counted per connection.
            seq = getattr(connection, "_Connection__savepoint_seq", None)
            name = f"sa_savepoint_{seq + 1}" if isinstance(seq, int) else None
        tx.savepoints.append((name, len(tx.writes)))

    def _savepoint_index(self, tx: _Tx, name: str | None) -> int | None:
        for index in range(len(tx.savepoints) - 1, -1, -1):
            if tx.savepoints[index][0] == name:
                return index
        return len(tx.savepoints) - 1 if tx.savepoints else None

    def _on_rollback_savepoint(self, connection: Any, name: str, context: Any) -> None:
        tx = self._txs.get(connection)
        if tx is None:
            return
        index = self._savepoint_index(tx, name)
        if index is None:
            return
        mark = tx.savepoints[index][1]
        discarded = tx.writes[mark:]
        del tx.writes[mark:]
        del tx.savepoints[index:]
        owner = tx.owner
        if owner is None:
            return
        if owner.kind == "session":
            owner.savepoint_discarded.extend(discarded)
            return
        location = self._where()
        self.timeline.add(
            UnitRolledBack(owner.token, tuple(discarded), location, self._error(location), savepoint=True)
        )

    def _on_release_savepoint(self, connection: Any, name: str, context: Any) -> None:
        tx = self._txs.get(connection)
        if tx is None:
            return
        index = self._savepoint_index(tx, name)
        if index is not None:
            del tx.savepoints[index:]


_WATCH_SERIAL = itertools.count(1)


def _bind_url(bind: Any) -> str | None:
    """The database a bind (an Engine or a Connection) talks to, password removed."""
    url = getattr(getattr(bind, "engine", None), "url", None)
    return _shown_url(url) if url is not None else None


@functools.lru_cache(maxsize=64)
def _shown_url(url: Any) -> str:
    try:
        return redact_url(url.render_as_string(hide_password=False))
    except Exception:
        return redact_text(str(url))


def _session_owns(transaction: Any, connection: Any) -> bool:
    """The Session began the connection's transaction itself (it did not join one the application began)."""
    entry = getattr(transaction, "_connections", {}).get(connection)
    if not isinstance(entry, tuple) or len(entry) < 3:
        return True
    # SessionTransaction._connections: connection -> (connection, transaction, should_commit, autoclose)
    _connection, used, should_commit = entry[:3]
    return bool(should_commit) and used is connection.get_transaction()


def _closing_connection() -> bool:
    """The engine's rollback event fired because a Connection (or its Transaction) is being closed."""
    frame = sys._getframe(3)
    for _ in range(12):
        if frame is None:
            return False
        name = frame.f_code.co_name
        if name == "_do_close":
            return True
        if name == "_do_rollback":
            return False
        frame = frame.f_back
    return False
