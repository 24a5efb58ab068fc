"""Reads and writes of discoveries and plans, in SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from beacon.db import write_transaction
from beacon.tables import discoveries, plan_milestones, plan_phases, plan_tasks, plans

__all__ = ["PlanStore"]


class PlanStore:
    """Beacon's tables behind one object; every write is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save_discovery(
        self,
        *,
        user_id: str,
        session_id: str,
        request: str,
        document: dict[str, Any],
        model: str,
        input_tokens: int | None,
        output_tokens: int | None,
    ) -> UUID:
        async with write_transaction(self.engine, "discovery") as conn:
            result = await conn.execute(
                insert(discoveries)
                .values(
                    user_id=user_id,
                    session_id=session_id,
                    request=request,
                    domain=document["domain"],
                    document=document,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                )
                .returning(discoveries.c.id)
            )
            return result.scalar_one()

    async def load_discovery(self, discovery_id: UUID) -> Row[Any] | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(discoveries).where(discoveries.c.id == discovery_id))
            return result.first()

    async def create_plan(
        self, *, discovery_id: UUID, user_id: str, session_id: str, skeleton: dict[str, Any]
    ) -> tuple[UUID, list[int]]:
        """The plan row (``generating``), its phases and milestones; returns the plan id and milestone ids in order."""
        async with write_transaction(self.engine, "plan skeleton") as conn:
            plan_id = (
                await conn.execute(
                    insert(plans)
                    .values(
                        discovery_id=discovery_id,
                        user_id=user_id,
                        session_id=session_id,
                        project_name=skeleton["project_name"],
                        description=skeleton.get("description"),
                        tech_stack=skeleton.get("tech_stack") or {},
                        architecture_style=skeleton.get("architecture_style"),
                        total_tasks=skeleton["total_tasks"],
                        estimated_cost_usd=skeleton.get("estimated_cost_usd"),
                        estimated_duration_minutes=skeleton.get("estimated_duration_minutes"),
                        status="generating",
                    )
                    .returning(plans.c.id)
                )
            ).scalar_one()
            milestone_ids: list[int] = []
            for phase in skeleton["phases"]:
                phase_id = (
                    await conn.execute(
                        insert(plan_phases)
                        .values(
                            plan_id=plan_id,
                            number=phase["phase_number"],
                            name=phase["name"],
                            description=phase.get("description"),
                        )
                        .returning(plan_phases.c.id)
                    )
                ).scalar_one()
                rows = [
                    {
                        "phase_id": phase_id,
                        "number": milestone["milestone_number"],
                        "name": milestone["name"],
                        "description": milestone.get("description"),
                        "task_count": milestone["task_count"],
                        "scope": milestone.get("scope"),
                    }
                    for milestone in phase["milestones"]
                ]
                result = await conn.execute(
                    insert(plan_milestones).returning(plan_milestones.c.id, sort_by_parameter_order=True), rows
                )
                milestone_ids.extend(result.scalars().all())
            return plan_id, milestone_ids

    async def save_tasks(
        self, *, plan_id: UUID, batch: int, tasks: Sequence[dict[str, Any]], milestone_of: dict[int, int]
    ) -> int:
        """One batch of tasks; ``milestone_of`` maps a task number to its milestone id."""
        rows = [
            {
                "plan_id": plan_id,
                "task_number": task["task_number"],
                "milestone_id": milestone_of[task["task_number"]],
                "batch": batch,
                "title": task["title"],
                "description": task["description"],
                "complexity": task["complexity"],
                "depends_on": list(task.get("depends_on") or []),
                "target_files": list(task.get("target_files") or []),
                "estimated_tokens": task.get("estimated_tokens"),
            }
            for task in tasks
        ]
        async with write_transaction(self.engine, f"tasks of batch {batch}") as conn:
            await conn.execute(insert(plan_tasks), rows)
        return len(rows)

    async def mark_ready(self, plan_id: UUID) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(plans).where(plans.c.id == plan_id).values(status="ready", completed_at=func.now())
            )

    async def mark_failed(self, plan_id: UUID, error: str) -> None:
        async with write_transaction(self.engine, "plan failure") as conn:
            await conn.execute(update(plans).where(plans.c.id == plan_id).values(status="failed", error=error[:2000]))
