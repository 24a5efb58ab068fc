"""Which saved rows hold which generated document, found from the rows themselves.

The persist probes compare what the LLM produced with what the flow saved, for any
application: the tables are found through the metadata's foreign keys (plan → phases →
milestones → tasks) and the rows by the values they hold (a plan's ``project_name``, a
task's number), never through fixed SQL or fixed table names. A field maps to the column of
the same name; failing that, to the column whose values equal the field's on most rows (an
app that keeps task titles in ``name``). Dependencies are rebuilt from a link table (two
foreign keys to the tasks) or from a list column on the task rows (task ids or numbers).

Values are compared as an application would mean them: enum names and values case-blind,
numbers by value, JSON by content with absent and null keys alike, UUIDs as text.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "DISCOVERY_FIELDS",
    "PLAN_FIELDS",
    "TASK_FIELDS",
    "Mismatch",
    "PlanMatch",
    "RowRef",
    "Saved",
    "match_discovery",
    "match_plan",
    "same",
]

#: Fields of each document compared with the row that holds it (derived or recomputed ones left out).
DISCOVERY_FIELDS = ("domain", "bounded_contexts", "aggregates", "value_objects", "domain_events", "services")
PLAN_FIELDS = ("project_name", "description", "tech_stack", "architecture_style")
PHASE_FIELDS = ("name", "description", "phase_number")
MILESTONE_FIELDS = ("name", "description", "milestone_number")
TASK_FIELDS = ("title", "description", "complexity", "target_files", "estimated_tokens")
#: Column names that hold a task's dependencies in a link table (the other foreign key is the task).
_DEPENDENCY_WORDS = ("depend", "prereq", "blocked", "requires", "after", "parent")


# -- comparing values ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value as JSON would carry it: enums by value, UUIDs and dates as text, Decimals as floats."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None and v != [] and v != {}}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def same(saved: Any, generated: Any) -> bool:
    """``saved`` (read back) holds what ``generated`` (the document, or what was written) meant."""
    if _empty(generated):
        return _empty(saved)
    # Fast paths, same answers: finding which column holds a field compares every document with every column.
    kind = type(saved)
    if kind is type(generated):
        if kind is str:
            return saved == generated or (
                saved.lower() == generated.lower() and (saved.isupper() or generated.isupper())
            )
        if kind is int and saved == generated:
            return True
    if isinstance(saved, str) and isinstance(generated, (list, dict)):
        try:
            saved = json.loads(saved)
        except ValueError:
            return False
    if isinstance(saved, enum.Enum) or isinstance(generated, enum.Enum):
        names = {str(getattr(v, "name", v)).lower() for v in (saved,)} | {str(_plain(saved)).lower()}
        wanted = {str(getattr(generated, "name", generated)).lower(), str(_plain(generated)).lower()}
        return bool(names & wanted)
    a, b = _plain(saved), _plain(generated)
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)), abs(float(b)))
    if isinstance(a, str) and isinstance(b, str) and a != b:
        return a.lower() == b.lower() and (a.isupper() or b.isupper())  # DRAFT / draft: an enum stored by name
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        keys = {k for k, v in a.items() if not _empty(v)} | {k for k, v in b.items() if not _empty(v)}
        return all(same(a.get(k), b.get(k)) for k in keys)
    return a == b


def shown(value: Any, limit: int = 120) -> Any:
    """A value short enough for evidence."""
    plain = _plain(value)
    text = plain if isinstance(plain, str) else json.dumps(plain, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- saved rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowRef:
    """One saved row: its table (``Table.fullname``) and primary key."""

    table: str
    key: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.table}[{', '.join(str(part) for part in self.key)}]"


@dataclass
class Saved:
    """The rows a run committed, as read back: table → primary key → column name → value."""

    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]]
    #: ``Table.fullname`` → ``Table`` of the application's metadata.
    tables: Mapping[str, Any]

    def row(self, ref: RowRef) -> dict[str, Any]:
        return self.rows[ref.table][ref.key]

    def refs(self, table: str) -> list[RowRef]:
        return [RowRef(table, key) for key in self.rows.get(table, {})]

    def children(self, parent: RowRef, table: str) -> list[RowRef]:
        """Rows of ``table`` whose foreign key points at ``parent``."""
        columns = _fk_columns(self.tables[table], parent.table)
        if not columns:
            return []
        parent_key = {str(part) for part in parent.key}
        return [
            ref
            for ref in self.refs(table)
            if any(str(self.row(ref).get(column)) in parent_key for column in columns)
        ]

    def child_tables(self, parent_table: str) -> list[str]:
        """Tables with saved rows and a foreign key to ``parent_table``."""
        return [name for name in self.rows if name in self.tables and _fk_columns(self.tables[name], parent_table)]


def _fk_columns(table: Any, target: str) -> list[str]:
    """Columns of ``table`` that reference ``target`` (a fullname)."""
    return [fk.parent.name for fk in table.foreign_keys if fk.column.table.fullname == target]


@dataclass(frozen=True)
class Mismatch:
    """One field saved differently from the document."""

    #: ``discovery``, ``plan``, ``phase 2``, ``milestone 1.3``, ``task 17``.
    where: str
    field: str
    column: str
    saved: Any
    generated: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "field": self.field,
            "column": self.column,
            "saved": shown(self.saved),
            "generated": shown(self.generated),
        }


def _string_columns(row: Mapping[str, Any]) -> list[str]:
    return [name for name, value in row.items() if isinstance(value, str)]


def _field_columns(
    saved: Saved, refs: list[RowRef], documents: list[Mapping[str, Any]], fields: Iterable[str]
) -> dict[str, str]:
    """Field → column for rows matched one to one with ``documents``: same name first, else a value majority."""
    if not refs:
        return {}
    columns = set(saved.row(refs[0]))
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for name in fields:
        if name in columns:
            mapping[name] = name
            taken.add(name)
    for name in fields:
        if name in mapping:
            continue
        present = [(ref, doc) for ref, doc in zip(refs, documents, strict=True) if not _empty(doc.get(name))]
        if not present:
            continue
        votes = Counter(
            column
            for ref, doc in present
            for column, value in saved.row(ref).items()
            if column not in taken and same(value, doc.get(name))
        )
        if votes:
            column, count = votes.most_common(1)[0]
            if count * 2 > len(present):
                mapping[name] = column
                taken.add(column)
    return mapping


def _mismatches(
    saved: Saved, pairs: list[tuple[str, RowRef, Mapping[str, Any]]], mapping: Mapping[str, str]
) -> list[Mismatch]:
    found = []
    for where, ref, doc in pairs:
        row = saved.row(ref)
        for name, column in mapping.items():
            if name not in doc:
                continue  # the document does not carry this (optional) field
            if not same(row.get(column), doc.get(name)):
                found.append(Mismatch(where, name, column, row.get(column), doc.get(name)))
    return found


# -- discovery -------------------------------------------------------------------------------


def match_discovery(raw: Mapping[str, Any], saved: Saved) -> tuple[RowRef | None, list[Mismatch]]:
    """The saved row that holds a discovery document (by its ``domain``), and the fields saved differently."""
    domain = raw.get("domain")
    best: tuple[int, RowRef] | None = None
    for table, rows in saved.rows.items():
        for key, row in rows.items():
            if not any(isinstance(value, str) and value == domain for value in row.values()):
                continue
            score = sum(1 for name in DISCOVERY_FIELDS if name in row)
            if best is None or score > best[0]:
                best = (score, RowRef(table, key))
    if best is None:
        return None, []
    ref = best[1]
    mapping = _field_columns(saved, [ref], [raw], DISCOVERY_FIELDS)
    return ref, _mismatches(saved, [("discovery", ref, raw)], mapping)


# -- plans -----------------------------------------------------------------------------------


@dataclass
class PlanMatch:
    """Where a plan's rows are, what was saved differently, and what is missing, extra or misplaced."""

    plan: RowRef | None = None
    phase_table: str | None = None
    milestone_table: str | None = None
    task_table: str | None = None
    tasks: dict[int, RowRef] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    #: ``(what, identity)`` of documents no saved row holds, e.g. ``("task", 17)``.
    missing: list[tuple[str, Any]] = field(default_factory=list)
    #: Saved child rows no document holds.
    extra: list[RowRef] = field(default_factory=list)
    #: ``(what, identity, expected parent, saved parent)``: children hanging from the wrong row.
    misplaced: list[tuple[str, Any, str, str]] = field(default_factory=list)
    #: Saved dependency edges as ``(task, depends_on)`` numbers; ``None`` when no storage was found.
    edges: Counter[tuple[int, int]] | None = None
    #: How the edges were found: ``link table x``, ``list column y of x``.
    edges_from: str | None = None
    #: Field → column of the task rows.
    task_columns: dict[str, str] = field(default_factory=dict)


def _plan_row(raw: Mapping[str, Any], saved: Saved, exclude: RowRef | None) -> RowRef | None:
    name = raw.get("project_name")
    best: tuple[int, RowRef] | None = None
    for table, rows in saved.rows.items():
        for key, row in rows.items():
            ref = RowRef(table, key)
            if ref == exclude or not any(isinstance(value, str) and value == name for value in row.values()):
                continue
            score = sum(1 for field_name in PLAN_FIELDS if field_name in row) + len(saved.child_tables(table))
            if best is None or score > best[0]:
                best = (score, ref)
    return best[1] if best else None


def _pick_child_table(saved: Saved, parent: RowRef | list[RowRef], names: list[str]) -> str | None:
    """Of the tables hanging from ``parent``'s table, the one whose rows carry ``names``."""
    parents = parent if isinstance(parent, list) else [parent]
    if not parents:
        return None
    best: tuple[int, str] | None = None
    for table in saved.child_tables(parents[0].table):
        rows = [saved.row(ref) for p in parents for ref in saved.children(p, table)]
        values = {value for row in rows for value in row.values() if isinstance(value, str)}
        score = sum(1 for name in names if name in values)
        if score and (best is None or score > best[0]):
            best = (score, table)
    return best[1] if best else None


def _only_child_table(saved: Saved, parents: list[RowRef]) -> str | None:
    """The one table hanging from ``parents``' table with rows under them (when names did not tell)."""
    if not parents:
        return None
    tables = [t for t in saved.child_tables(parents[0].table) if any(saved.children(p, t) for p in parents)]
    return tables[0] if len(tables) == 1 else None


def _match_by_number(
    saved: Saved, candidates: list[RowRef], number: int, number_field: str, *, taken: Iterable[RowRef] = ()
) -> RowRef | None:
    used = set(taken)
    for ref in candidates:
        if ref not in used and same(saved.row(ref).get(number_field), number):
            return ref
    return None


def _match_by_name(saved: Saved, candidates: list[RowRef], wanted: str | None, number: Any, number_field: str) -> RowRef | None:
    for ref in candidates:
        row = saved.row(ref)
        if wanted is not None and wanted in row.values():
            if number is None or number_field not in row or same(row[number_field], number):
                return ref
    return None


def match_plan(
    raw: Mapping[str, Any],
    tasks: list[Mapping[str, Any]],
    saved: Saved,
    *,
    exclude: RowRef | None = None,
    owners: Mapping[int, tuple[int, int]] | None = None,
) -> PlanMatch:
    """Find a plan's rows (plan, phases, milestones, tasks, dependencies) and compare them with the document.

    ``raw`` is the plan (or skeleton) as the LLM wrote it, ``tasks`` every task of the plan in
    order (from one answer or from every batch); ``exclude`` is a row already taken (the discovery's).
    ``owners`` maps a task number to the (phase, milestone) indexes owning it, where the document
    does not nest tasks in milestones itself (a skeleton whose tasks came in batches).
    """
    match = PlanMatch()
    match.plan = _plan_row(raw, saved, exclude)
    if match.plan is None:
        return match
    plan_mapping = _field_columns(saved, [match.plan], [raw], PLAN_FIELDS)
    match.mismatches += _mismatches(saved, [("plan", match.plan, raw)], plan_mapping)

    phases = [p for p in raw.get("phases") or [] if isinstance(p, Mapping)]
    match.phase_table = _pick_child_table(saved, match.plan, [p.get("name") for p in phases])
    phase_refs: dict[int, RowRef] = {}
    milestone_refs: dict[tuple[int, int], RowRef] = {}
    owner_of_task: dict[int, tuple[int, int]] = {}
    for pi, phase in enumerate(phases):
        for mi, milestone in enumerate(m for m in phase.get("milestones") or [] if isinstance(m, Mapping)):
            for task in milestone.get("tasks") or []:
                if isinstance(task, Mapping) and isinstance(task.get("task_number"), int):
                    owner_of_task[task["task_number"]] = (pi, mi)
    owner_of_task.update(owners or {})
    if match.phase_table is not None:
        under_plan = saved.children(match.plan, match.phase_table)
        for pi, phase in enumerate(phases):
            ref = _match_by_name(saved, under_plan, phase.get("name"), phase.get("phase_number"), "phase_number")
            if ref is None:
                ref = _match_by_name(saved, saved.refs(match.phase_table), phase.get("name"), phase.get("phase_number"), "phase_number")
                if ref is not None:
                    match.misplaced.append(("phase", pi + 1, str(match.plan), "another plan"))
            if ref is None:
                match.missing.append(("phase", phase.get("name")))
            else:
                phase_refs[pi] = ref
        pairs = [(f"phase {pi + 1}", ref, phases[pi]) for pi, ref in phase_refs.items()]
        mapping = _field_columns(saved, [r for _, r, _ in pairs], [d for _, _, d in pairs], PHASE_FIELDS)
        match.mismatches += _mismatches(saved, pairs, mapping)
        match.extra += [ref for ref in under_plan if ref not in phase_refs.values()]

        milestone_names = [m.get("name") for p in phases for m in p.get("milestones") or [] if isinstance(m, Mapping)]
        match.milestone_table = _pick_child_table(saved, list(phase_refs.values()), milestone_names) or _only_child_table(
            saved, list(phase_refs.values())
        )
        if match.milestone_table is not None:
            pairs = []
            for pi, phase in enumerate(phases):
                parent = phase_refs.get(pi)
                if parent is None:
                    continue
                under = saved.children(parent, match.milestone_table)
                milestones = [m for m in phase.get("milestones") or [] if isinstance(m, Mapping)]
                for mi, milestone in enumerate(milestones):
                    ref = _match_by_name(saved, under, milestone.get("name"), milestone.get("milestone_number"), "milestone_number")
                    if ref is None:
                        # A name saved wrongly still leaves the row where it hangs: match it by its number.
                        ref = _match_by_number(saved, under, mi + 1, "milestone_number", taken=milestone_refs.values())
                    if ref is None:
                        match.missing.append(("milestone", f"{pi + 1}.{mi + 1}"))
                        continue
                    milestone_refs[(pi, mi)] = ref
                    pairs.append((f"milestone {pi + 1}.{mi + 1}", ref, milestone))
                match.extra += [ref for ref in under if ref not in milestone_refs.values()]
            mapping = _field_columns(saved, [r for _, r, _ in pairs], [d for _, _, d in pairs], MILESTONE_FIELDS)
            match.mismatches += _mismatches(saved, pairs, mapping)

    _match_tasks(match, tasks, saved, milestone_refs, owner_of_task)
    return match


def _task_number_column(saved: Saved, table: str, numbers: set[int]) -> str | None:
    refs = saved.refs(table)
    if not refs:
        return None
    columns = list(saved.row(refs[0]))
    if "task_number" in columns:
        return "task_number"
    for column in columns:
        values = {saved.row(ref).get(column) for ref in refs}
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values) and values <= numbers:
            if len(values) == len(refs):
                return column
    return None


def _match_tasks(
    match: PlanMatch,
    tasks: list[Mapping[str, Any]],
    saved: Saved,
    milestone_refs: Mapping[tuple[int, int], RowRef],
    owner_of_task: Mapping[int, tuple[int, int]],
) -> None:
    numbers = {t["task_number"] for t in tasks if isinstance(t.get("task_number"), int)}
    parents: list[RowRef] = list(milestone_refs.values()) if match.milestone_table else [match.plan] if match.plan else []
    candidates: list[str] = []
    if parents:
        candidates = saved.child_tables(parents[0].table)
    if match.plan is not None and match.plan.table != (parents[0].table if parents else None):
        candidates += [t for t in saved.child_tables(match.plan.table) if t not in candidates]
    # The phases and milestones found above are not tasks, whatever small numbers they carry.
    candidates = [t for t in candidates if t not in (match.phase_table, match.milestone_table)]
    best: tuple[int, str, str] | None = None
    for table in candidates:
        column = _task_number_column(saved, table, numbers)
        if column is None:
            continue
        hits = len({saved.row(ref).get(column) for ref in saved.refs(table)} & numbers)
        if hits and (best is None or hits > best[0]):
            best = (hits, table, column)
    if best is None:
        if tasks:
            match.missing += [("task", number) for number in sorted(numbers)]
        return
    _, table, number_column = best
    match.task_table = table
    by_number: dict[int, RowRef] = {}
    for ref in saved.refs(table):
        row = saved.row(ref)
        if match.plan is not None and not _belongs_to_plan(saved, ref, match.plan, milestone_refs):
            continue
        value = row.get(number_column)
        if isinstance(value, int):
            by_number[value] = ref
    pairs = []
    for task in tasks:
        number = task.get("task_number")
        ref = by_number.get(number) if isinstance(number, int) else None
        if ref is None:
            match.missing.append(("task", number))
            continue
        match.tasks[number] = ref
        pairs.append((f"task {number}", ref, task))
    match.extra += [ref for number, ref in by_number.items() if number not in numbers]
    fields = [name for name in TASK_FIELDS]
    match.task_columns = _field_columns(saved, [r for _, r, _ in pairs], [d for _, _, d in pairs], fields)
    match.task_columns["task_number"] = number_column
    match.mismatches += _mismatches(saved, pairs, {k: v for k, v in match.task_columns.items() if k != "task_number"})

    if match.milestone_table is not None:
        fk = _fk_columns(saved.tables[table], match.milestone_table)
        if fk:
            for number, ref in match.tasks.items():
                owner = owner_of_task.get(number)
                expected = milestone_refs.get(owner) if owner is not None else None
                if expected is None:
                    continue
                actual = saved.row(ref).get(fk[0])
                if str(actual) not in {str(part) for part in expected.key}:
                    match.misplaced.append(
                        ("task", number, f"milestone {owner[0] + 1}.{owner[1] + 1}", _describe_parent(saved, match.milestone_table, actual, milestone_refs))
                    )
    _match_edges(match, saved)


def _describe_parent(saved: Saved, table: str, value: Any, milestone_refs: Mapping[tuple[int, int], RowRef]) -> str:
    for (pi, mi), ref in milestone_refs.items():
        if str(value) in {str(part) for part in ref.key}:
            return f"milestone {pi + 1}.{mi + 1}"
    return f"{table} row {value}"


def _belongs_to_plan(saved: Saved, ref: RowRef, plan: RowRef, milestone_refs: Mapping[Any, RowRef]) -> bool:
    row = saved.row(ref)
    table = saved.tables[ref.table]
    plan_fk = _fk_columns(table, plan.table)
    if plan_fk:
        return str(row.get(plan_fk[0])) in {str(part) for part in plan.key}
    if milestone_refs:
        milestone_table = next(iter(milestone_refs.values())).table
        fk = _fk_columns(table, milestone_table)
        if fk:
            keys = {str(part) for m in milestone_refs.values() for part in m.key}
            return str(row.get(fk[0])) in keys
    return True


def _match_edges(match: PlanMatch, saved: Saved) -> None:
    """Rebuild the saved dependency graph: a link table to the tasks, or a list column on the task rows."""
    table = match.task_table
    if table is None:
        return
    number_of_key = {str(ref.key[0]): number for number, ref in match.tasks.items() if len(ref.key) == 1}
    numbers = set(match.tasks)
    for name, candidate in saved.tables.items():
        columns = _fk_columns(candidate, table)
        if len(columns) < 2:
            continue  # a link table needs two foreign keys to the tasks (it may hold no row at all)
        dependency = next((c for c in columns if any(word in c.lower() for word in _DEPENDENCY_WORDS)), columns[1])
        task_column = next(c for c in columns if c != dependency)
        edges: Counter[tuple[int, int]] = Counter()
        for row in saved.rows.get(name, {}).values():
            task, depends_on = number_of_key.get(str(row.get(task_column))), number_of_key.get(str(row.get(dependency)))
            if task is not None and depends_on is not None:
                edges[(task, depends_on)] += 1
        match.edges, match.edges_from = edges, f"link table {name}"
        return
    rows = {number: saved.row(ref) for number, ref in match.tasks.items()}
    if not rows:
        return
    sample = next(iter(rows.values()))
    for column in sample:
        values = [row.get(column) for row in rows.values()]
        lists = [_as_list(value) for value in values]
        if any(items is None for items in lists) or not any(lists):
            continue
        items = [item for found in lists for item in found or []]
        if all(str(item) in number_of_key for item in items):
            convert = lambda item: number_of_key[str(item)]  # noqa: E731
        elif all(isinstance(item, int) and item in numbers for item in items):
            convert = lambda item: item  # noqa: E731
        else:
            continue
        edges = Counter()
        for number, row in rows.items():
            for item in dict.fromkeys(_as_list(row.get(column)) or []):
                edges[(number, convert(item))] += 1
        match.edges, match.edges_from = edges, f"list column {column} of {table}"
        return
    # No list column held anything: an empty list column named like a dependency still stores the (empty) graph.
    for column in sample:
        if any(word in column.lower() for word in _DEPENDENCY_WORDS) and all(
            _as_list(row.get(column)) == [] for row in rows.values()
        ):
            match.edges, match.edges_from = Counter(), f"list column {column} of {table}"
            return


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return list(value) if isinstance(value, (list, tuple)) else None
