"""``/masterplan``: discovery, a plan skeleton, then the tasks in batches saved as they arrive."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from anthropic import AsyncAnthropic
from sqlalchemy.ext.asyncio import AsyncEngine

from beacon.llm import ask, extract_json, stream_text
from beacon.planner import check_batch, check_discovery, check_skeleton, milestone_ranges, plan_batches
from beacon.prompts import (
    BATCH_SYSTEM,
    DISCOVERY_SYSTEM,
    SKELETON_SYSTEM,
    batch_prompt,
    discovery_prompt,
    skeleton_prompt,
)
from beacon.retrieval import ExampleRetriever
from beacon.settings import Settings
from beacon.store import PlanStore

__all__ = ["MasterplanPipeline", "PlanResult"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanResult:
    discovery_id: UUID
    plan_id: UUID
    tasks_saved: int


class MasterplanPipeline:
    def __init__(
        self, settings: Settings, engine: AsyncEngine, claude: AsyncAnthropic, retriever: ExampleRetriever
    ) -> None:
        self.settings = settings
        self.store = PlanStore(engine)
        self.claude = claude
        self.retriever = retriever

    async def run(self, request: str, user_id: str | None, session_id: str | None) -> PlanResult:
        if not user_id or not session_id:
            raise PermissionError("/masterplan needs a signed-in user and a session")
        model = self.settings.model

        answer = await ask(
            self.claude,
            model=model,
            system=DISCOVERY_SYSTEM,
            prompt=discovery_prompt(request),
            max_tokens=self.settings.discovery_max_tokens,
        )
        document = extract_json(answer.text)
        check_discovery(document)
        discovery_id = await self.store.save_discovery(
            user_id=user_id,
            session_id=session_id,
            request=request,
            document=document,
            model=answer.model,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
        )
        discovery = await self.store.load_discovery(discovery_id)
        if discovery is None:
            raise LookupError(f"discovery {discovery_id} was saved but cannot be read")
        logger.info("discovery %s saved: %s", discovery_id, discovery.domain)

        examples = await self.retriever.similar(f"{discovery.domain}: {request}")
        answer = await stream_text(
            self.claude,
            model=model,
            system=SKELETON_SYSTEM,
            prompt=skeleton_prompt(request, discovery.document, examples),
            max_tokens=self.settings.skeleton_max_tokens,
        )
        skeleton = extract_json(answer.text)
        check_skeleton(skeleton)
        plan_id, milestone_ids = await self.store.create_plan(
            discovery_id=discovery_id, user_id=user_id, session_id=session_id, skeleton=skeleton
        )
        milestone_of = {
            number: milestone_ids[r.index] for r in milestone_ranges(skeleton) for number in range(r.first, r.last + 1)
        }

        saved = 0
        written: list[tuple[int, str]] = []
        try:
            for batch in plan_batches(skeleton, self.settings.batch_size):
                answer = await stream_text(
                    self.claude,
                    model=model,
                    system=BATCH_SYSTEM,
                    prompt=batch_prompt(request, skeleton, batch.assignment, written),
                    max_tokens=self.settings.batch_max_tokens,
                )
                tasks = check_batch(batch, extract_json(answer.text))
                saved += await self.store.save_tasks(
                    plan_id=plan_id, batch=batch.number, tasks=tasks, milestone_of=milestone_of
                )
                written.extend((task["task_number"], task["title"]) for task in tasks)
                logger.info(
                    "plan %s: batch %d saved (%d/%d tasks)", plan_id, batch.number, saved, skeleton["total_tasks"]
                )
        except Exception as exc:
            await self.store.mark_failed(plan_id, f"{type(exc).__name__}: {exc}")
            raise
        await self.store.mark_ready(plan_id)
        return PlanResult(discovery_id, plan_id, saved)
