"""Harness entry points for the persist tests: the reference flow with one broken component each.

Each function is what an application names as its ``[tool.masterplan-harness] flow``: it
builds the engine, the LLM clients and the reference flow's ``ChatCommands`` from the
environment the runner sets, and runs ``/masterplan`` to its end — with one component
swapped for a subclass that carries a known persistence bug. ``healthy`` is the control.

Only persistence is broken: every LLM request is the one the reference flow sends, so the
recorded healthy cassette answers every shim.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from harness.config import Settings
from harness.contract import PlanSkeleton, Task
from harness.flow.batching import Batch
from harness.flow.chat import ChatCommands, MasterplanResult
from harness.flow.database import session_scope
from harness.flow.discovery import DiscoveryAgent
from harness.flow.entry import run_commands
from harness.flow.events import CollectingSink
from harness.flow.llm import LLMAnswer, LLMClients
from harness.flow.masterplan import MasterPlanGenerator
from harness.flow.models import MasterPlan as MasterPlanRow
from harness.flow.models import MasterPlanStatus

#: The variable the ``other_database`` shim reads its URL from, instead of the one its table declares.
OTHER_DATABASE_ENV = "SHIM_WRITE_DATABASE_URL"
#: Characters the ``cut_titles`` shim keeps of each task title.
TITLE_CHARS = 40


async def _run(
    request: str,
    user_id: str | None,
    session_id: str | None,
    *,
    generator: type[MasterPlanGenerator] = MasterPlanGenerator,
    session_class: type[Session] = Session,
    database_url_env: str = "DATABASE_URL",
    expire_on_commit: bool = False,
) -> MasterplanResult:
    """``harness.flow.entry.run`` with the plan generator and the sessions chosen by the shim."""
    settings = Settings.from_env(database_url_env=database_url_env)

    def commands(clients: LLMClients, engine: Any) -> ChatCommands:
        factory = sessionmaker(bind=engine, expire_on_commit=expire_on_commit, class_=session_class)
        chat = ChatCommands(clients, factory, models=settings.models, events=CollectingSink(), retries=settings.retries)
        chat.discovery_agent = DiscoveryAgent(clients, factory, models=settings.models, retries=settings.retries)
        chat.masterplan_generator = generator(clients, factory, models=settings.models, retries=settings.retries)
        return chat

    return await run_commands(settings, commands, request, user_id, session_id)


async def healthy(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """The reference flow, unchanged, through this same shim."""
    return await _run(request, user_id, session_id)


# -- a field saved differently (PERSIST002) ------------------------------------------------------


class CutTitles(MasterPlanGenerator):
    """Saves each task's title cut to the width of an old column."""

    def _save_batch(
        self, masterplan_id: uuid.UUID, skeleton: PlanSkeleton, batch: Batch, tasks: list[Task], answer: LLMAnswer
    ) -> None:
        cut = [task.model_copy(update={"title": task.title[:TITLE_CHARS]}) for task in tasks]
        super()._save_batch(masterplan_id, skeleton, batch, cut, answer)


async def cut_titles(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, generator=CutTitles)


# -- a child never saved (PERSIST003) ------------------------------------------------------------


class DropsLastTask(MasterPlanGenerator):
    """An off-by-one in the last batch: the plan's final task is never inserted."""

    def _save_batch(
        self, masterplan_id: uuid.UUID, skeleton: PlanSkeleton, batch: Batch, tasks: list[Task], answer: LLMAnswer
    ) -> None:
        kept = [task for task in tasks if task.task_number != skeleton.total_tasks]
        super()._save_batch(masterplan_id, skeleton, batch, kept, answer)


async def drops_last_task(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, generator=DropsLastTask)


# -- dependency edges never saved (PERSIST004) ---------------------------------------------------


class DropsDependencies(MasterPlanGenerator):
    """Saves every task, but none of the dependency rows between them."""

    def _save_batch(
        self, masterplan_id: uuid.UUID, skeleton: PlanSkeleton, batch: Batch, tasks: list[Task], answer: LLMAnswer
    ) -> None:
        unlinked = [task.model_copy(update={"depends_on": []}) for task in tasks]
        super()._save_batch(masterplan_id, skeleton, batch, unlinked, answer)


async def drops_dependencies(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, generator=DropsDependencies)


# -- a plan never switched to complete (PERSIST007) ----------------------------------------------


class NeverFinishes(MasterPlanGenerator):
    """Saves every batch and forgets to switch the plan out of ``generating``."""

    def _finish(self, masterplan_id: uuid.UUID) -> None:
        return None


async def never_finishes(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, generator=NeverFinishes)


# -- a plan complete before its tasks arrived (PERSIST010) ---------------------------------------


class PublishesAtSkeleton(MasterPlanGenerator):
    """Marks the plan ``draft`` (complete) as soon as its outline is saved, before any task."""

    def _save_skeleton(self, masterplan_id: uuid.UUID, skeleton: PlanSkeleton, batches: int, answer: LLMAnswer) -> None:
        super()._save_skeleton(masterplan_id, skeleton, batches, answer)
        with session_scope(self._sessions) as session:
            session.get(MasterPlanRow, masterplan_id).status = MasterPlanStatus.DRAFT


async def publishes_at_skeleton(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, generator=PublishesAtSkeleton)


# -- a unit of work that commits twice (PERSIST009) ----------------------------------------------


class CommitOnAddSession(Session):
    """The seed's double commit: ``db.commit()`` right after ``add``, inside a scope that commits again."""

    def add(self, instance: Any, _warn: bool = True) -> None:
        super().add(instance, _warn=_warn)
        self.commit()  # the inner commit


async def double_commit(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, session_class=CommitOnAddSession)


# -- rows flushed and never committed (PERSIST012) -----------------------------------------------


class FlushesWithoutCommit(MasterPlanGenerator):
    """Switches the plan to ``draft`` with a flush, then closes the session without committing."""

    def _finish(self, masterplan_id: uuid.UUID) -> None:
        session = self._sessions()
        session.get(MasterPlanRow, masterplan_id).status = MasterPlanStatus.DRAFT
        session.flush()
        session.close()  # closing without a commit throws the flushed row away


async def flushes_without_commit(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, generator=FlushesWithoutCommit)


# -- a failed save that never reaches the caller (PERSIST011) ------------------------------------


class ForgivingSession(Session):
    """The seed's ``get_db_context``: a commit that fails is rolled back, and nobody is told."""

    def commit(self) -> None:
        try:
            super().commit()
        except Exception:  # noqa: BLE001  (the bug this shim carries)
            self.rollback()  # swallowed: the caller goes on as if the save had worked


async def swallows_failed_commits(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, session_class=ForgivingSession)


# -- an object used after its session closed (PERSIST005) ---------------------------------------


async def expires_on_commit(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Sessions that expire their objects on commit: what a load returns is unreadable once its session closed."""
    return await _run(request, user_id, session_id, expire_on_commit=True)


# -- rows written somewhere else (PERSIST001) ----------------------------------------------------


async def other_database(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Reads its URL from another variable than the one its table declares, which names another database."""
    return await _run(request, user_id, session_id, database_url_env=OTHER_DATABASE_ENV)


class MilestonesVanish(MasterPlanGenerator):
    """After the outline is committed, something outside the application deletes its milestones."""

    def _save_skeleton(self, masterplan_id: uuid.UUID, skeleton: PlanSkeleton, batches: int, answer: LLMAnswer) -> None:
        import psycopg

        super()._save_skeleton(masterplan_id, skeleton, batches, answer)
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as other:
            other.execute("DELETE FROM masterplan_milestones")


async def milestones_vanish(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    return await _run(request, user_id, session_id, generator=MilestonesVanish)
