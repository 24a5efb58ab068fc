"""Stage persist: what the flow committed is really there, for everyone, as it was generated.

Every row the flow committed (seen by the database watcher, :mod:`harness.observe.orm`) is
read back by primary key through the harness's *own* connection — never the flow's — and
compared column by column with what the flow wrote, so a write that was never committed,
went to another database or was changed on the way is caught. The documents the LLM
produced are then found among those rows (:mod:`probes.documents`) and compared field by
field: the plan's children where they belong, the dependency graph rebuilt. Units of work
are judged too: one commit each, nothing flushed and left uncommitted, a failed save that
reaches its caller. Nothing here knows the application's table names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.config import TIMEOUTS, Timeouts
from harness.redaction import redact_url
from probes.core import Check, Finding, Level, Stage
from probes.db import probe_engine
from probes.dberrors import DBErrorKind, describe_db_error
from probes.documents import RowRef, Saved, match_discovery, match_plan, same, shown
from probes.registry import Scope, probe

__all__ = [
    "CANARY_PREFIX",
    "CHECKS",
    "PersistState",
    "Readback",
    "check_detached",
    "classify",
    "prepare",
    "remove_rows",
]

PERSIST001 = Check(
    "PERSIST001",
    Stage.PERSIST,
    Level.ERROR,
    "committed rows visible to a new connection",
    "Rows the flow committed cannot be seen by another connection: the flow writes to a different database than "
    "the one it was given, or something removed them after the commit.",
)
PERSIST002 = Check(
    "PERSIST002",
    Stage.PERSIST,
    Level.ERROR,
    "saved fields match what was generated and written",
    "The saved rows differ from what the LLM produced (or from what the flow wrote) in the fields listed: check the "
    "mapping in the save function and the request's identity.",
)
PERSIST003 = Check(
    "PERSIST003",
    Stage.PERSIST,
    Level.ERROR,
    "all phases, milestones and tasks saved where they belong",
    "Some children are missing, extra or attached to the wrong parent: save the plan and all its children in one "
    "unit of work, linking each to the row made for its parent.",
)
PERSIST004 = Check(
    "PERSIST004",
    Stage.PERSIST,
    Level.ERROR,
    "task dependencies saved",
    "The dependency rows do not rebuild the plan's graph: map task numbers to saved task ids before linking.",
)
PERSIST005 = Check(
    "PERSIST005",
    Stage.PERSIST,
    Level.ERROR,
    "returned object usable after its session closed",
    "Load what you need before the session closes, or create sessions with expire_on_commit=False.",
)
PERSIST006 = Check(
    "PERSIST006",
    Stage.PERSIST,
    Level.ERROR,
    "save committed without a database error",
    "The database refused the save; the evidence has its SQLSTATE and message.",
)
PERSIST007 = Check(
    "PERSIST007",
    Stage.PERSIST,
    Level.ERROR,
    "plan marked complete",
    "The plan row is not in a complete status although the flow returned: generation did not finish, or the status "
    "was never switched when it did.",
)
PERSIST008 = Check(
    "PERSIST008",
    Stage.PERSIST,
    Level.ERROR,
    "no canary row left in the database after the run",
    "Canary rows remain after cleanup (this run's, or an earlier run's that could not be removed): delete the rows "
    "named in the evidence (their session id starts with 'harness-canary-') with the rows hanging from them, and "
    "check the role's DELETE privilege; a canary another session's rows hang from is left for you to untangle.",
)
PERSIST009 = Check(
    "PERSIST009",
    Stage.PERSIST,
    Level.WARNING,
    "one commit per unit of work",
    "A unit of work committed more than once (the seed's double commit: db.commit() inside a context manager that "
    "commits again): remove the inner commit so a failure cannot leave half a unit saved.",
)
PERSIST010 = Check(
    "PERSIST010",
    Stage.PERSIST,
    Level.ERROR,
    "unfinished plan not marked complete",
    "A plan whose batches are still arriving must stay 'generating': switch it to 'draft' only after the last "
    "batch is saved and the whole plan validated.",
)
PERSIST011 = Check(
    "PERSIST011",
    Stage.PERSIST,
    Level.ERROR,
    "a failed save reaches the caller",
    "A save failed inside your unit of work and the exception never reached the caller: the session scope rolled "
    "back and went on as if the save had worked. Re-raise after the rollback.",
)
PERSIST012 = Check(
    "PERSIST012",
    Stage.PERSIST,
    Level.ERROR,
    "every flushed row committed",
    "Rows were flushed and the unit of work ended without a commit, so they were thrown away: commit the session "
    "(or let the session scope commit) before returning.",
)
PERSIST013 = Check(
    "PERSIST013",
    Stage.PERSIST,
    Level.ERROR,
    "every generated document saved",
    "The flow returned, but no saved row holds a document the LLM produced: the save never ran, ran on another "
    "session, or was rolled back and not reported.",
)
PERSIST014 = Check(
    "PERSIST014",
    Stage.PERSIST,
    Level.WARNING,
    "no canary rows left by an earlier run",
    "An earlier diagnose run was killed before it could clean up (kill -9, power loss, a lost container) and left "
    "the canary rows named in the evidence; this run removed them. End diagnose with SIGTERM or Ctrl-C, which "
    "clean up, and give it the few seconds that takes.",
)
PERSIST101 = Check(
    "PERSIST101",
    Stage.PERSIST,
    Level.ERROR,
    "application code saved without error",
    "Your code raised while saving or loading rows (not a database error): fix the line named in the evidence.",
)
PERSIST900 = Check(
    "PERSIST900",
    Stage.PERSIST,
    Level.ERROR,
    "save finished as expected",
    "An unexpected error while saving; the evidence names the exception.",
)


CHECKS = (
    PERSIST001,
    PERSIST002,
    PERSIST003,
    PERSIST004,
    PERSIST005,
    PERSIST006,
    PERSIST007,
    PERSIST008,
    PERSIST009,
    PERSIST010,
    PERSIST011,
    PERSIST012,
    PERSIST013,
    PERSIST014,
    PERSIST101,
    PERSIST900,
)

#: Session ids of the requests diagnose runs against a real database start with this.
CANARY_PREFIX = "harness-canary-"
#: Statuses that say a plan is still under way or failed (case-blind, enum names or values).
_UNFINISHED = frozenset({"generating", "pending", "in_progress", "queued", "running", "failed", "error", "started"})
#: Columns that carry who asked and in which chat.
_IDENTITY_COLUMNS = ("user_id", "session_id")
#: Rows read back per query.
_CHUNK = 500


class Readback:
    """The probes' own connection to the database under diagnosis, for the readbacks of one run.

    Never the flow's: it is opened from the URL by the probe, in autocommit, so every query
    sees exactly what is committed at that moment — a write that lives only in the flow's
    transaction, or in another database, is invisible to it. One connection serves every
    readback of a run; a failed query drops it and the next one reconnects once.
    """

    def __init__(self, database_url: str, timeouts: Timeouts = TIMEOUTS) -> None:
        self.url = database_url
        self._timeouts = timeouts
        self._engine: Any = None
        self._connection: Any = None

    def execute(self, statement: Any) -> list[Any]:
        """The rows of one statement (a SQLAlchemy construct)."""
        reused = self._connection is not None
        if not reused:
            self._open()
        try:
            return list(self._connection.execute(statement))
        except Exception:
            self.close()
            if not reused:
                raise
        # A connection kept from an earlier readback may have died since (a server restart):
        # the statement only reads, so it is asked once more on a fresh connection.
        self._open()
        try:
            return list(self._connection.execute(statement))
        except Exception:
            self.close()
            raise

    def rows_by_key(self, table: Any, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Full rows of ``table`` (an application ``Table``) for these primary keys, as its column types read them."""
        pk = list(table.primary_key.columns)
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        for start in range(0, len(keys), _CHUNK):
            for row in self.execute(_select_by_keys(table, pk, keys[start : start + _CHUNK])):
                values = {column.name: row._mapping[column] for column in table.columns}
                found[tuple(values[column.name] for column in pk)] = values
        return found

    def _open(self) -> None:
        self._engine = probe_engine(self.url, self._timeouts)
        self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def close(self) -> None:
        """Close the connection (the next query opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _select_by_keys(table: Any, pk: list[Any], keys: list[tuple[Any, ...]]) -> Any:
    """``SELECT`` the rows of ``table`` with these primary keys.

    Keys of plain types travel as one array per key column (``= ANY(...)``, or a join on
    ``unnest(...)`` for a composite key): the statement's text is the same for any number of keys,
    so it is compiled and planned once, where ``IN`` with a parameter per key — 468 of them for a
    plan's dependency edges — cost ~10 ms a table to render, parse and plan. Other key types keep ``IN``.
    """
    from sqlalchemy import Enum, and_, any_, bindparam, func, select, tuple_
    from sqlalchemy.dialects.postgresql import ARRAY

    if not all(isinstance(column.type, _ARRAY_KEY_TYPES) and not isinstance(column.type, Enum) for column in pk):
        where = pk[0].in_([key[0] for key in keys]) if len(pk) == 1 else tuple_(*pk).in_(keys)
        return select(table).where(where)
    arrays = [
        bindparam(f"keys_{index}", [key[index] for key in keys], type_=ARRAY(column.type))
        for index, column in enumerate(pk)
    ]
    if len(pk) == 1:
        return select(table).where(pk[0] == any_(arrays[0]))
    names = [f"key_{index}" for index in range(len(pk))]
    wanted = func.unnest(*arrays).table_valued(*names).render_derived(name="wanted_keys")
    # DISTINCT: a key asked for twice must not read its row twice.
    wanted = select(*wanted.c).distinct().subquery("wanted_keys")
    return select(table).join(wanted, and_(*(column == wanted.c[name] for column, name in zip(pk, names, strict=True))))


def _array_key_types() -> tuple[type, ...]:
    from sqlalchemy import types

    return (types.Integer, types.String, types.Uuid, types.Date, types.DateTime)


_ARRAY_KEY_TYPES = _array_key_types()


# -- what was committed, read back and matched ------------------------------------------------


@dataclass
class RowHistory:
    """One row the flow committed: what it wrote (merged over its commits) and the commit that wrote it last."""

    ref: RowRef
    written: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False
    #: ``seq`` of the commit that last wrote it.
    last_commit: int = -1
    #: Columns an UPDATE without a known key may have changed after the flow wrote them.
    unsure: set[str] = field(default_factory=set)


@dataclass
class DocumentView:
    """A document the LLM produced, and the saved rows that hold it."""

    kind: str
    point: str
    raw: Any
    #: ``seq`` of the answer (or, for a batched plan, of its last batch).
    answered_seq: int
    ref: RowRef | None = None
    mismatches: list[Any] = field(default_factory=list)
    plan: Any = None
    #: The parsed tasks of the plan (contract models), for the dependency graph.
    tasks: list[Any] = field(default_factory=list)


@dataclass
class PersistState:
    """What the persist probes share for one run: the committed rows, read back, and the documents matched."""

    histories: dict[RowRef, RowHistory] = field(default_factory=dict)
    saved: Saved | None = None
    #: Row → the point of the document it holds (``discovery``, ``masterplan.batch-2``...).
    points: dict[RowRef, str] = field(default_factory=dict)
    documents: list[DocumentView] = field(default_factory=list)
    #: Why rows could not be read back (a database error), if they could not.
    readback_error: Finding | None = None
    #: Tables whose rows were written without a known key (``table`` → columns).
    unkeyed: dict[str, set[str]] = field(default_factory=dict)


def _tables(metadata: Any) -> dict[str, Any]:
    return {table.fullname: table for table in metadata.sorted_tables} if metadata is not None else {}


def _histories(timeline: Any) -> tuple[dict[RowRef, RowHistory], dict[str, set[str]]]:
    from harness.observe.timeline import UnitCommitted

    histories: dict[RowRef, RowHistory] = {}
    unkeyed: dict[str, set[str]] = {}
    for commit in timeline.of(UnitCommitted):
        for write in commit.writes:
            if write.key is None:
                columns = unkeyed.setdefault(write.table, set())
                columns.update(write.values)
                for history in histories.values():
                    if history.ref.table == write.table:
                        history.unsure.update(write.values or history.written)
                continue
            ref = RowRef(write.table, tuple(write.key))
            history = histories.setdefault(ref, RowHistory(ref))
            if write.op == "delete":
                history.deleted = True
            else:
                history.deleted = False
                history.written.update(write.values)
                history.unsure.difference_update(write.values)
            history.last_commit = commit.seq
    return histories, unkeyed


def prepare(ctx: Any) -> PersistState:
    """Read back every row the flow committed and find the documents among them (once per run)."""
    state: PersistState | None = ctx.state.get("persist")
    if state is not None:
        return state
    state = PersistState()
    ctx.state["persist"] = state
    tables = _tables(ctx.target.metadata if ctx.target is not None else None)
    state.histories, state.unkeyed = _histories(ctx.timeline)
    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    wanted: dict[str, list[tuple[Any, ...]]] = {}
    for ref, history in state.histories.items():
        if not history.deleted and ref.table in tables:
            wanted.setdefault(ref.table, []).append(ref.key)
    if wanted and ctx.reader is not None:
        try:
            for name, keys in wanted.items():
                rows[name] = ctx.reader.rows_by_key(tables[name], keys)
        except Exception as exc:  # the database itself failed: one finding says so, rows stay unjudged
            state.readback_error = classify(exc, "persist")
    state.saved = Saved(rows, tables)
    _match_documents(ctx, state)
    return state


def _match_documents(ctx: Any, state: PersistState) -> None:
    saved = state.saved
    assert saved is not None
    answers = [a for a in ctx.answers if a.raw is not None and a.document is not None]
    discovery_ref = None
    for answer in (a for a in answers if a.view.kind == "discovery"):
        ref, mismatches = match_discovery(answer.raw, saved)
        discovery_ref = discovery_ref or ref
        state.documents.append(DocumentView("discovery", answer.view.point, answer.raw, answer.view.exchange.seq, ref, mismatches))
        if ref is not None:
            state.points[ref] = answer.view.point
    plan_sources: list[tuple[Any, list[Any], list[Any], int, dict[int, str], dict[int, tuple[int, int]] | None]] = []
    for answer in (a for a in answers if a.view.kind == "masterplan"):
        raw_tasks = [t for p in answer.raw.get("phases", []) for m in p.get("milestones", []) for t in m.get("tasks", [])]
        tasks = [t for _, _, t in _iter_tasks(answer.document)]
        plan_sources.append((answer.raw, raw_tasks, tasks, answer.view.exchange.seq, {}, None))
    skeletons = [a for a in answers if a.view.kind == "skeleton"]
    if skeletons:
        skeleton = skeletons[-1]
        raw_tasks, tasks, batch_of = [], [], {}
        last_seq = skeleton.view.exchange.seq
        for answer in (a for a in answers if a.view.kind == "batch"):
            raw_tasks += [t for t in answer.raw.get("tasks", []) if isinstance(t, dict)]
            tasks += list(answer.document)
            for task in answer.document:
                batch_of[task.task_number] = answer.view.point
            last_seq = answer.view.exchange.seq
        from harness.contract import skeleton_slots

        owners = {
            number: (slot.phase_index, slot.milestone_index)
            for slot in skeleton_slots(skeleton.document)
            for number in range(slot.first, slot.last + 1)
        }
        plan_sources.append((skeleton.raw, raw_tasks, tasks, last_seq, batch_of, owners))
    for raw, raw_tasks, tasks, seq, batch_of, owners in plan_sources:
        batched = owners is not None
        match = match_plan(raw, raw_tasks, saved, exclude=discovery_ref, owners=owners)
        document = DocumentView("plan", "masterplan", raw, seq, match.plan, match.mismatches, match, tasks)
        state.documents.append(document)
        if match.plan is None:
            continue
        state.points[match.plan] = "masterplan"
        children_point = "masterplan.skeleton" if batched else "masterplan"
        for table in (match.phase_table, match.milestone_table):
            for ref in saved.refs(table) if table else []:
                state.points.setdefault(ref, children_point)
        for number, ref in match.tasks.items():
            state.points[ref] = batch_of.get(number, "masterplan")


def _iter_tasks(plan: Any) -> list[tuple[Any, Any, Any]]:
    from harness.contract import iter_tasks

    return list(iter_tasks(plan))


def commit_point(state: PersistState, writes: Any) -> str:
    """The point of a commit: the document its new rows hold, else any of its rows (``persist`` when they hold none).

    New rows first: a save that adds a skeleton's phases also updates the plan row, and is the skeleton's save.
    """
    for write in sorted(writes, key=lambda write: write.op != "insert"):
        if write.key is not None:
            point = state.points.get(RowRef(write.table, tuple(write.key)))
            if point is not None:
                return point
    return "persist"


def _looks_unfinished(value: Any) -> bool:
    text = str(getattr(value, "value", getattr(value, "name", value))).lower()
    name = str(getattr(value, "name", value)).lower()
    return text in _UNFINISHED or name in _UNFINISHED


# -- probes: each commit -----------------------------------------------------------------------


@probe(Stage.PERSIST, scope=Scope.COMMIT, emits=(PERSIST001, PERSIST002), independent=True)
def committed_rows(ctx: Any, commit: Any) -> list[Finding]:
    """Every row this commit made durable is there for a new connection, as written, under the request's identity."""
    state = prepare(ctx)
    if state.readback_error is not None:
        return [state.readback_error]
    saved = state.saved
    assert saved is not None
    point = commit_point(state, commit.writes)
    mine = [h for h in state.histories.values() if h.last_commit == commit.seq and h.ref.table in saved.tables]
    missing = [h.ref for h in mine if not h.deleted and h.ref.key not in saved.rows.get(h.ref.table, {})]
    findings: list[Finding] = []
    where = f" (committed at {commit.location})" if commit.location else ""
    if missing:
        tables = sorted({ref.table for ref in missing})
        findings.append(
            PERSIST001.finding(
                f"{len(missing)} committed row(s) of {', '.join(tables)} are not visible through a new connection"
                f"{where}.",
                point=point,
                tables=tables,
                rows=[str(ref) for ref in missing[:20]],
                target=redact_url(ctx.reader.url) if ctx.reader is not None else None,
                committed_at=str(commit.location) if commit.location else None,
            )
        )
    differing = []
    for history in mine:
        row = saved.rows.get(history.ref.table, {}).get(history.ref.key)
        if row is None or history.deleted:
            continue
        for column, value in history.written.items():
            if column in history.unsure or column not in row or _is_sql(value):
                continue
            if not same(row[column], value):
                differing.append({"row": str(history.ref), "column": column, "written": shown(value), "read": shown(row[column])})
        for column in _IDENTITY_COLUMNS:
            expected = getattr(ctx.request, column, None)
            if column in row and expected is not None and row[column] is not None and str(row[column]) != str(expected):
                differing.append(
                    {"row": str(history.ref), "column": column, "read": shown(row[column]), "request": shown(expected)}
                )
    if differing:
        first = differing[0]
        findings.append(
            PERSIST002.finding(
                f"{len(differing)} saved value(s) differ from what was written or asked; first: {first['row']}.{first['column']}.",
                point=point,
                values=differing[:20],
                committed_at=str(commit.location) if commit.location else None,
            )
        )
    return findings


def _is_sql(value: Any) -> bool:
    return type(value).__module__.startswith("sqlalchemy")


@probe(Stage.PERSIST, scope=Scope.COMMIT, emits=(PERSIST009,))
def one_commit_per_unit(ctx: Any, commit: Any) -> list[Finding]:
    """A unit of work does not commit again with nothing new: the seed's ``db.commit()`` inside a committing scope."""
    from harness.observe.timeline import UnitCommitted, UnitOpened

    if commit.number < 2 or commit.writes:
        return []
    earlier = [c for c in ctx.timeline.of(UnitCommitted) if c.unit == commit.unit and c.seq < commit.seq]
    opened = next((u for u in ctx.timeline.of(UnitOpened) if u.unit == commit.unit), None)
    inner = earlier[-1] if earlier else None
    state = prepare(ctx)
    point = commit_point(state, inner.writes) if inner is not None else "persist"
    return [
        PERSIST009.finding(
            f"The unit of work opened at {opened.location if opened else 'an unknown line'} committed "
            f"{commit.number} times: first at {inner.location if inner else '?'}, again at {commit.location}.",
            point=point,
            unit=commit.unit,
            opened_at=str(opened.location) if opened and opened.location else None,
            inner_commit_at=str(inner.location) if inner and inner.location else None,
            outer_commit_at=str(commit.location) if commit.location else None,
            commits=commit.number,
        )
    ]


@probe(Stage.PERSIST, scope=Scope.COMMIT, emits=(PERSIST010,))
def unfinished_plan_stays_unfinished(ctx: Any, commit: Any) -> list[Finding]:
    """While tasks are still arriving, the plan row's committed status does not claim it is complete."""
    state = prepare(ctx)
    plan_doc = next((d for d in state.documents if d.kind == "plan" and d.ref is not None), None)
    if plan_doc is None or plan_doc.plan.task_table is None:
        return []
    task_table = plan_doc.plan.task_table
    from harness.observe.timeline import UnitCommitted

    task_commits = [c for c in ctx.timeline.of(UnitCommitted) if any(w.table == task_table for w in c.writes)]
    if not task_commits or commit.seq >= task_commits[-1].seq:
        return []  # the last tasks are in (or none came): the plan may be complete from here on
    status = _status_as_of(ctx, plan_doc.ref, commit.seq)
    if status is None or _looks_unfinished(status):
        return []
    if not _writes_status(commit, plan_doc.ref):
        # One bug, one finding: a premature status an earlier commit wrote was judged at that commit.
        from probes.core import NotApplicable

        raise NotApplicable("this commit leaves the plan's status as an earlier commit wrote it, judged there")
    return [
        PERSIST010.finding(
            f"The plan was committed as {shown(status)!r} while its tasks were still arriving.",
            point=commit_point(state, commit.writes),
            status=shown(status),
            committed_at=str(commit.location) if commit.location else None,
        )
    ]


def _writes_status(commit: Any, ref: RowRef) -> bool:
    return any(
        write.table == ref.table and write.key is not None and tuple(write.key) == ref.key and "status" in write.values
        for write in commit.writes
    )


def _status_as_of(ctx: Any, ref: RowRef, seq: int) -> Any:
    from harness.observe.timeline import UnitCommitted

    status = None
    for commit in ctx.timeline.of(UnitCommitted):
        if commit.seq > seq:
            break
        for write in commit.writes:
            if write.table == ref.table and write.key is not None and tuple(write.key) == ref.key and "status" in write.values:
                status = write.values["status"]
    return status


# -- probes: each document --------------------------------------------------------------------


def _flow_failed(ctx: Any) -> bool:
    ended = ctx.timeline.ended()
    return ended is not None and ended.error is not None


@probe(Stage.PERSIST, scope=Scope.DOCUMENT, emits=(PERSIST002,))
def document_fields(ctx: Any, document: DocumentView) -> list[Finding]:
    """The saved row that holds a document the LLM produced holds it field for field."""
    state = prepare(ctx)
    if state.readback_error is not None or document.ref is None or not document.mismatches:
        return []
    first = document.mismatches[0]
    return [
        PERSIST002.finding(
            f"The saved {document.kind} differs from the generated one in {len(document.mismatches)} field(s); "
            f"first: {first.where} {first.field} (column {first.column}).",
            point=document.point,
            row=str(document.ref),
            fields=[m.to_dict() for m in document.mismatches[:20]],
        )
    ]


def _flow_failed_or_unread(ctx: Any) -> str | None:
    if _flow_failed(ctx):
        return "the flow failed: what it did not save is explained by that failure"
    if prepare(ctx).readback_error is not None:
        return "the saved rows could not be read back"
    return None


@probe(Stage.PERSIST, scope=Scope.WRITES, emits=(PERSIST013,), applies=lambda ctx: _flow_failed_or_unread(ctx))
def documents_saved(ctx: Any) -> list[Finding]:
    """Once the flow returned, every document the LLM produced is held by a row it committed."""
    state = prepare(ctx)
    return [
        PERSIST013.finding(
            f"The flow returned, but no row it committed holds the {document.kind} the LLM produced at "
            f"{document.point}.",
            point=document.point,
            document=document.kind,
            identified_by=shown(document.raw.get("domain") or document.raw.get("project_name")),
            rows_committed=len(state.histories),
        )
        for document in state.documents
        if document.ref is None
    ]


def _plan_only(ctx: Any, document: DocumentView) -> str | None:
    if document.kind != "plan":
        return "not a plan"
    if document.ref is None:
        return "no saved row holds the plan"
    return None


@probe(Stage.PERSIST, scope=Scope.DOCUMENT, emits=(PERSIST003, PERSIST004), independent=True, kinds=("plan",), applies=_plan_only)
def plan_children(ctx: Any, document: DocumentView) -> list[Finding]:
    """Every phase, milestone and task saved under the row made for its parent; the dependency graph rebuilt."""
    match = document.plan
    findings: list[Finding] = []
    if match.missing or match.extra or match.misplaced:
        if _flow_failed(ctx) and not match.misplaced and not match.extra:
            pass  # a failed flow stopped before saving everything; its failure says why
        else:
            findings.append(
                PERSIST003.finding(
                    f"Saved children differ from the plan: {len(match.missing)} missing, {len(match.extra)} extra, "
                    f"{len(match.misplaced)} attached to the wrong parent.",
                    point=document.point,
                    missing=[f"{what} {ident}" for what, ident in match.missing[:20]],
                    extra=[str(ref) for ref in match.extra[:20]],
                    misplaced=[
                        {"child": f"{what} {ident}", "expected": expected, "saved_under": actual}
                        for what, ident, expected, actual in match.misplaced[:20]
                    ],
                    tables={"phases": match.phase_table, "milestones": match.milestone_table, "tasks": match.task_table},
                )
            )
    if match.edges is not None and match.tasks:
        saved_edges = match.edges
        numbers = set(match.tasks)
        generated = Counter(
            (task.task_number, dep) for task in document.tasks if task.task_number in numbers for dep in set(task.depends_on)
        )
        if saved_edges != generated:
            missing = sorted((generated - saved_edges).elements())
            extra = sorted((saved_edges - generated).elements())
            findings.append(
                PERSIST004.finding(
                    f"The saved dependency graph has {len(missing)} missing and {len(extra)} extra edge(s).",
                    point=document.point,
                    missing=[list(edge) for edge in missing[:20]],
                    extra=[list(edge) for edge in extra[:20]],
                    stored_in=match.edges_from,
                )
            )
    return findings


@probe(Stage.PERSIST, scope=Scope.WRITES, emits=(PERSIST007,), applies=lambda ctx: _flow_failed_or_unread(ctx))
def plan_complete(ctx: Any) -> list[Finding]:
    """A plan the flow returned with is not left in a status that says it is still under way."""
    state = prepare(ctx)
    findings = []
    for document in state.documents:
        if document.kind != "plan" or document.ref is None or state.saved is None:
            continue
        row = state.saved.row(document.ref)
        status = row.get("status")
        if status is not None and _looks_unfinished(status):
            findings.append(
                PERSIST007.finding(
                    f"The flow returned, but the plan is in status {shown(status)!r}.",
                    point=document.point,
                    row=str(document.ref),
                    status=shown(status),
                    error_message=shown(row.get("error_message")) if row.get("error_message") else None,
                )
            )
    return findings


# -- probes: the run as a whole ---------------------------------------------------------------


@probe(Stage.PERSIST, scope=Scope.UNIT, emits=(PERSIST012,))
def flushed_rows_committed(ctx: Any, unit: Any) -> list[Finding]:
    """A unit of work that flushed rows did not end without committing them."""
    rows = list(unit.uncommitted)
    if not rows:
        return []
    state = prepare(ctx)
    tables = sorted({write.table for write in rows})
    return [
        PERSIST012.finding(
            f"{len(rows)} row(s) of {', '.join(tables)} were flushed and never committed; the unit of work "
            f"{'ended' if unit.location else 'was left open'} at {unit.location or 'the end of the flow'}.",
            point=commit_point(state, rows) if state.points else "persist",
            tables=tables,
            unit=unit.unit,
            ended_at=str(unit.location) if unit.location else None,
            rows=[f"{w.table}{list(w.key) if w.key else ''}" for w in rows[:20]],
        )
    ]


def _swallowed_saves(ctx: Any) -> list[Any]:
    """Rollbacks of a failed save whose exception never reached the flow's caller and that nothing made good.

    A retry runs the same unit of work again — a unit opened at the same line of the
    application — and commits it; a scope that swallows the failure goes on without doing so,
    and the exception is nowhere in what the flow raised. (A save swallowed and followed by an
    unrelated save from the same line looks like a retry from outside: the provoked run of a
    replay is what catches that one.)
    """
    from harness.observe.timeline import UnitCommitted, UnitOpened, UnitRolledBack

    ended = ctx.timeline.ended()
    chain: list[BaseException] = []
    current = ended.error.exception if ended is not None and ended.error is not None else None
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    opened_at = {unit.unit: unit.location for unit in ctx.timeline.of(UnitOpened)}
    commits = [c for c in ctx.timeline.of(UnitCommitted) if c.writes]
    found = []
    for rollback in ctx.timeline.of(UnitRolledBack):
        error = rollback.error
        if getattr(rollback, "savepoint", False) or error is None or error.exception is None:
            continue
        if describe_db_error(error.exception) is None:
            continue
        if any(error.exception is exc for exc in chain):
            continue  # it reached the caller
        where = opened_at.get(rollback.unit)
        if any(c.seq > rollback.seq and where is not None and opened_at.get(c.unit) == where for c in commits):
            continue  # the same unit of work ran again and committed: a retry made it good
        found.append(rollback)
    return found


def _nothing_to_judge_swallowing(ctx: Any) -> str | None:
    provocation = ctx.state.get("provocation")
    if isinstance(provocation, ProvocationLike) or _swallowed_saves(ctx):
        return None
    reason = provocation if isinstance(provocation, str) else "no failure was provoked in this run"
    return f"{reason}, and no save failed in it"


class ProvocationLike:
    """The base of what the runner's provoked run reports (``harness.runner.ProvocationResult``)."""


@probe(Stage.PERSIST, scope=Scope.WRITES, emits=(PERSIST011,), applies=lambda ctx: _nothing_to_judge_swallowing(ctx))
def failed_save_reaches_caller(ctx: Any) -> list[Finding]:
    """A save that failed inside the application's own unit of work ends its flow with that failure.

    Where answers are replayed, a failure is provoked in a second run to find out; otherwise a
    save that failed in this run and was neither re-raised nor made good is the evidence.
    """
    from harness.observe.faults import stopped_at

    result = ctx.state.get("provocation")
    if isinstance(result, ProvocationLike):
        if result.reached_caller:  # type: ignore[attr-defined]
            return []
        where = result.swallowed_in or result.rolled_back_at  # type: ignore[attr-defined]
        ended_with = "returned normally" if result.flow_error is None else "ended with another error: " + result.flow_error  # type: ignore[attr-defined]
        return [
            PERSIST011.finding(
                f"A failure provoked in the {result.table} save was swallowed{f' in {where}' if where else ''}: "  # type: ignore[attr-defined]
                f"the flow {ended_with}.",
                point=result.point,  # type: ignore[attr-defined]
                provoked_in=result.table,  # type: ignore[attr-defined]
                swallowed_in=result.swallowed_in,  # type: ignore[attr-defined]
                rolled_back_at=result.rolled_back_at,  # type: ignore[attr-defined]
                flow_ended_with=result.flow_error,  # type: ignore[attr-defined]
                writes_after=result.writes_after,  # type: ignore[attr-defined]
                calls_after=result.calls_after,  # type: ignore[attr-defined]
            )
        ]
    findings = []
    ended = ctx.timeline.ended()
    for rollback in _swallowed_saves(ctx):
        error = rollback.error
        where = stopped_at(error.exception, ctx.target.code) if ctx.target is not None else None
        failure = describe_db_error(error.exception)
        tables = sorted({write.table for write in rollback.discarded})
        how = "returned normally" if ended is None or ended.error is None else f"ended with {ended.error.type}"
        findings.append(
            PERSIST011.finding(
                f"A save of {', '.join(tables) or 'rows'} failed ({failure.kind.value if failure else error.type}) and "
                f"was swallowed{f' in {where.function} ({where})' if where else ''}: the flow {how}.",
                point=commit_point(prepare(ctx), rollback.discarded) if rollback.discarded else "persist",
                tables=tables,
                error=error.to_dict(),
                sqlstate=failure.sqlstate if failure else None,
                swallowed_in=f"{where.function} ({where})" if where else None,
                rolled_back_at=str(rollback.location) if rollback.location else None,
            )
        )
    return findings


@probe(Stage.PERSIST, scope=Scope.WRITES, emits=(PERSIST001,))
def writes_reach_target(ctx: Any) -> list[Finding]:
    """Everything the flow wrote went to the database it was given."""
    from harness.observe.timeline import RowsWritten, UnitOpened

    if ctx.reader is None:
        return []
    target = _database_identity(ctx.reader.url)
    elsewhere = [u for u in ctx.timeline.of(UnitOpened) if u.database_url and _database_identity(u.database_url) != target]
    units = {u.unit for u in elsewhere}
    rows = sum(len(w.writes) for w in ctx.timeline.of(RowsWritten) if w.unit in units)
    if not rows:
        return []
    return [
        PERSIST001.finding(
            f"The flow wrote {rows} row(s) to {redact_url(elsewhere[0].database_url)}, not to the database it was given.",
            point="persist",
            written_to=sorted({redact_url(u.database_url) for u in elsewhere}),
            given=redact_url(ctx.reader.url),
            opened_at=str(elsewhere[0].location) if elsewhere[0].location else None,
        )
    ]


def _database_identity(url: str) -> tuple[Any, ...]:
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return (url,)
    return (parsed.host or "localhost", parsed.port or 5432, parsed.database)


# -- probes: returned objects and how the flow ended ------------------------------------------


def check_detached(obj: object, point: str) -> list[Finding]:
    """Every column attribute of an ORM object whose session has closed can still be read."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.exc import NoInspectionAvailable
    from sqlalchemy.orm.exc import DetachedInstanceError

    objects = obj if isinstance(obj, (list, tuple)) else [obj]
    for item in objects:
        try:
            state = sa_inspect(item)
        except NoInspectionAvailable:
            continue
        mapper = getattr(state, "mapper", None)
        if mapper is None:
            continue
        for attribute in mapper.column_attrs:
            try:
                getattr(item, attribute.key)
            except DetachedInstanceError as exc:
                return [
                    PERSIST005.finding(
                        f"Reading {type(item).__name__}.{attribute.key} after its session closed failed.",
                        point=point,
                        attribute=attribute.key,
                        error=str(exc)[:300],
                    )
                ]
    return []


@probe(Stage.PERSIST, scope=Scope.LOAD, emits=(PERSIST005,), needs=("points.load",))
def loaded_object_usable(ctx: Any, call: Any) -> list[Finding]:
    """What a ``load`` point returned can be used after its session closed."""
    if not call.returned or call.result is None:
        return []
    findings = check_detached(call.result, "load")
    returned_by = call.name.partition(":")[2]
    where = f" ({call.defined_at})" if call.defined_at else ""
    return [
        Finding(
            f.check,
            f"{returned_by}{where} returned an object that cannot be used once its session closed: {f.message}",
            None,
            {**f.evidence, "returned_by": call.name, "defined_at": str(call.defined_at) if call.defined_at else None},
        )
        for f in findings
    ]


def _failure_not_ours(ctx: Any, ended: Any) -> str | None:
    failure = ctx.failure
    if failure is not None and failure.stage is Stage.PERSIST and failure.follows is not None:
        return f"the flow's {failure.error.type} followed {failure.follows}"
    return None


@probe(Stage.PERSIST, scope=Scope.ENDED, emits=(PERSIST101,), applies=_failure_not_ours)
def code_saved(ctx: Any, ended: Any) -> list[Finding]:
    """The application's code did not raise while saving or loading (database errors are PERSIST006)."""
    failure = ctx.failure
    if failure is None or failure.stage is not Stage.PERSIST:
        return []
    if failure.kind in ("database", "detached") and failure.error.exception is not None:
        finding = classify(failure.error.exception, failure.point)
        where = f"At {failure.error.location}: " if failure.error.location else ""
        return [
            Finding(
                finding.check,
                f"{where}{finding.message}",
                finding.point,
                {**finding.evidence, "location": str(failure.error.location) if failure.error.location else None},
            )
        ]
    where = f" at {failure.error.location}" if failure.error.location else ""
    return [
        PERSIST101.finding(
            f"Your code failed while saving{where}: {failure.error.type}: {failure.error.message}",
            point=failure.point,
            error=failure.error.to_dict(),
            location=str(failure.error.location) if failure.error.location else None,
        )
    ]


def classify(exc: BaseException, point: str) -> Finding:
    """Explain an exception raised while the flow saved or loaded rows (or while they were read back)."""
    from sqlalchemy.orm.exc import DetachedInstanceError

    if isinstance(exc, DetachedInstanceError):
        return PERSIST005.finding(f"An object was used after its session closed: {exc}", point=point)
    failure = describe_db_error(exc)
    if failure is not None:
        return PERSIST006.finding(
            f"A database statement failed ({failure.kind.value}).",
            point=point,
            error=failure.message,
            error_type=failure.error_type,
            sqlstate=failure.sqlstate,
            read_only=failure.kind is DBErrorKind.READ_ONLY,
        )
    return PERSIST900.finding(f"{type(exc).__name__}: {exc}", point=point, error_type=type(exc).__name__)


# -- removing what a run wrote ----------------------------------------------------------------


def remove_rows(
    database_url: str, metadata: Any, keys: dict[str, list[tuple[Any, ...]]], timeouts: Timeouts = TIMEOUTS
) -> tuple[list[Finding], int]:
    """Delete the rows a run wrote (table → primary keys), children first, then verify none is left.

    The order comes from the metadata's foreign keys, so it works for any application and any
    schema. Returns findings (PERSIST008 when a delete fails or rows remain) and rows deleted.
    """
    from sqlalchemy import delete, func, select, tuple_

    tables = _tables(metadata)
    ordered = [t for t in reversed(metadata.sorted_tables) if keys.get(t.fullname)] if metadata is not None else []
    engine = probe_engine(database_url, timeouts)
    deleted = 0

    def where(table: Any, chunk: list[tuple[Any, ...]]) -> Any:
        pk = list(table.primary_key.columns)
        return pk[0].in_([key[0] for key in chunk]) if len(pk) == 1 else tuple_(*pk).in_(chunk)

    try:
        with engine.begin() as connection:
            for table in ordered:
                rows = keys[table.fullname]
                for start in range(0, len(rows), _CHUNK):
                    deleted += connection.execute(delete(table).where(where(table, rows[start : start + _CHUNK]))).rowcount or 0
        remaining: dict[str, int] = {}
        with engine.connect() as connection:
            for table in ordered:
                rows = keys[table.fullname]
                count = connection.execute(select(func.count()).select_from(table).where(where(table, rows))).scalar()
                if count:
                    remaining[table.fullname] = int(count)
    except Exception as exc:  # a failed cleanup is a finding naming the rows, never a crash
        failure = describe_db_error(exc)
        return [
            PERSIST008.finding(
                "Removing the rows the run wrote failed.",
                tables={name: len(rows) for name, rows in keys.items()},
                error=failure.message if failure else str(exc)[:300],
                sqlstate=failure.sqlstate if failure else None,
            )
        ], deleted
    finally:
        engine.dispose()
    unknown = sorted(set(keys) - set(tables))
    if remaining or unknown:
        return [
            PERSIST008.finding(
                f"{sum(remaining.values())} row(s) the run wrote remain after cleanup.",
                remaining=remaining,
                not_in_metadata=unknown,
            )
        ], deleted
    return [], deleted
