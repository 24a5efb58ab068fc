"""Cutting a skeleton into batches, and judging a batch together with the batches before it."""

from __future__ import annotations

from harness.contract import PlanSkeleton, ProblemKind, Task, assemble_plan, batch_problems, plan_problems
from harness.flow.batching import plan_batches
from tests.support import content
from tests.support.scenarios import skeleton_of


def _skeleton(counts: list[list[int]]) -> PlanSkeleton:
    phases = [
        {"name": f"P{p}", "milestones": [{"name": f"M{p}.{m}", "task_count": n} for m, n in enumerate(row)]}
        for p, row in enumerate(counts)
    ]
    return PlanSkeleton.model_validate({"project_name": "x", "total_tasks": sum(map(sum, counts)), "phases": phases})


def _task(number: int, *deps: int) -> Task:
    return Task(task_number=number, title=f"task {number}", depends_on=list(deps), estimated_tokens=400)


def test_batches_cover_every_task_once_in_order_and_never_exceed_the_limit() -> None:
    """Each real plan is cut into ranges of at most 50 continuous task numbers covering 1..total."""
    for kind in ("task_manager", "online_shop", "clinic_booking"):
        skeleton = PlanSkeleton.model_validate(skeleton_of(content.masterplan_for(kind)))
        batches = plan_batches(skeleton, 50)
        numbers = [n for batch in batches for n in range(batch.first, batch.last + 1)]
        assert numbers == list(range(1, skeleton.total_tasks + 1))
        assert all(batch.size <= 50 for batch in batches)
        assert [batch.number for batch in batches] == list(range(1, len(batches) + 1))


def test_milestones_stay_whole_when_they_fit_and_large_ones_are_split() -> None:
    """A milestone that fits in a batch is never split; a 70-task milestone fills the room left, then the next batch."""
    batches = plan_batches(_skeleton([[30, 30], [70]]), 50)
    assert [(b.first, b.last) for b in batches] == [(1, 30), (31, 80), (81, 130)]


def test_batch_with_missing_and_invented_numbers_is_a_batch_range_problem() -> None:
    """A batch asked for 4-6 that answers 4 and 9 misses 5-6 and adds 9."""
    problems = batch_problems([_task(1), _task(2), _task(3)], [_task(4), _task(9)], first=4, last=6)
    (problem,) = [p for p in problems if p.kind is ProblemKind.BATCH_RANGE]
    assert problem.evidence["missing"] == [5, 6] and problem.evidence["unexpected"] == [9]


def test_dependencies_may_point_to_earlier_batches_but_not_later_ones() -> None:
    """Task 4 may depend on task 1 from batch 1; depending on task 7 (not generated yet) is dangling."""
    earlier = [_task(1), _task(2), _task(3)]
    assert batch_problems(earlier, [_task(4, 1), _task(5, 4)], first=4, last=5) == []
    problems = batch_problems(earlier, [_task(4, 7), _task(5)], first=4, last=5)
    assert [p.kind for p in problems] == [ProblemKind.DANGLING_DEPENDENCY]


def test_repeating_a_number_of_an_earlier_batch_is_a_duplicate() -> None:
    """A batch that reuses task number 3 from an earlier batch is reported as a duplicate."""
    problems = batch_problems([_task(1), _task(2), _task(3)], [_task(3)], first=3, last=3)
    assert ProblemKind.DUPLICATE_TASK_NUMBER in {p.kind for p in problems}


def test_assembled_plan_puts_each_task_in_the_milestone_owning_its_number() -> None:
    """Skeleton plus every batch's tasks gives back the original plan, coherent as a whole."""
    plan = content.masterplan_for("clinic_booking")
    skeleton = PlanSkeleton.model_validate(skeleton_of(plan))
    tasks = [Task.model_validate(task) for task in content.iter_tasks(plan)]
    assembled = assemble_plan(skeleton, tasks)
    assert [[len(m.tasks) for m in p.milestones] for p in assembled.phases] == [
        [len(m["tasks"]) for m in p["milestones"]] for p in plan["phases"]
    ]
    assert [p for p in plan_problems(assembled) if p.blocking] == []
