"""Stage persist: what the flow says it saved is really there, for everyone.

The readback goes through a *new* connection made from ``DATABASE_URL`` — never through
the flow's session — so a write that was never committed, was rolled back, or went to
another database is caught. Rows are compared field by field with what the LLM said,
children are counted and the dependency graph is rebuilt from the rows.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from harness.config import TIMEOUTS, Timeouts
from harness.contract import Discovery, MasterPlan, PlanSkeleton, Task, iter_tasks
from harness.redaction import redact_url
from probes.core import Check, Finding, Level, Stage
from probes.db import probe_engine
from probes.dberrors import DBErrorKind, describe_db_error

__all__ = [
    "BATCH_CHECKS",
    "CHECKS",
    "DISCOVERY_CHECKS",
    "PLAN_CHECKS",
    "SKELETON_CHECKS",
    "Readback",
    "check_batch_rows",
    "check_detached",
    "check_discovery_row",
    "check_masterplan_rows",
    "check_skeleton_rows",
    "classify",
]

PERSIST001 = Check(
    "PERSIST001",
    Stage.PERSIST,
    Level.ERROR,
    "saved row visible to a new connection",
    "The flow reported a save but another connection cannot see the row: the transaction was never committed "
    "(an exception swallowed in the session scope?) or the flow writes to a different database than DATABASE_URL.",
)
PERSIST002 = Check(
    "PERSIST002",
    Stage.PERSIST,
    Level.ERROR,
    "saved fields match the generated document",
    "The row differs from what the LLM produced in the fields listed: check the mapping in the save function.",
)
PERSIST003 = Check(
    "PERSIST003",
    Stage.PERSIST,
    Level.ERROR,
    "all phases, milestones and tasks saved",
    "Some children are missing: save the plan and all its children in one unit of work.",
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
    "The plan row is not in status 'draft': generation did not finish, and the row says so.",
)
PERSIST008 = Check(
    "PERSIST008",
    Stage.PERSIST,
    Level.ERROR,
    "canary rows removed after the run",
    "The harness could not remove the rows it wrote: delete rows whose session_id starts with "
    "'harness-canary-' (the evidence names the session) and check the role's DELETE privilege.",
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
PERSIST900 = Check(
    "PERSIST900",
    Stage.PERSIST,
    Level.ERROR,
    "save finished as expected",
    "An unexpected error while saving; the evidence names the exception.",
)

DISCOVERY_CHECKS = (PERSIST001, PERSIST002)
PLAN_CHECKS = (PERSIST001, PERSIST002, PERSIST007, PERSIST003, PERSIST004)
#: Checks of a skeleton save and of one batch save (batched generation).
SKELETON_CHECKS = (PERSIST001, PERSIST002, PERSIST010, PERSIST003)
BATCH_CHECKS = (PERSIST001, PERSIST002, PERSIST010, PERSIST004)
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
    PERSIST900,
)

#: Every row a diagnose run writes carries a session id with this prefix; only such rows are ever deleted.
CANARY_PREFIX = "harness-canary-"

_CANARY_PLANS = "SELECT masterplan_id FROM masterplans WHERE session_id = :sid"
_CANARY_TASKS = f"SELECT task_id FROM masterplan_tasks WHERE masterplan_id IN ({_CANARY_PLANS})"
_CANARY_DELETES = (
    f"DELETE FROM masterplan_task_dependencies WHERE task_id IN ({_CANARY_TASKS}) "
    f"OR depends_on_task_id IN ({_CANARY_TASKS})",
    f"DELETE FROM masterplan_tasks WHERE masterplan_id IN ({_CANARY_PLANS})",
    "DELETE FROM masterplan_milestones WHERE phase_id IN "
    f"(SELECT phase_id FROM masterplan_phases WHERE masterplan_id IN ({_CANARY_PLANS}))",
    f"DELETE FROM masterplan_phases WHERE masterplan_id IN ({_CANARY_PLANS})",
    "DELETE FROM masterplans WHERE session_id = :sid",
    "DELETE FROM discovery_documents WHERE session_id = :sid",
)
_CANARY_REMAINING = """
SELECT (SELECT count(*) FROM discovery_documents WHERE session_id = :sid)
     + (SELECT count(*) FROM masterplans WHERE session_id = :sid)
"""

_DISCOVERY_LISTS = ("bounded_contexts", "aggregates", "value_objects", "domain_events", "services")


#: The plan row, its child counts and its dependency edges, read back over one connection.
_PLAN_QUERIES = [
    "SELECT * FROM masterplans WHERE masterplan_id = :key",
    """
        SELECT
          (SELECT count(*) FROM masterplan_phases WHERE masterplan_id = :key) AS phases,
          (SELECT count(*) FROM masterplan_milestones m JOIN masterplan_phases p USING (phase_id)
             WHERE p.masterplan_id = :key) AS milestones,
          (SELECT count(*) FROM masterplan_tasks WHERE masterplan_id = :key) AS tasks
        """,
    """
        SELECT t.task_number AS task, d.task_number AS depends_on
        FROM masterplan_task_dependencies x
        JOIN masterplan_tasks t ON t.task_id = x.task_id
        JOIN masterplan_tasks d ON d.task_id = x.depends_on_task_id
        WHERE t.masterplan_id = :key
        """,
]


class Readback:
    """The probes' own connection to ``DATABASE_URL`` for the readbacks of one run.

    Never the flow's: it is opened from the URL by the probe, in autocommit, so every query
    sees exactly what is committed at that moment — a write that lives only in the flow's
    transaction, or in another database, is invisible to it. One connection serves every
    readback of a run (a connection costs more than the queries); a failed query drops it
    and the next one reconnects.
    """

    def __init__(self, database_url: str, timeouts: Timeouts = TIMEOUTS) -> None:
        self.url = database_url
        self._timeouts = timeouts
        self._engine: Any = None
        self._connection: Any = None

    def rows(self, queries: list[str], **params: Any) -> list[list[dict[str, Any]]]:
        """The rows of each query, in order."""
        from sqlalchemy import text

        reused = self._connection is not None
        if not reused:
            self._open()
        try:
            return [[dict(row._mapping) for row in self._connection.execute(text(sql), params)] for sql in queries]
        except Exception:
            self.close()
            if not reused:
                raise
        # A connection kept from an earlier readback may have died since (a server restart):
        # the queries only read, so they are asked once more on a fresh connection.
        self._open()
        try:
            return [[dict(row._mapping) for row in self._connection.execute(text(sql), params)] for sql in queries]
        except Exception:
            self.close()
            raise

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


Target = str | Readback
"""Where readbacks go: a URL (one connection per call) or a run's :class:`Readback`."""


def _url(target: Target) -> str:
    return target.url if isinstance(target, Readback) else target


def _readback(target: Target, timeouts: Timeouts, sql: str, **params: Any) -> list[dict[str, Any]]:
    return _readback_all(target, timeouts, [sql], **params)[0]


def _readback_all(target: Target, timeouts: Timeouts, queries: list[str], **params: Any) -> list[list[dict[str, Any]]]:
    """Run ``queries`` over the run's readback connection, or over one new connection for a bare URL."""
    if isinstance(target, Readback):
        return target.rows(queries, **params)
    reader = Readback(target, timeouts)
    try:
        return reader.rows(queries, **params)
    finally:
        reader.close()


def _not_visible(table: str, key: uuid.UUID, database_url: Target, point: str) -> Finding:
    return PERSIST001.finding(
        f"The {point} row {key} is not visible in {table} through a new connection.",
        point=point,
        table=table,
        key=str(key),
        target=redact_url(_url(database_url)),
    )


def check_discovery_row(
    database_url: Target, key: uuid.UUID, expected: Discovery, point: str = "discovery", timeouts: Timeouts = TIMEOUTS
) -> list[Finding]:
    """The discovery row exists for a new connection and holds what the LLM produced."""
    rows = _readback(database_url, timeouts, "SELECT * FROM discovery_documents WHERE discovery_id = :key", key=key)
    if not rows:
        return [_not_visible("discovery_documents", key, database_url, point)]
    row = rows[0]
    wanted: dict[str, Any] = {"domain": expected.domain}
    for name in _DISCOVERY_LISTS:
        wanted[name] = [item.model_dump(mode="json") for item in getattr(expected, name)]
    differing = sorted(name for name, value in wanted.items() if row.get(name) != value)
    if differing:
        return [
            PERSIST002.finding(
                f"The saved discovery differs from the generated one in {', '.join(differing)}.",
                point=point,
                fields=differing,
                key=str(key),
            )
        ]
    return []


def check_masterplan_rows(
    database_url: Target, key: uuid.UUID, expected: MasterPlan, point: str = "masterplan", timeouts: Timeouts = TIMEOUTS
) -> list[Finding]:
    """The plan, its children and its dependency graph are there for a new connection, as generated."""
    plans, count_rows, edges = _readback_all(database_url, timeouts, _PLAN_QUERIES, key=key)
    if not plans:
        return [_not_visible("masterplans", key, database_url, point)]
    plan = plans[0]
    findings: list[Finding] = []

    tasks = [task for _, _, task in iter_tasks(expected)]
    wanted = {
        "project_name": expected.project_name,
        "architecture_style": expected.architecture_style,
        "tech_stack": expected.tech_stack,
        "total_tasks": len(tasks),
        "total_phases": len(expected.phases),
        "total_milestones": sum(len(phase.milestones) for phase in expected.phases),
    }
    differing = sorted(name for name, value in wanted.items() if plan.get(name) != value)
    if differing:
        findings.append(
            PERSIST002.finding(
                f"The saved plan differs from the generated one in {', '.join(differing)}.",
                point=point,
                fields=differing,
                saved={name: plan.get(name) for name in differing if name != "tech_stack"},
            )
        )
    status = str(plan.get("status"))
    if status != "draft":
        findings.append(
            PERSIST007.finding(
                f"The plan is in status {status!r}, not 'draft'.",
                point=point,
                status=status,
                error_message=plan.get("error_message"),
            )
        )

    counts = count_rows[0]
    expected_counts = {"phases": wanted["total_phases"], "milestones": wanted["total_milestones"], "tasks": len(tasks)}
    if counts != expected_counts:
        findings.append(
            PERSIST003.finding(
                f"Saved children {counts} differ from the generated plan's {expected_counts}.",
                point=point,
                saved=counts,
                generated=expected_counts,
            )
        )

    findings.extend(_edge_findings(edges, tasks, point, "The saved dependency graph"))
    return findings


def _edge_findings(edges: list[dict[str, Any]], tasks: list[Task], point: str, what: str) -> list[Finding]:
    """PERSIST004 when the saved (task, depends_on) edges differ from the generated ones."""
    saved_edges = Counter((edge["task"], edge["depends_on"]) for edge in edges)
    generated_edges = Counter((task.task_number, dep) for task in tasks for dep in set(task.depends_on))
    if saved_edges == generated_edges:
        return []
    missing = sorted((generated_edges - saved_edges).elements())
    extra = sorted((saved_edges - generated_edges).elements())
    return [
        PERSIST004.finding(
            f"{what} has {len(missing)} missing and {len(extra)} extra edge(s).",
            point=point,
            missing=[list(edge) for edge in missing[:20]],
            extra=[list(edge) for edge in extra[:20]],
        )
    ]


def _still_generating(plan: dict[str, Any], point: str) -> list[Finding]:
    status = str(plan.get("status"))
    if status == "generating":
        return []
    return [
        PERSIST010.finding(
            f"The plan is in status {status!r} while its batches are still arriving; it must stay 'generating'.",
            point=point,
            status=status,
        )
    ]


def check_skeleton_rows(
    database_url: Target, key: uuid.UUID, expected: PlanSkeleton, point: str, timeouts: Timeouts = TIMEOUTS
) -> list[Finding]:
    """The skeleton's plan row, phases and milestones are there for a new connection; the plan is not complete."""
    plans = _readback(database_url, timeouts, "SELECT * FROM masterplans WHERE masterplan_id = :key", key=key)
    if not plans:
        return [_not_visible("masterplans", key, database_url, point)]
    plan = plans[0]
    findings: list[Finding] = []
    wanted = {
        "project_name": expected.project_name,
        "architecture_style": expected.architecture_style,
        "tech_stack": expected.tech_stack,
        "total_tasks": expected.total_tasks,
        "total_phases": len(expected.phases),
        "total_milestones": sum(len(phase.milestones) for phase in expected.phases),
    }
    differing = sorted(name for name, value in wanted.items() if plan.get(name) != value)
    if differing:
        findings.append(
            PERSIST002.finding(
                f"The saved plan differs from the generated skeleton in {', '.join(differing)}.",
                point=point,
                fields=differing,
            )
        )
    findings += _still_generating(plan, point)
    counts = _readback(
        database_url,
        timeouts,
        """
        SELECT
          (SELECT count(*) FROM masterplan_phases WHERE masterplan_id = :key) AS phases,
          (SELECT count(*) FROM masterplan_milestones m JOIN masterplan_phases p USING (phase_id)
             WHERE p.masterplan_id = :key) AS milestones
        """,
        key=key,
    )[0]
    expected_counts = {"phases": wanted["total_phases"], "milestones": wanted["total_milestones"]}
    if counts != expected_counts:
        findings.append(
            PERSIST003.finding(
                f"Saved phases and milestones {counts} differ from the skeleton's {expected_counts}.",
                point=point,
                saved=counts,
                generated=expected_counts,
            )
        )
    return findings


def check_batch_rows(
    database_url: Target, key: uuid.UUID, expected: list[Task], point: str, timeouts: Timeouts = TIMEOUTS
) -> list[Finding]:
    """One batch's tasks and their dependencies are there for a new connection; the plan is not complete yet.

    (The whole plan is judged again when its last batch is in: see :func:`check_masterplan_rows`.)
    """
    plans = _readback(database_url, timeouts, "SELECT status FROM masterplans WHERE masterplan_id = :key", key=key)
    if not plans:
        return [_not_visible("masterplans", key, database_url, point)]
    numbers = [task.task_number for task in expected]
    rows = _readback(
        database_url,
        timeouts,
        "SELECT task_number, title FROM masterplan_tasks WHERE masterplan_id = :key AND task_number = ANY(:numbers)",
        key=key,
        numbers=numbers,
    )
    saved = {row["task_number"]: row["title"] for row in rows}
    missing = sorted(set(numbers) - set(saved))
    if missing:
        return [
            PERSIST001.finding(
                f"{len(missing)} task(s) of the {point} batch are not visible through a new connection.",
                point=point,
                table="masterplan_tasks",
                missing=missing[:20],
                target=redact_url(_url(database_url)),
            )
        ]
    findings: list[Finding] = []
    differing = sorted(task.task_number for task in expected if saved[task.task_number] != task.title)
    if differing:
        findings.append(
            PERSIST002.finding(
                f"{len(differing)} saved task(s) differ in title from the generated batch.",
                point=point,
                tasks=differing[:20],
            )
        )
    findings += _still_generating(plans[0], point)
    edges = _readback(
        database_url,
        timeouts,
        """
        SELECT t.task_number AS task, d.task_number AS depends_on
        FROM masterplan_task_dependencies x
        JOIN masterplan_tasks t ON t.task_id = x.task_id
        JOIN masterplan_tasks d ON d.task_id = x.depends_on_task_id
        WHERE t.masterplan_id = :key AND t.task_number = ANY(:numbers)
        """,
        key=key,
        numbers=numbers,
    )
    findings.extend(_edge_findings(edges, expected, point, "The batch's saved dependencies"))
    return findings


def check_detached(obj: object, attributes: tuple[str, ...], point: str) -> list[Finding]:
    """Every listed attribute of an object whose session has closed can still be read."""
    from sqlalchemy.orm.exc import DetachedInstanceError

    for name in attributes:
        try:
            getattr(obj, name)
        except DetachedInstanceError as exc:
            return [
                PERSIST005.finding(
                    f"Reading {type(obj).__name__}.{name} after its session closed failed.",
                    point=point,
                    attribute=name,
                    error=str(exc)[:300],
                )
            ]
    return []


def classify(exc: BaseException, point: str) -> Finding:
    """Explain an exception raised while the flow saved or loaded rows."""
    from sqlalchemy.orm.exc import DetachedInstanceError

    if isinstance(exc, DetachedInstanceError):
        return PERSIST005.finding(f"An object was used after its session closed: {exc}", point=point)
    if type(exc).__name__ == "CommittedRowsMissing":  # the flow's own error, recognised by name
        return PERSIST001.finding(
            f"Rows committed earlier in this generation are gone: {getattr(exc, 'what', 'a row')}.",
            point=point,
            missing=getattr(exc, "what", None),
            key=str(getattr(exc, "masterplan_id", "")),
            error=str(exc)[:300],
        )
    failure = describe_db_error(exc)
    if failure is not None:
        return PERSIST006.finding(
            f"The save failed with a database error ({failure.kind.value}).",
            point=point,
            error=failure.message,
            error_type=failure.error_type,
            sqlstate=failure.sqlstate,
            read_only=failure.kind is DBErrorKind.READ_ONLY,
        )
    return PERSIST900.finding(f"{type(exc).__name__}: {exc}", point=point, error_type=type(exc).__name__)


def remove_canary_rows(database_url: str, session_id: str, timeouts: Timeouts = TIMEOUTS) -> tuple[list[Finding], int]:
    """Delete every row of a canary session, bottom-up, then verify none is left; returns findings and rows deleted."""
    from sqlalchemy import text

    if not session_id.startswith(CANARY_PREFIX):
        raise ValueError(f"refusing to delete rows of a non-canary session {session_id!r}")
    engine = probe_engine(database_url, timeouts)
    deleted = 0
    try:
        with engine.begin() as connection:
            for statement in _CANARY_DELETES:
                deleted += connection.execute(text(statement), {"sid": session_id}).rowcount or 0
        with engine.connect() as connection:
            remaining = connection.execute(text(_CANARY_REMAINING), {"sid": session_id}).scalar()
    except Exception as exc:  # a failed cleanup is a finding naming the session, never a crash
        failure = describe_db_error(exc)
        return [
            PERSIST008.finding(
                "Removing the canary rows failed.",
                session_id=session_id,
                error=failure.message if failure else str(exc)[:300],
                sqlstate=failure.sqlstate if failure else None,
            )
        ], deleted
    finally:
        engine.dispose()
    if remaining:
        return [
            PERSIST008.finding(
                f"{remaining} canary row(s) remain after cleanup.", session_id=session_id, remaining=remaining
            )
        ], deleted
    return [], deleted


def check_commit_counts(commits_per_unit: dict[str, int]) -> list[Finding]:
    """Every unit of work (session) committed at most once."""
    repeated = {unit: count for unit, count in commits_per_unit.items() if count > 1}
    if repeated:
        worst = max(repeated.values())
        return [
            PERSIST009.finding(
                f"{len(repeated)} unit(s) of work committed more than once (up to {worst} times).",
                units=len(commits_per_unit),
                repeated=sorted(repeated.values(), reverse=True)[:10],
            )
        ]
    return []
