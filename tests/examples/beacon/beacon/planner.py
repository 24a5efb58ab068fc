"""How a plan is cut into batches, and what a batch must contain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Batch", "PlanError", "check_batch", "check_discovery", "check_skeleton", "milestone_ranges", "plan_batches"]

DISCOVERY_FIELDS = ("domain", "bounded_contexts", "aggregates", "value_objects", "domain_events", "services")
SKELETON_FIELDS = ("project_name", "tech_stack", "total_tasks", "phases")
TASK_FIELDS = ("task_number", "title", "description", "complexity")


class PlanError(ValueError):
    """The model's answer does not fit the plan."""


@dataclass(frozen=True)
class MilestoneRange:
    #: Position of the milestone in the plan (0-based), to find its saved id.
    index: int
    label: str
    first: int
    last: int


@dataclass(frozen=True)
class Batch:
    number: int
    first: int
    last: int
    #: (milestone label, first, last) for each milestone this batch touches.
    assignment: tuple[tuple[str, int, int], ...]


def check_discovery(document: dict[str, Any]) -> None:
    missing = [name for name in DISCOVERY_FIELDS if name not in document]
    if missing:
        raise PlanError(f"discovery lacks {', '.join(missing)}")


def check_skeleton(skeleton: dict[str, Any]) -> None:
    missing = [name for name in SKELETON_FIELDS if name not in skeleton]
    if missing:
        raise PlanError(f"skeleton lacks {', '.join(missing)}")
    counted = sum(m["task_count"] for phase in skeleton["phases"] for m in phase["milestones"])
    if counted != skeleton["total_tasks"]:
        raise PlanError(f"skeleton says {skeleton['total_tasks']} tasks, its milestones {counted}")


def milestone_ranges(skeleton: dict[str, Any]) -> list[MilestoneRange]:
    """Task numbers of each milestone: numbered from 1 through the plan, in skeleton order."""
    ranges, next_number = [], 1
    for phase in skeleton["phases"]:
        for milestone in phase["milestones"]:
            label = f"phase {phase['phase_number']} {phase['name']} / milestone {milestone['name']}"
            count = milestone["task_count"]
            ranges.append(MilestoneRange(len(ranges), label, next_number, next_number + count - 1))
            next_number += count
    return ranges


def plan_batches(skeleton: dict[str, Any], size: int) -> list[Batch]:
    """Consecutive windows of ``size`` task numbers: 1..size, size+1..2*size, ..."""
    ranges = milestone_ranges(skeleton)
    total = skeleton["total_tasks"]
    batches = []
    for number, first in enumerate(range(1, total + 1, size), start=1):
        last = min(first + size - 1, total)
        assignment = tuple(
            (r.label, max(first, r.first), min(last, r.last)) for r in ranges if r.first <= last and r.last >= first
        )
        batches.append(Batch(number, first, last, assignment))
    return batches


def check_batch(batch: Batch, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's tasks, in order; :class:`PlanError` for anything the plan cannot take."""
    tasks = answer.get("tasks")
    if not isinstance(tasks, list):
        raise PlanError(f"batch {batch.number}: no task list")
    numbers = [task.get("task_number") for task in tasks]
    if numbers != list(range(batch.first, batch.last + 1)):
        raise PlanError(f"batch {batch.number}: asked for tasks {batch.first}-{batch.last}, got {numbers[:5]}...")
    for task in tasks:
        missing = [name for name in TASK_FIELDS if name not in task]
        if missing:
            raise PlanError(f"task {task['task_number']} lacks {', '.join(missing)}")
        later = [n for n in task.get("depends_on") or [] if not 1 <= n < task["task_number"]]
        if later:
            raise PlanError(f"task {task['task_number']} depends on tasks not before it: {later}")
    return tasks
