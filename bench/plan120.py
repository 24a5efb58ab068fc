"""A realistic 120-task masterplan with dependencies, built from the recording content."""

from __future__ import annotations

from typing import Any

from harness.contract import MasterPlan
from tests.support.content import discovery_for, iter_tasks, masterplan_for

__all__ = ["PLAN_TASKS", "discovery_document", "plan_document", "plan_model"]

#: How many tasks the benchmark plan has (the issue's "120-task masterplan").
PLAN_TASKS = 120
_KIND = "online_shop"  # 117 tasks, the largest of the recorded projects


def plan_document(tasks: int = PLAN_TASKS) -> dict[str, Any]:
    """The online-shop plan padded (or cut) to ``tasks`` tasks; added tasks depend on earlier ones."""
    plan = masterplan_for(_KIND)
    existing = list(iter_tasks(plan))
    last = plan["phases"][-1]["milestones"][-1]["tasks"]
    number = max(task["task_number"] for task in existing)
    while len(existing) < tasks:
        number += 1
        task = dict(existing[-1], task_number=number, title=f"Extra hardening step {number}")
        task["depends_on"] = [number - 1, number - 7]
        last.append(task)
        existing.append(task)
    plan["total_tasks"] = len(existing)
    return plan


def plan_model(tasks: int = PLAN_TASKS) -> MasterPlan:
    """:func:`plan_document` as the validated contract model the flow saves."""
    return MasterPlan.model_validate(plan_document(tasks))


def discovery_document() -> dict[str, Any]:
    """The discovery the plan was generated from."""
    return discovery_for(_KIND)
