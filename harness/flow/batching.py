"""How a plan skeleton is cut into batches of tasks.

Milestones are packed whole into batches of at most ``max_tasks`` tasks, in plan order; a
milestone that does not fit in what is left of a batch starts the next one, and a milestone
larger than a batch is split across several. Numbering is continuous, so each batch is one
range of task numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.contract import PlanSkeleton, skeleton_slots

__all__ = ["Batch", "BatchPart", "plan_batches"]


@dataclass(frozen=True)
class BatchPart:
    """The part of one milestone a batch fills: task numbers ``first``..``last``."""

    label: str
    scope: str
    first: int
    last: int


@dataclass(frozen=True)
class Batch:
    """One batch call: its number (from 1) and the milestone parts it fills."""

    number: int
    parts: tuple[BatchPart, ...]

    @property
    def first(self) -> int:
        return self.parts[0].first

    @property
    def last(self) -> int:
        return self.parts[-1].last

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def plan_batches(skeleton: PlanSkeleton, max_tasks: int) -> list[Batch]:
    """The batches that fill ``skeleton``, each of at most ``max_tasks`` tasks."""
    if max_tasks < 1:
        raise ValueError("a batch must hold at least one task")
    batches: list[Batch] = []
    current: list[BatchPart] = []
    size = 0

    def close() -> None:
        nonlocal current, size
        if current:
            batches.append(Batch(len(batches) + 1, tuple(current)))
        current, size = [], 0

    for slot in skeleton_slots(skeleton):
        phase = skeleton.phases[slot.phase_index]
        milestone = phase.milestones[slot.milestone_index]
        label = f"phase {slot.phase_index + 1} {phase.name!r}, milestone {slot.milestone_index + 1} {milestone.name!r}"
        start = slot.first
        while start <= slot.last:
            remaining = slot.last - start + 1
            room = max_tasks - size
            if room == 0 or (size > 0 and room < remaining <= max_tasks):
                close()  # keep a milestone that fits in one batch whole
                continue
            take = min(remaining, room)
            current.append(BatchPart(label, milestone.scope, start, start + take - 1))
            size += take
            start += take
    close()
    return batches
