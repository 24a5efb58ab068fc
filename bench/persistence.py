"""Persistence: commit and independent readback of a 120-task plan, ours vs a naive save.

Both saves run as every harness run has them: under the database-writes watcher
(:class:`harness.observe.orm.OrmWatch`), which records the keys of the rows committed.

*Ours* is the flow's own :meth:`MasterPlanGenerator._save_plan` (one unit of work: the
plan's children as multi-row INSERTs, its dependency graph, the switch to ``draft``).
*Naive* is the pattern the seed describes and many codebases have: add one row, flush, add
the next — one INSERT and flush per dependency edge — then commit.

The readback is the persist stage's, the same for both: a :class:`probes.persist.Readback`
(its own connection, autocommit, never the flow's) reads every committed row by primary key
(:meth:`~probes.persist.Readback.rows_by_key`), and :func:`probes.documents.match_plan` finds
the plan document among them — plan row, phases, milestones, tasks field by field, the
dependency graph rebuilt. It must find every row and nothing wrong, on either side. Each run
gets a fresh database cloned from the migrated template, made outside the timed part.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from bench.common import median, time_call
from bench.plan120 import discovery_document, plan_document
from harness.config import DEFAULT_MODELS
from harness.contract import MasterPlan, iter_tasks
from harness.flow.database import make_engine, make_session_factory, session_scope
from harness.flow.llm import LLMAnswer
from harness.flow.masterplan import MasterPlanGenerator
from harness.flow.models import (
    DiscoveryDocument,
    MasterPlanMilestone,
    MasterPlanPhase,
    MasterPlanStatus,
    MasterPlanTask,
    metadata,
    task_dependencies,
)
from harness.flow.models import MasterPlan as MasterPlanRow
from harness.observe.code import AppCode
from harness.observe.orm import OrmWatch
from harness.observe.timeline import Timeline, UnitCommitted
from harness.postgres import DatabaseFactory
from probes.documents import Saved, match_plan
from probes.persist import Readback

__all__ = ["PersistenceTimes", "measure_persistence", "naive_save_plan", "read_back"]

_ANSWER = LLMAnswer(
    provider="anthropic",
    model=DEFAULT_MODELS.generation,
    text="",
    stop_reason="end_turn",
    input_tokens=9000,
    output_tokens=30000,
    latency_s=60.0,
    streamed=True,
    max_tokens=DEFAULT_MODELS.masterplan_max_tokens,
    cost_usd=0.48,
)
_CODE = AppCode.for_modules(["harness.flow", "bench"])


@dataclass(frozen=True)
class PersistenceTimes:
    """Samples (seconds) of save and save + readback, for ours and naive."""

    ours_save: list[float]
    ours_total: list[float]
    naive_save: list[float]
    naive_total: list[float]

    @property
    def ratio(self) -> float:
        """How many times faster ours is than naive, save + readback, medians."""
        return median(self.naive_total) / median(self.ours_total)


def _start_plan(sessions: sessionmaker[Session]) -> uuid.UUID:
    """A discovery row and a plan row in status ``generating``, as the flow leaves them before saving."""
    document = discovery_document()
    discovery = DiscoveryDocument(
        discovery_id=uuid.uuid4(),
        session_id="bench-sid",
        user_id="bench-user",
        user_request="bench",
        domain=document["domain"],
        bounded_contexts=document["bounded_contexts"],
        aggregates=document["aggregates"],
        value_objects=document["value_objects"],
        domain_events=document["domain_events"],
        services=document["services"],
    )
    plan = MasterPlanRow(
        masterplan_id=uuid.uuid4(),
        discovery_id=discovery.discovery_id,
        session_id="bench-sid",
        user_id="bench-user",
        project_name=discovery.domain,
        status=MasterPlanStatus.GENERATING,
        tech_stack={},
    )
    with session_scope(sessions) as session:
        session.add(discovery)
        session.flush()
        session.add(plan)
    return plan.masterplan_id


def naive_save_plan(sessions: sessionmaker[Session], masterplan_id: uuid.UUID, plan: MasterPlan) -> None:
    """Save the plan the naive way: add a row, flush, repeat; one INSERT per dependency edge; commit."""
    with session_scope(sessions) as session:
        ids: dict[int, uuid.UUID] = {}
        milestones = 0
        for phase_index, phase in enumerate(plan.phases, start=1):
            phase_row = MasterPlanPhase(
                masterplan_id=masterplan_id,
                phase_number=phase.phase_number or phase_index,
                name=phase.name,
                description=phase.description,
            )
            session.add(phase_row)
            session.flush()
            for milestone_index, milestone in enumerate(phase.milestones, start=1):
                milestones += 1
                milestone_row = MasterPlanMilestone(
                    phase_id=phase_row.phase_id,
                    milestone_number=milestone.milestone_number or milestone_index,
                    name=milestone.name,
                    description=milestone.description,
                )
                session.add(milestone_row)
                session.flush()
                for task in milestone.tasks:
                    task_row = MasterPlanTask(
                        masterplan_id=masterplan_id,
                        milestone_id=milestone_row.milestone_id,
                        task_number=task.task_number,
                        title=task.title,
                        description=task.description,
                        complexity=task.complexity.value,
                        target_files=list(task.target_files),
                        estimated_tokens=task.estimated_tokens,
                        status="pending",
                    )
                    session.add(task_row)
                    session.flush()
                    ids[task.task_number] = task_row.task_id
        for _, _, task in iter_tasks(plan):
            for number in dict.fromkeys(task.depends_on):
                session.execute(
                    insert(task_dependencies).values(task_id=ids[task.task_number], depends_on_task_id=ids[number])
                )
                session.flush()
        row = session.get(MasterPlanRow, masterplan_id)
        assert row is not None
        row.project_name = plan.project_name
        row.description = plan.description
        row.tech_stack = dict(plan.tech_stack)
        row.architecture_style = plan.architecture_style
        row.total_tasks = len(ids)
        row.total_phases = len(plan.phases)
        row.total_milestones = milestones
        row.estimated_cost_usd = Decimal(str(plan.estimated_cost_usd)) if plan.estimated_cost_usd else None
        row.estimated_duration_minutes = plan.estimated_duration_minutes
        row.llm_model = _ANSWER.model
        row.status = MasterPlanStatus.DRAFT


def _committed_keys(timeline: Timeline) -> dict[str, list[tuple[Any, ...]]]:
    keys: dict[str, dict[tuple[Any, ...], None]] = {}
    for commit in timeline.of(UnitCommitted):
        for write in commit.writes:
            if write.key is not None and write.op != "delete":
                keys.setdefault(write.table, {})[tuple(write.key)] = None
    return {table: list(found) for table, found in keys.items()}


def read_back(url: str, keys: dict[str, list[tuple[Any, ...]]], raw: dict[str, Any]) -> Any:
    """The persist stage's readback: every committed row by key over a connection of its own, then the plan found
    among them; raises when a row is missing or the plan does not match its document."""
    reader = Readback(url)
    try:
        rows = {table: reader.rows_by_key(metadata.tables[table], table_keys) for table, table_keys in keys.items()}
    finally:
        reader.close()
    missing = {table: len(table_keys) - len(rows[table]) for table, table_keys in keys.items() if len(rows[table]) != len(table_keys)}
    if missing:
        raise AssertionError(f"committed rows not read back: {missing}")
    tasks = [task for phase in raw["phases"] for milestone in phase["milestones"] for task in milestone["tasks"]]
    match = match_plan(raw, tasks, Saved(rows, metadata.tables))
    problems = {
        name: value
        for name, value in (
            ("plan", match.plan is None),
            ("mismatches", match.mismatches),
            ("missing", match.missing),
            ("extra", match.extra),
            ("misplaced", match.misplaced),
        )
        if value
    }
    if problems or match.edges is None or sum(match.edges.values()) != sum(len(set(t["depends_on"])) for t in tasks):
        raise AssertionError(f"the plan read back does not match its document: {problems or match.edges_from}")
    return match


def _one_run(factory: DatabaseFactory, plan: MasterPlan, raw: dict[str, Any], naive: bool) -> tuple[float, float]:
    """(save, save + readback) seconds on a fresh database; the readback must find nothing wrong."""
    url = factory.new_database()
    engine = make_engine(url)
    try:
        sessions = make_session_factory(engine)
        masterplan_id = _start_plan(sessions)
        with engine.connect():  # open the pooled connection outside the timing, as a running app has it
            pass
        timeline = Timeline()
        with OrmWatch(timeline, _CODE, tables={table.fullname for table in metadata.sorted_tables}):
            if naive:
                save = time_call(lambda: naive_save_plan(sessions, masterplan_id, plan))
            else:
                generator = MasterPlanGenerator(None, sessions, models=DEFAULT_MODELS)  # type: ignore[arg-type]
                save = time_call(lambda: generator._save_plan(masterplan_id, plan, _ANSWER))
        keys = _committed_keys(timeline)
        readback = time_call(lambda: read_back(url, keys, raw))
        return save, save + readback
    finally:
        engine.dispose()
        factory.drop(url)


def measure_persistence(factory: DatabaseFactory, runs: int) -> PersistenceTimes:
    """``runs`` interleaved runs of ours and naive (after one warm-up each)."""
    raw = plan_document()
    plan = MasterPlan.model_validate(raw)
    _one_run(factory, plan, raw, naive=False)
    _one_run(factory, plan, raw, naive=True)
    samples: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(runs):
        for naive in (False, True):
            samples[naive].append(_one_run(factory, plan, raw, naive))
    return PersistenceTimes(
        ours_save=[s for s, _ in samples[False]],
        ours_total=[t for _, t in samples[False]],
        naive_save=[s for s, _ in samples[True]],
        naive_total=[t for _, t in samples[True]],
    )
