"""MasterPlan generation: one Claude call for the whole plan, validated, saved with all its children."""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from atlas.db import SessionLocal, get_db_context
from atlas.llm import ClaudeClient
from atlas.models import (
    DiscoveryDocument,
    MasterPlan,
    MasterPlanMilestone,
    MasterPlanPhase,
    MasterPlanTask,
    PlanStatus,
    TaskComplexity,
)
from atlas.prompts import MASTERPLAN_SYSTEM_PROMPT, build_masterplan_prompt
from atlas.services.discovery_agent import DiscoveryAgent, extract_json

__all__ = ["MasterPlanGenerator"]

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("project_name", "tech_stack", "phases", "total_tasks")


class MasterPlanGenerator:
    """Generates a masterplan from a saved discovery and stores it."""

    def __init__(self, llm: ClaudeClient, discovery_agent: DiscoveryAgent, *, max_tokens: int = 64000) -> None:
        self.llm = llm
        self.discovery_agent = discovery_agent
        self.max_tokens = max_tokens

    async def generate_masterplan(self, discovery_id: UUID, session_id: str, user_id: str) -> UUID:
        """Load the discovery, ask for the plan, parse, validate and save it; returns its ``masterplan_id``."""
        discovery = self._load_discovery(discovery_id)
        if not discovery:
            raise ValueError(f"Discovery not found: {discovery_id}")

        prompt = build_masterplan_prompt(discovery.user_request, _discovery_document(discovery))
        logger.info("Generating masterplan for discovery %s", discovery_id)
        response = self.llm.complete(system=MASTERPLAN_SYSTEM_PROMPT, prompt=prompt, max_tokens=self.max_tokens)
        if response["stop_reason"] == "max_tokens":
            logger.warning("Masterplan response hit max_tokens (%d)", self.max_tokens)

        masterplan_data = self._parse_masterplan(response["content"])
        self._validate_masterplan(masterplan_data)
        masterplan_id = self._save_masterplan(
            discovery_id=discovery_id,
            session_id=session_id,
            user_id=user_id,
            masterplan_data=masterplan_data,
            llm_model=response["model"],
            llm_cost=response["cost_usd"],
        )
        return masterplan_id

    def _load_discovery(self, discovery_id: UUID) -> DiscoveryDocument | None:
        return self.discovery_agent.get_discovery(discovery_id)

    def _parse_masterplan(self, content: str) -> dict[str, Any]:
        try:
            return extract_json(content)
        except json.JSONDecodeError as exc:
            logger.error("MasterPlan response is not valid JSON: %s", exc)
            raise ValueError(f"Invalid masterplan JSON: {exc}") from exc

    def _validate_masterplan(self, data: dict[str, Any]) -> None:
        missing = [field for field in REQUIRED_FIELDS if field not in data]
        if missing:
            raise ValueError(f"MasterPlan is missing required fields: {', '.join(missing)}")
        numbers = [task["task_number"] for task in _tasks(data)]
        if len(numbers) != len(set(numbers)):
            raise ValueError("MasterPlan has duplicate task numbers")
        if data["total_tasks"] != len(numbers):
            raise ValueError(f"MasterPlan says {data['total_tasks']} tasks but lists {len(numbers)}")
        known = set(numbers)
        for task in _tasks(data):
            unknown = [n for n in task.get("depends_on", []) if n not in known]
            if unknown:
                raise ValueError(f"Task {task['task_number']} depends on unknown tasks {unknown}")

    def _save_masterplan(
        self,
        discovery_id: UUID,
        session_id: str,
        user_id: str,
        masterplan_data: dict[str, Any],
        llm_model: str | None,
        llm_cost: float | None,
    ) -> UUID:
        with get_db_context() as db:
            masterplan = MasterPlan(
                discovery_id=discovery_id,
                session_id=session_id,
                user_id=user_id,
                project_name=masterplan_data["project_name"],
                description=masterplan_data.get("description"),
                status=PlanStatus.DRAFT,
                tech_stack=masterplan_data["tech_stack"],
                architecture_style=masterplan_data.get("architecture_style"),
                total_tasks=masterplan_data["total_tasks"],
                llm_model=llm_model,
                generation_cost_usd=llm_cost,
                estimated_cost_usd=masterplan_data.get("estimated_cost_usd"),
                estimated_duration_minutes=masterplan_data.get("estimated_duration_minutes"),
            )
            db.add(masterplan)
            db.flush()  # get masterplan_id without committing
            masterplan_id = masterplan.masterplan_id

            tasks_by_number: dict[int, MasterPlanTask] = {}
            for phase_data in masterplan_data["phases"]:
                db.add(self._create_phase(masterplan, phase_data, tasks_by_number))
            db.flush()  # assigns task ids
            self._update_task_dependencies(db, tasks_by_number, masterplan_data)

            masterplan.total_phases = len(masterplan_data["phases"])
            masterplan.total_milestones = sum(len(phase["milestones"]) for phase in masterplan_data["phases"])
        logger.info("MasterPlan %s saved to database (%d tasks)", masterplan_id, len(tasks_by_number))
        return masterplan_id

    def _create_phase(
        self, masterplan: MasterPlan, phase_data: dict[str, Any], tasks_by_number: dict[int, MasterPlanTask]
    ) -> MasterPlanPhase:
        phase = MasterPlanPhase(
            masterplan=masterplan,
            phase_number=phase_data["phase_number"],
            name=phase_data["name"],
            description=phase_data.get("description"),
        )
        for milestone_data in phase_data["milestones"]:
            milestone = MasterPlanMilestone(
                masterplan_id=masterplan.masterplan_id,
                phase=phase,
                milestone_number=milestone_data["milestone_number"],
                name=milestone_data["name"],
                description=milestone_data.get("description"),
            )
            for task_data in milestone_data["tasks"]:
                task = MasterPlanTask(
                    masterplan_id=masterplan.masterplan_id,
                    phase=phase,
                    milestone=milestone,
                    task_number=task_data["task_number"],
                    name=task_data["title"],
                    description=task_data.get("description"),
                    complexity=TaskComplexity(task_data.get("complexity", "medium")),
                    target_files=task_data.get("target_files", []),
                    estimated_tokens=task_data.get("estimated_tokens"),
                )
                tasks_by_number[task.task_number] = task
        return phase

    def _update_task_dependencies(
        self, db: Session, tasks_by_number: dict[int, MasterPlanTask], masterplan_data: dict[str, Any]
    ) -> None:
        for task_data in _tasks(masterplan_data):
            depends_on = task_data.get("depends_on") or []
            if depends_on:
                task = tasks_by_number[task_data["task_number"]]
                task.depends_on_tasks = [str(tasks_by_number[number].task_id) for number in depends_on]

    def get_masterplan(self, masterplan_id: UUID) -> MasterPlan | None:
        with SessionLocal() as db:
            statement = (
                select(MasterPlan)
                .where(MasterPlan.masterplan_id == masterplan_id)
                .options(
                    selectinload(MasterPlan.phases)
                    .selectinload(MasterPlanPhase.milestones)
                    .selectinload(MasterPlanMilestone.tasks)
                )
            )
            return db.scalars(statement).first()


def _tasks(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [task for phase in data["phases"] for milestone in phase["milestones"] for task in milestone["tasks"]]


def _discovery_document(discovery: DiscoveryDocument) -> dict[str, Any]:
    return {
        "domain": discovery.domain,
        "bounded_contexts": discovery.bounded_contexts,
        "aggregates": discovery.aggregates,
        "value_objects": discovery.value_objects,
        "domain_events": discovery.domain_events,
        "services": discovery.services,
    }
