"""MasterPlanGenerator: a saved discovery → similar examples → an LLM plan → saved rows.

The plan row is created first with status ``generating`` and committed, so a generation
that fails is visible as ``failed`` with its error — never missing, never half-written
looking complete. Two modes (:attr:`harness.config.Models.generation_mode`):

- ``batched`` (the default): a skeleton call (phases, milestones, how many tasks each),
  committed with the phases and milestones; then tasks in batches of at most
  ``batch_max_tasks``, each parsed, validated against the batches before it and committed
  as it arrives; finally the whole plan is validated and switched to ``draft``. A failed
  plan records the failing batch (0: the skeleton) and :meth:`MasterPlanGenerator.resume_masterplan`
  continues after the last committed batch.
- ``single``: one streamed call for the whole plan, saved in one unit of work with the
  switch to ``draft`` (what the seed did; kept to show the difference).

Transient LLM and database failures are retried (:mod:`harness.flow.retry`), each attempt
logged.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from harness.config import RETRIES, Models, Retries
from harness.contract import (
    Discovery,
    MasterPlan,
    PlanSkeleton,
    Task,
    assemble_plan,
    batch_problems,
    iter_tasks,
    parse_masterplan,
    parse_skeleton,
    parse_task_batch,
    plan_problems,
    skeleton_problems,
)
from harness.flow.batching import Batch, plan_batches
from harness.flow.database import session_scope
from harness.flow.discovery import ensure_complete
from harness.flow.errors import CommittedRowsMissing, DiscoveryNotFound
from harness.flow.examples import EXAMPLE_PLANS, closest
from harness.flow.llm import LLMAnswer, LLMClients, embed, stream_message
from harness.flow.models import (
    DiscoveryDocument,
    MasterPlanMilestone,
    MasterPlanPhase,
    MasterPlanStatus,
    MasterPlanTask,
    task_dependencies,
)
from harness.flow.models import MasterPlan as MasterPlanRow
from harness.flow.prompts import (
    BATCH_SYSTEM,
    MASTERPLAN_SYSTEM,
    SKELETON_SYSTEM,
    batch_prompt,
    discovery_summary,
    masterplan_prompt,
    skeleton_prompt,
)
from harness.flow.retry import is_transient_db_error, log_attempt, retry_async
from harness.redaction import redact_text

__all__ = ["MasterPlanGenerator", "PlanNotResumable", "PlanRejected", "batch_point"]

#: How many example outlines go into the prompt.
EXAMPLES_IN_PROMPT = 2
#: Error text kept on a failed plan row.
_ERROR_CHARS = 2000
#: ``failed_batch`` of a plan whose skeleton failed.
SKELETON_BATCH = 0

ProgressCallback = Callable[[int], Awaitable[None]]


def batch_point(number: int) -> str:
    """The probe point of batch ``number`` (from 1)."""
    return f"masterplan.batch-{number}"


class PlanRejected(ValueError):
    """The plan is valid JSON but unusable as a whole (cycles, dangling dependencies, ...)."""

    def __init__(self, problems: list) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = problems


class PlanNotResumable(ValueError):
    """The plan cannot be resumed: unknown, generated in one call, or already complete."""


@dataclass
class _Progress:
    """Where a batched generation is: the skeleton, the tasks committed so far, the batch under way."""

    skeleton: PlanSkeleton | None = None
    tasks: list[Task] = field(default_factory=list)
    committed: int = 0
    batch: int | None = None
    chars: int = 0


class MasterPlanGenerator:
    """Generates a masterplan from a saved discovery and saves it with all its children."""

    POINT = "masterplan"
    SKELETON_POINT = "masterplan.skeleton"
    EXAMPLES_POINT = "examples"

    def __init__(
        self,
        clients: LLMClients,
        session_factory: sessionmaker[Session],
        *,
        models: Models,
        retries: Retries = RETRIES,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._clients = clients
        self._sessions = session_factory
        self._models = models
        self._retries = retries
        self._sleep = sleep

    async def generate_masterplan(
        self,
        discovery_id: uuid.UUID,
        session_id: str,
        user_id: str,
        *,
        on_progress: ProgressCallback | None = None,
        on_started: Callable[[uuid.UUID], None] | None = None,
    ) -> uuid.UUID:
        """Generate, validate and save a masterplan; returns its id. On failure the plan is marked failed.

        ``on_started`` gets the plan's id as soon as its row exists, so a caller knows which plan
        to resume even when generation fails.
        """
        mode = self._models.generation_mode
        discovery_row = self._load_discovery(discovery_id)
        discovery = _discovery_of(discovery_row)
        masterplan_id = await self._db(self.POINT, lambda: self._start_plan(discovery_row, session_id, user_id, mode))
        if on_started is not None:
            on_started(masterplan_id)
        progress = _Progress()
        try:
            examples = await self._retrieve_examples(discovery)
            if mode == "single":
                await self._generate_single(masterplan_id, discovery_row, discovery, examples, on_progress)
            else:
                await self._generate_batched(masterplan_id, discovery_row, discovery, examples, progress, on_progress)
        except BaseException as exc:
            self._mark_failed(masterplan_id, exc, progress.batch)
            raise
        return masterplan_id

    async def resume_masterplan(
        self, masterplan_id: uuid.UUID, *, on_progress: ProgressCallback | None = None
    ) -> uuid.UUID:
        """Continue a failed batched plan after its last committed batch; returns its id once it is complete."""
        row, tasks = self._load_for_resume(masterplan_id)
        discovery_row = self._load_discovery(row.discovery_id)
        discovery = _discovery_of(discovery_row)
        progress = _Progress(
            skeleton=PlanSkeleton.model_validate(row.skeleton) if row.skeleton is not None else None,
            tasks=tasks,
            committed=row.batches_committed,
        )
        await self._db(self.POINT, lambda: self._reopen(masterplan_id))
        try:
            examples = await self._retrieve_examples(discovery) if progress.skeleton is None else []
            await self._generate_batched(masterplan_id, discovery_row, discovery, examples, progress, on_progress)
        except BaseException as exc:
            self._mark_failed(masterplan_id, exc, progress.batch)
            raise
        return masterplan_id

    def get_masterplan(self, masterplan_id: uuid.UUID) -> MasterPlanRow | None:
        """The saved plan, usable after its session has closed."""
        with session_scope(self._sessions) as session:
            found = session.scalars(select(MasterPlanRow).where(MasterPlanRow.masterplan_id == masterplan_id)).first()
        return found

    # -- the two modes ---------------------------------------------------------------------

    async def _generate_single(
        self,
        masterplan_id: uuid.UUID,
        discovery_row: DiscoveryDocument,
        discovery: Discovery,
        examples: list[str],
        on_progress: ProgressCallback | None,
    ) -> None:
        prompt = masterplan_prompt(discovery_row.user_request, discovery, examples)
        answer = await self._ask(
            self.POINT, MASTERPLAN_SYSTEM, prompt, self._models.masterplan_max_tokens, on_progress, _Progress()
        )
        plan = parse_masterplan(answer.text)
        _reject_blocking(plan_problems(plan))
        await self._db(self.POINT, lambda: self._save_plan(masterplan_id, plan, answer))

    async def _generate_batched(
        self,
        masterplan_id: uuid.UUID,
        discovery_row: DiscoveryDocument,
        discovery: Discovery,
        examples: list[str],
        progress: _Progress,
        on_progress: ProgressCallback | None,
    ) -> None:
        models = self._models
        request = discovery_row.user_request
        if progress.skeleton is None:
            progress.batch = SKELETON_BATCH
            point = self.SKELETON_POINT
            answer = await self._ask(
                point,
                SKELETON_SYSTEM,
                skeleton_prompt(request, discovery, examples),
                models.skeleton_max_tokens,
                on_progress,
                progress,
            )
            skeleton = parse_skeleton(answer.text)
            _reject_blocking(skeleton_problems(skeleton))
            batches = plan_batches(skeleton, models.batch_max_tasks)
            await self._db(point, lambda: self._save_skeleton(masterplan_id, skeleton, len(batches), answer))
            progress.skeleton = skeleton
        skeleton = progress.skeleton
        batches = plan_batches(skeleton, models.batch_max_tasks)
        outline = skeleton.model_dump(mode="json")
        for batch in batches[progress.committed :]:
            progress.batch = batch.number
            point = batch_point(batch.number)
            prompt = batch_prompt(
                request,
                discovery,
                outline,
                [(task.task_number, task.title) for task in progress.tasks],
                [(part.label, part.scope, part.first, part.last) for part in batch.parts],
                batch.number,
                len(batches),
            )
            answer = await self._ask(point, BATCH_SYSTEM, prompt, models.batch_max_tokens, on_progress, progress)
            tasks = parse_task_batch(answer.text).tasks
            _reject_blocking(batch_problems(progress.tasks, tasks, first=batch.first, last=batch.last))
            await self._db(point, lambda: self._save_batch(masterplan_id, skeleton, batch, tasks, answer))
            progress.tasks.extend(tasks)
            progress.committed = batch.number
        progress.batch = None
        plan = assemble_plan(skeleton, progress.tasks)
        _reject_blocking(plan_problems(plan))
        await self._db(self.POINT, lambda: self._finish(masterplan_id))

    # -- calls -----------------------------------------------------------------------------

    async def _ask(
        self,
        point: str,
        system: str,
        prompt: str,
        max_tokens: int,
        on_progress: ProgressCallback | None,
        progress: _Progress,
    ) -> LLMAnswer:
        """One streamed LLM call at ``point``, retried when it fails transiently; truncation is an error."""
        offset = progress.chars

        async def relay(chars: int) -> None:  # progress counts characters across all calls of the plan
            if on_progress is not None:
                await on_progress(offset + chars)

        answer = await retry_async(
            lambda: stream_message(
                self._clients,
                model=self._models.generation,
                system=system,
                prompt=prompt,
                max_tokens=max_tokens,
                on_progress=relay,
            ),
            point=point,
            stage="llm",
            policy=self._retries,
            observe=log_attempt,
            sleep=self._sleep,
        )
        progress.chars += len(answer.text)
        ensure_complete(point, answer)
        return answer

    async def _db(self, point: str, unit: Callable[[], Any]) -> Any:
        """Run one unit of work, retried when the database fails transiently."""

        async def attempt() -> Any:
            return unit()

        return await retry_async(
            attempt,
            point=point,
            stage="persist",
            policy=self._retries,
            transient=is_transient_db_error,
            observe=log_attempt,
            sleep=self._sleep,
        )

    # -- steps -----------------------------------------------------------------------------

    def _load_discovery(self, discovery_id: uuid.UUID) -> DiscoveryDocument:
        with session_scope(self._sessions) as session:
            found = session.get(DiscoveryDocument, discovery_id)
        if found is None:
            raise DiscoveryNotFound(discovery_id)
        return found

    def _start_plan(self, discovery: DiscoveryDocument, session_id: str, user_id: str, mode: str) -> uuid.UUID:
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
            generation_mode=mode,
            batches_total=0,
            batches_committed=0,
        )
        with session_scope(self._sessions) as session:
            session.add(row)
        return row.masterplan_id

    async def _retrieve_examples(self, discovery: Discovery) -> list[str]:
        """Outlines of the most similar example plans; none when the embeddings call fails."""
        texts = [discovery_summary(discovery)] + [example.description for example in EXAMPLE_PLANS]
        try:
            vectors = await embed(self._clients, model=self._models.embedding, texts=texts)
        except Exception:
            # Examples improve the plan but are not needed for it: go on without them.
            return []
        best = closest(vectors[0], vectors[1:], EXAMPLES_IN_PROMPT)
        return [f"{EXAMPLE_PLANS[i].name}: {EXAMPLE_PLANS[i].outline}" for i in best]

    def _load_for_resume(self, masterplan_id: uuid.UUID) -> tuple[MasterPlanRow, list[Task]]:
        with session_scope(self._sessions) as session:
            row = session.get(MasterPlanRow, masterplan_id)
            if row is None:
                raise PlanNotResumable(f"masterplan {masterplan_id} does not exist")
            if row.generation_mode != "batched":
                raise PlanNotResumable(f"masterplan {masterplan_id} was generated in one call; generate it again")
            if row.status is not MasterPlanStatus.FAILED:
                raise PlanNotResumable(f"masterplan {masterplan_id} is {row.status.value}, not failed")
            rows = session.scalars(
                select(MasterPlanTask)
                .where(MasterPlanTask.masterplan_id == masterplan_id)
                .order_by(MasterPlanTask.task_number)
            ).all()
            tasks = [
                Task(
                    task_number=t.task_number,
                    title=t.title,
                    description=t.description or "",
                    complexity=t.complexity,
                    depends_on=sorted(d.task_number for d in t.depends_on),
                    target_files=list(t.target_files or []),
                    estimated_tokens=t.estimated_tokens,
                )
                for t in rows
            ]
        return row, tasks

    def _reopen(self, masterplan_id: uuid.UUID) -> None:
        with session_scope(self._sessions) as session:
            session.execute(
                update(MasterPlanRow)
                .where(MasterPlanRow.masterplan_id == masterplan_id)
                .values(status=MasterPlanStatus.GENERATING, error_message=None, failed_batch=None)
            )

    def _save_skeleton(self, masterplan_id: uuid.UUID, skeleton: PlanSkeleton, batches: int, answer: LLMAnswer) -> None:
        """Write the plan's fields, phases and milestones; the plan stays ``generating``."""
        with session_scope(self._sessions) as session:
            row = _locked(session, masterplan_id)
            for phase_index, phase in enumerate(skeleton.phases, start=1):
                phase_row = MasterPlanPhase(
                    phase_number=phase.phase_number or phase_index, name=phase.name, description=phase.description
                )
                row.phases.append(phase_row)
                for milestone_index, milestone in enumerate(phase.milestones, start=1):
                    phase_row.milestones.append(
                        MasterPlanMilestone(
                            milestone_number=milestone.milestone_number or milestone_index,
                            name=milestone.name,
                            description=milestone.description,
                        )
                    )
            row.project_name = skeleton.project_name
            row.description = skeleton.description
            row.tech_stack = dict(skeleton.tech_stack)
            row.architecture_style = skeleton.architecture_style
            row.total_tasks = skeleton.total_tasks
            row.total_phases = len(skeleton.phases)
            row.total_milestones = sum(len(phase.milestones) for phase in skeleton.phases)
            row.estimated_cost_usd = _decimal(skeleton.estimated_cost_usd)
            row.estimated_duration_minutes = skeleton.estimated_duration_minutes
            row.llm_model = answer.model
            row.generation_cost_usd = _decimal(answer.cost_usd)
            row.skeleton = skeleton.model_dump(mode="json")
            row.batches_total = batches
            row.batches_committed = 0

    def _save_batch(
        self, masterplan_id: uuid.UUID, skeleton: PlanSkeleton, batch: Batch, tasks: list[Task], answer: LLMAnswer
    ) -> None:
        """Write one batch's tasks and dependencies and count the batch committed, in one unit of work.

        Like :meth:`_save_plan`, rows go in as one multi-row INSERT per table rather than as
        ORM objects linked through relationships.
        """
        with session_scope(self._sessions) as session:
            row = _locked(session, masterplan_id)
            milestones = {
                (phase_number, milestone_number): milestone_id
                for milestone_id, phase_number, milestone_number in session.execute(
                    select(
                        MasterPlanMilestone.milestone_id,
                        MasterPlanPhase.phase_number,
                        MasterPlanMilestone.milestone_number,
                    )
                    .join(MasterPlanPhase, MasterPlanMilestone.phase_id == MasterPlanPhase.phase_id)
                    .where(MasterPlanPhase.masterplan_id == masterplan_id)
                )
            }
            owners: dict[int, uuid.UUID] = {}
            for phase_index, phase in enumerate(skeleton.phases, start=1):
                for milestone_index, milestone in enumerate(phase.milestones, start=1):
                    key = (phase.phase_number or phase_index, milestone.milestone_number or milestone_index)
                    if key not in milestones:
                        raise CommittedRowsMissing(masterplan_id, f"milestone {key[1]} of phase {key[0]}")
                    owners[len(owners)] = milestones[key]
            slots = _slot_owner(skeleton)
            task_ids = {task.task_number: uuid.uuid4() for task in tasks}
            rows = [
                _task_row(
                    task, task_ids[task.task_number], masterplan_id, owners[slots(task.task_number)], batch.number
                )
                for task in tasks
            ]
            wanted = {dep for task in tasks for dep in task.depends_on} - set(task_ids)
            if wanted:
                task_ids.update(
                    session.execute(
                        select(MasterPlanTask.task_number, MasterPlanTask.task_id).where(
                            MasterPlanTask.masterplan_id == masterplan_id, MasterPlanTask.task_number.in_(wanted)
                        )
                    ).all()
                )
            edges = [
                (task_ids[task.task_number], task_ids[number])
                for task in tasks
                for number in dict.fromkeys(task.depends_on)
            ]
            if rows:
                session.execute(insert(MasterPlanTask), rows)
            if edges:
                session.execute(insert(task_dependencies), _edge_rows(edges))
            row.batches_committed = batch.number
            row.generation_cost_usd = _add(row.generation_cost_usd, answer.cost_usd)

    def _finish(self, masterplan_id: uuid.UUID) -> None:
        with session_scope(self._sessions) as session:
            row = _locked(session, masterplan_id)
            row.status = MasterPlanStatus.DRAFT
            row.error_message = None
            row.failed_batch = None

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
                        tasks.append(_task_row(task, task_ids[task.task_number], masterplan_id, milestone_id))
            edges = [
                (task_ids[task.task_number], task_ids[number])
                for _, _, task in iter_tasks(plan)
                for number in dict.fromkeys(task.depends_on)
            ]
            for model, rows in ((MasterPlanPhase, phases), (MasterPlanMilestone, milestones), (MasterPlanTask, tasks)):
                if rows:
                    session.execute(insert(model), rows)
            if edges:
                session.execute(insert(task_dependencies), _edge_rows(edges))
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
            row.generation_mode = "single"
            row.status = MasterPlanStatus.DRAFT
            row.error_message = None
            row.failed_batch = None

    def _mark_failed(self, masterplan_id: uuid.UUID, exc: BaseException, failed_batch: int | None) -> None:
        """Record the failure (and the failing batch) on the plan row; a failure to do so must not hide the first error."""
        where = (
            ""
            if failed_batch is None
            else ("skeleton: " if failed_batch == SKELETON_BATCH else f"batch {failed_batch}: ")
        )
        message = redact_text(f"{where}{type(exc).__name__}: {exc}")[:_ERROR_CHARS]
        try:
            with session_scope(self._sessions) as session:
                session.execute(
                    update(MasterPlanRow)
                    .where(MasterPlanRow.masterplan_id == masterplan_id)
                    .values(status=MasterPlanStatus.FAILED, error_message=message, failed_batch=failed_batch)
                )
        except Exception:  # the database itself may be what failed; the original error is raised
            pass


def _discovery_of(row: DiscoveryDocument) -> Discovery:
    return Discovery.model_validate(
        {
            "domain": row.domain,
            "bounded_contexts": row.bounded_contexts,
            "aggregates": row.aggregates,
            "value_objects": row.value_objects,
            "domain_events": row.domain_events,
            "services": row.services,
            "assumptions": row.assumptions or [],
            "risks": row.risks or [],
        }
    )


def _reject_blocking(problems: list) -> None:
    blocking = [problem for problem in problems if problem.blocking]
    if blocking:
        raise PlanRejected(blocking)


def _locked(session: Session, masterplan_id: uuid.UUID) -> MasterPlanRow:
    row = session.get(MasterPlanRow, masterplan_id, with_for_update=True)
    if row is None:
        raise CommittedRowsMissing(masterplan_id, "the plan row")
    return row


def _slot_owner(skeleton: PlanSkeleton) -> Callable[[int], int]:
    """Task number → index (in plan order) of the milestone that owns it."""
    from harness.contract import skeleton_slots

    slots = skeleton_slots(skeleton)

    def owner(number: int) -> int:
        for index, slot in enumerate(slots):
            if slot.first <= number <= slot.last:
                return index
        raise LookupError(f"no milestone owns task {number}")

    return owner


def _add(total: Decimal | None, cost: float | None) -> Decimal | None:
    if cost is None:
        return total
    return (total or Decimal(0)) + Decimal(str(cost))


def _task_row(
    task: Task, task_id: uuid.UUID, masterplan_id: uuid.UUID, milestone_id: uuid.UUID, batch_number: int | None = None
) -> dict[str, Any]:
    """The ``masterplan_tasks`` row of one generated task, for a multi-row INSERT."""
    return {
        "task_id": task_id,
        "masterplan_id": masterplan_id,
        "milestone_id": milestone_id,
        "task_number": task.task_number,
        "title": task.title,
        "description": task.description,
        "complexity": task.complexity.value,
        "target_files": list(task.target_files),
        "estimated_tokens": task.estimated_tokens,
        "status": "pending",
        "batch_number": batch_number,
    }


def _edge_rows(edges: list[tuple[uuid.UUID, uuid.UUID]]) -> list[dict[str, uuid.UUID]]:
    """``masterplan_task_dependencies`` rows for (task, depends on) pairs: one multi-row INSERT."""
    return [{"task_id": task, "depends_on_task_id": depends_on} for task, depends_on in edges]


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))
