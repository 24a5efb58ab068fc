"""MasterPlanGenerator: a saved discovery → similar examples → a streamed LLM plan → saved rows.

The plan row is created first with status ``generating`` and committed, so a generation
that fails is visible as ``failed`` with its error — never missing, never half-written
looking complete. The phases, milestones, tasks and dependencies are written in one
unit of work together with the switch to ``draft``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from harness.config import Models
from harness.contract import Discovery, MasterPlan, iter_tasks, parse_masterplan, plan_problems
from harness.flow.database import session_scope
from harness.flow.discovery import ensure_complete
from harness.flow.errors import DiscoveryNotFound
from harness.flow.examples import EXAMPLE_PLANS, closest
from harness.flow.hooks import FlowHooks, LLMAnswer, NoHooks
from harness.flow.llm import LLMClients, embed, stream_message
from harness.flow.models import (
    DiscoveryDocument,
    MasterPlanMilestone,
    MasterPlanPhase,
    MasterPlanStatus,
    MasterPlanTask,
    task_dependencies,
)
from harness.flow.models import MasterPlan as MasterPlanRow
from harness.flow.prompts import MASTERPLAN_SYSTEM, discovery_summary, masterplan_prompt
from harness.redaction import redact_text

__all__ = ["MasterPlanGenerator", "PlanRejected"]

#: How many example outlines go into the prompt.
EXAMPLES_IN_PROMPT = 2
#: Every dependency edge of a plan in one statement, whatever its size.
_INSERT_EDGES = text(
    f"INSERT INTO {task_dependencies.name} (task_id, depends_on_task_id)"
    " SELECT * FROM unnest(CAST(:task_ids AS uuid[]), CAST(:depends_on AS uuid[]))"
)
#: Error text kept on a failed plan row.
_ERROR_CHARS = 2000

ProgressCallback = Callable[[int], Awaitable[None]]


class PlanRejected(ValueError):
    """The plan is valid JSON but unusable as a whole (cycles, dangling dependencies, ...)."""

    def __init__(self, problems: list) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = problems


class MasterPlanGenerator:
    """Generates a masterplan from a saved discovery and saves it with all its children."""

    POINT = "masterplan"
    EXAMPLES_POINT = "examples"

    def __init__(
        self,
        clients: LLMClients,
        session_factory: sessionmaker[Session],
        *,
        models: Models,
        hooks: FlowHooks | None = None,
    ) -> None:
        self._clients = clients
        self._sessions = session_factory
        self._models = models
        self._hooks = hooks or NoHooks()

    async def generate_masterplan(
        self,
        discovery_id: uuid.UUID,
        session_id: str,
        user_id: str,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> uuid.UUID:
        """Generate, validate and save a masterplan; returns its id. On failure the plan is marked failed."""
        hooks = self._hooks
        with hooks.step("persist", self.POINT):
            discovery_row = self._load_discovery(discovery_id)
            discovery = Discovery.model_validate(
                {
                    "domain": discovery_row.domain,
                    "bounded_contexts": discovery_row.bounded_contexts,
                    "aggregates": discovery_row.aggregates,
                    "value_objects": discovery_row.value_objects,
                    "domain_events": discovery_row.domain_events,
                    "services": discovery_row.services,
                    "assumptions": discovery_row.assumptions or [],
                    "risks": discovery_row.risks or [],
                }
            )
            masterplan_id = self._start_plan(discovery_row, session_id, user_id)
        try:
            examples = await self._retrieve_examples(discovery)
            with hooks.step("llm", self.POINT):
                answer = await stream_message(
                    self._clients,
                    model=self._models.generation,
                    system=MASTERPLAN_SYSTEM,
                    prompt=masterplan_prompt(discovery_row.user_request, discovery, examples),
                    max_tokens=self._models.masterplan_max_tokens,
                    on_progress=on_progress,
                )
            hooks.llm_answered(self.POINT, answer)
            with hooks.step("llm", self.POINT):
                ensure_complete(self.POINT, answer)
            with hooks.step("parse", self.POINT):
                plan = parse_masterplan(answer.text)
                blocking = [problem for problem in plan_problems(plan) if problem.blocking]
                if blocking:
                    raise PlanRejected(blocking)
            with hooks.step("persist", self.POINT):
                self._save_plan(masterplan_id, plan, answer)
        except BaseException as exc:
            self._mark_failed(masterplan_id, exc)
            raise
        hooks.saved(self.POINT, MasterPlanRow.__tablename__, masterplan_id)
        return masterplan_id

    def get_masterplan(self, masterplan_id: uuid.UUID) -> MasterPlanRow | None:
        """The saved plan, usable after its session has closed."""
        with session_scope(self._sessions) as session:
            found = session.scalars(select(MasterPlanRow).where(MasterPlanRow.masterplan_id == masterplan_id)).first()
        if found is not None:
            self._hooks.loaded(self.POINT, found)
        return found

    # -- steps -----------------------------------------------------------------------------

    def _load_discovery(self, discovery_id: uuid.UUID) -> DiscoveryDocument:
        with session_scope(self._sessions) as session:
            found = session.get(DiscoveryDocument, discovery_id)
        if found is None:
            raise DiscoveryNotFound(discovery_id)
        return found

    def _start_plan(self, discovery: DiscoveryDocument, session_id: str, user_id: str) -> uuid.UUID:
        row = MasterPlanRow(
            masterplan_id=uuid.uuid4(),
            discovery_id=discovery.discovery_id,
            session_id=session_id,
            user_id=user_id,
            project_name=discovery.domain,
            status=MasterPlanStatus.GENERATING,
            tech_stack={},
            total_tasks=0,
            total_phases=0,
            total_milestones=0,
            llm_model=self._models.generation,
        )
        with session_scope(self._sessions) as session:
            session.add(row)
        return row.masterplan_id

    async def _retrieve_examples(self, discovery: Discovery) -> list[str]:
        """Outlines of the most similar example plans; none when the embeddings call fails."""
        texts = [discovery_summary(discovery)] + [example.description for example in EXAMPLE_PLANS]
        try:
            with self._hooks.step("llm", self.EXAMPLES_POINT):
                vectors = await embed(self._clients, model=self._models.embedding, texts=texts)
        except Exception:
            # Examples improve the plan but are not needed for it: go on without them.
            return []
        best = closest(vectors[0], vectors[1:], EXAMPLES_IN_PROMPT)
        return [f"{EXAMPLE_PLANS[i].name}: {EXAMPLE_PLANS[i].outline}" for i in best]

    def _save_plan(self, masterplan_id: uuid.UUID, plan: MasterPlan, answer: LLMAnswer) -> None:
        """Write every child and flip the plan to ``draft``, in one unit of work.

        Children go in as one multi-row INSERT per table (ids made here) rather than as ORM
        objects linked through relationships: the same rows in the same transaction, but the
        unit-of-work bookkeeping for ~500 objects and links cost more than the database did.
        """
        with session_scope(self._sessions) as session:
            row = session.get(MasterPlanRow, masterplan_id, with_for_update=True)
            if row is None:
                raise LookupError(f"masterplan {masterplan_id} vanished before its tasks were saved")
            phases: list[dict[str, Any]] = []
            milestones: list[dict[str, Any]] = []
            tasks: list[dict[str, Any]] = []
            task_ids: dict[int, uuid.UUID] = {}
            for phase_index, phase in enumerate(plan.phases, start=1):
                phase_id = uuid.uuid4()
                phases.append(
                    {
                        "phase_id": phase_id,
                        "masterplan_id": masterplan_id,
                        "phase_number": phase.phase_number or phase_index,
                        "name": phase.name,
                        "description": phase.description,
                    }
                )
                for milestone_index, milestone in enumerate(phase.milestones, start=1):
                    milestone_id = uuid.uuid4()
                    milestones.append(
                        {
                            "milestone_id": milestone_id,
                            "phase_id": phase_id,
                            "milestone_number": milestone.milestone_number or milestone_index,
                            "name": milestone.name,
                            "description": milestone.description,
                        }
                    )
                    for task in milestone.tasks:
                        task_ids[task.task_number] = uuid.uuid4()
                        tasks.append(
                            {
                                "task_id": task_ids[task.task_number],
                                "masterplan_id": masterplan_id,
                                "milestone_id": milestone_id,
                                "task_number": task.task_number,
                                "title": task.title,
                                "description": task.description,
                                "complexity": task.complexity.value,
                                "target_files": list(task.target_files),
                                "estimated_tokens": task.estimated_tokens,
                                "status": "pending",
                            }
                        )
            edges = [
                (task_ids[task.task_number], task_ids[number])
                for _, _, task in iter_tasks(plan)
                for number in dict.fromkeys(task.depends_on)
            ]
            for model, rows in ((MasterPlanPhase, phases), (MasterPlanMilestone, milestones), (MasterPlanTask, tasks)):
                if rows:
                    session.execute(insert(model), rows)
            if edges:
                # Two arrays, one statement, one round trip, one cached compilation for any plan size.
                session.execute(_INSERT_EDGES, {"task_ids": [a for a, _ in edges], "depends_on": [b for _, b in edges]})
            row.project_name = plan.project_name
            row.description = plan.description
            row.tech_stack = dict(plan.tech_stack)
            row.architecture_style = plan.architecture_style
            row.total_tasks = len(task_ids)
            row.total_phases = len(plan.phases)
            row.total_milestones = len(milestones)
            row.estimated_cost_usd = _decimal(plan.estimated_cost_usd)
            row.estimated_duration_minutes = plan.estimated_duration_minutes
            row.llm_model = answer.model
            row.generation_cost_usd = _decimal(answer.cost_usd)
            row.status = MasterPlanStatus.DRAFT
            row.error_message = None

    def _mark_failed(self, masterplan_id: uuid.UUID, exc: BaseException) -> None:
        """Record the failure on the plan row; a failure to do so must not hide the first error."""
        message = redact_text(f"{type(exc).__name__}: {exc}")[:_ERROR_CHARS]
        try:
            with session_scope(self._sessions) as session:
                session.execute(
                    update(MasterPlanRow)
                    .where(MasterPlanRow.masterplan_id == masterplan_id)
                    .values(status=MasterPlanStatus.FAILED, error_message=message)
                )
        except Exception:  # the database itself may be what failed; the original error is raised
            pass


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))
