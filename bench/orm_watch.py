"""The database-writes watcher's cost: the flow's 120-task plan save, watched vs unwatched, in one run.

    python bench/orm_watch.py            # 9 interleaved samples of each, after a warm-up
    python bench/orm_watch.py --runs 15

Two saves of the same plan (about 500 rows: phases, milestones, tasks, dependency edges, the
plan row) on fresh databases cloned from the migrated template: the flow's own
``MasterPlanGenerator._save_plan`` (bulk INSERTs, one unit of work) and the naive
add-one-row-and-flush save from ``bench/persistence.py`` (one statement per row: the watcher's
per-statement cost, ~500 times). Each is timed with and without an :class:`OrmWatch` installed,
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
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

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


def measure_orm_watch(factory, runs: int) -> list[WatchCost]:
    """``runs`` interleaved samples of each save, watched and unwatched (after one warm-up of each)."""
    from bench.persistence import _ANSWER, _start_plan, naive_save_plan
    from bench.plan120 import plan_model
    from harness.config import DEFAULT_MODELS
    from harness.flow.database import make_engine, make_session_factory
    from harness.flow.masterplan import MasterPlanGenerator
    from harness.observe.code import AppCode
    from harness.observe.orm import OrmWatch
    from harness.observe.timeline import RowsWritten, Timeline

    plan = plan_model()
    code = AppCode.for_modules(["harness.flow"])

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

    def flow_save(sessions, masterplan_id) -> None:
        MasterPlanGenerator(None, sessions, models=DEFAULT_MODELS)._save_plan(masterplan_id, plan, _ANSWER)  # type: ignore[arg-type]

    def naive_save(sessions, masterplan_id) -> None:
        naive_save_plan(sessions, masterplan_id, plan)

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
