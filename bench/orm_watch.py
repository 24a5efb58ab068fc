"""The database-writes watcher's cost: the flow's 120-task plan save, watched vs unwatched, in one run.

    python bench/orm_watch.py            # 9 interleaved samples of each, after a warm-up
    python bench/orm_watch.py --runs 15

Two saves of the same plan (about 500 rows: phases, milestones, tasks, dependency edges, the
plan row) on fresh databases cloned from the migrated template: the flow's own
``MasterPlanGenerator._save_plan`` (bulk INSERTs, one unit of work) and a row-by-row save
(add one row, flush, add the next; one INSERT per edge: the watcher's per-statement cost,
~500 times). Each is timed with and without an :class:`OrmWatch` installed,
samples interleaved so a busy machine slows both alike; the figures are ratios of medians, of
wall-clock time and of this process's CPU time (what the watcher adds is Python work in the
application's process; the CPU figure is the steadier one on a shared machine, where the
database's share of the wall clock swings with the load). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fmt_ms, median, time_call

__all__ = ["WatchCost", "measure_orm_watch"]


@dataclass(frozen=True)
class WatchCost:
    """Save times (seconds) of one kind of save, unwatched and watched, and what the watch recorded."""

    name: str
    unwatched: list[float] = field(default_factory=list)
    watched: list[float] = field(default_factory=list)
    #: CPU seconds of this process during each save.
    unwatched_cpu: list[float] = field(default_factory=list)
    watched_cpu: list[float] = field(default_factory=list)
    rows_recorded: int = 0

    @property
    def ratio(self) -> float:
        """Watched median over unwatched median, wall clock (1.0: no cost)."""
        return median(self.watched) / median(self.unwatched)

    @property
    def cpu_ratio(self) -> float:
        """Watched median over unwatched median, this process's CPU time."""
        return median(self.watched_cpu) / median(self.unwatched_cpu)


def _start_plan(sessions: Any) -> uuid.UUID:
    """A discovery row and a plan row in status ``generating``, as the flow leaves them before saving tasks."""
    from bench.plan120 import discovery_document
    from harness.flow.database import session_scope
    from harness.flow.models import DiscoveryDocument, MasterPlanStatus
    from harness.flow.models import MasterPlan as MasterPlanRow

    document = discovery_document()
    discovery_id, masterplan_id = uuid.uuid4(), uuid.uuid4()
    with session_scope(sessions) as session:
        session.add(
            DiscoveryDocument(
                discovery_id=discovery_id,
                session_id="bench-sid",
                user_id="bench-user",
                user_request="bench",
                **{key: document[key] for key in _DISCOVERY_FIELDS},
            )
        )
        session.flush()
        session.add(
            MasterPlanRow(
                masterplan_id=masterplan_id,
                discovery_id=discovery_id,
                session_id="bench-sid",
                user_id="bench-user",
                project_name=document["domain"],
                status=MasterPlanStatus.GENERATING,
                tech_stack={},
            )
        )
    return masterplan_id


_DISCOVERY_FIELDS = ("domain", "bounded_contexts", "aggregates", "value_objects", "domain_events", "services")


def _row_by_row_save(sessions: Any, masterplan_id: uuid.UUID, plan: Any) -> None:
    """The same plan saved the way many applications do it: add one row, flush, add the next; an INSERT per edge."""
    from sqlalchemy import insert

    from harness.flow.database import session_scope
    from harness.flow.models import MasterPlan as MasterPlanRow
    from harness.flow.models import (
        MasterPlanMilestone,
        MasterPlanPhase,
        MasterPlanStatus,
        MasterPlanTask,
        task_dependencies,
    )

    with session_scope(sessions) as session:
        ids: dict[int, uuid.UUID] = {}
        for phase_number, phase in enumerate(plan.phases, start=1):
            phase_row = MasterPlanPhase(masterplan_id=masterplan_id, phase_number=phase_number, name=phase.name)
            session.add(phase_row)
            session.flush()
            for milestone_number, milestone in enumerate(phase.milestones, start=1):
                milestone_row = MasterPlanMilestone(
                    phase_id=phase_row.phase_id, milestone_number=milestone_number, name=milestone.name
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
                        target_files=list(task.target_files),
                        estimated_tokens=task.estimated_tokens,
                    )
                    session.add(task_row)
                    session.flush()
                    ids[task.task_number] = task_row.task_id
        for phase in plan.phases:
            for milestone in phase.milestones:
                for task in milestone.tasks:
                    for number in dict.fromkeys(task.depends_on):
                        session.execute(
                            insert(task_dependencies).values(
                                task_id=ids[task.task_number], depends_on_task_id=ids[number]
                            )
                        )
        row = session.get(MasterPlanRow, masterplan_id)
        assert row is not None
        row.total_tasks = len(ids)
        row.status = MasterPlanStatus.DRAFT


def measure_orm_watch(factory: Any, runs: int) -> list[WatchCost]:
    """``runs`` interleaved samples of each save, watched and unwatched (after one warm-up of each)."""
    from bench.plan120 import plan_model
    from harness.config import DEFAULT_MODELS
    from harness.flow.database import make_engine, make_session_factory
    from harness.flow.llm import LLMAnswer
    from harness.flow.masterplan import MasterPlanGenerator
    from harness.observe.code import AppCode
    from harness.observe.orm import OrmWatch
    from harness.observe.timeline import RowsWritten, Timeline

    plan = plan_model()
    code = AppCode.for_modules(["harness.flow"])
    answer = LLMAnswer(
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

    def one(save: Callable[..., None], watched: bool) -> tuple[float, float, int]:
        url = factory.new_database()
        engine = make_engine(url)
        try:
            sessions = make_session_factory(engine)
            masterplan_id = _start_plan(sessions)
            with engine.connect():  # the pooled connection exists already in a running app
                pass
            timeline = Timeline()
            watch = OrmWatch(timeline, code) if watched else nullcontext()
            with watch:
                cpu = time.process_time()
                seconds = time_call(lambda: save(sessions, masterplan_id))
                cpu = time.process_time() - cpu
            return seconds, cpu, sum(len(event.writes) for event in timeline.of(RowsWritten))
        finally:
            engine.dispose()
            factory.drop(url)

    def flow_save(sessions: Any, masterplan_id: uuid.UUID) -> None:
        MasterPlanGenerator(None, sessions, models=DEFAULT_MODELS)._save_plan(masterplan_id, plan, answer)  # type: ignore[arg-type]

    def naive_save(sessions: Any, masterplan_id: uuid.UUID) -> None:
        _row_by_row_save(sessions, masterplan_id, plan)

    results = []
    for name, save in (("flow save (bulk INSERTs)", flow_save), ("naive save (a flush per row)", naive_save)):
        one(save, False)
        one(save, True)
        cost = WatchCost(name)
        recorded = 0
        for _ in range(runs):
            seconds, cpu, _ = one(save, False)
            cost.unwatched.append(seconds)
            cost.unwatched_cpu.append(cpu)
            seconds, cpu, recorded = one(save, True)
            cost.watched.append(seconds)
            cost.watched_cpu.append(cpu)
        results.append(dataclasses.replace(cost, rows_recorded=recorded))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="samples of each save, watched and unwatched")
    args = parser.parse_args(argv)

    from harness.flow.database import migrate
    from harness.postgres import DatabaseFactory, start_cluster

    cluster = start_cluster()
    try:
        costs = measure_orm_watch(DatabaseFactory(cluster, prepare_template=migrate), args.runs)
    finally:
        cluster.stop()
    print(
        "| save | unwatched | watched | watched ÷ unwatched | CPU unwatched | CPU watched | CPU ratio | rows recorded | runs |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for cost in costs:
        print(
            f"| {cost.name} | {fmt_ms(median(cost.unwatched))} | {fmt_ms(median(cost.watched))} | {cost.ratio:.2f}× "
            f"| {fmt_ms(median(cost.unwatched_cpu))} | {fmt_ms(median(cost.watched_cpu))} | {cost.cpu_ratio:.2f}× "
            f"| {cost.rows_recorded} | {args.runs} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
