"""The ``/masterplan <description>`` chat command: discovery, then masterplan, with progress.

This is the seed's ``ChatService._execute_masterplan_generation``: it needs the user id
(from the authenticated socket) and the session id (``conversation.metadata['sid']``),
yields progress events to its caller, and sends each to the event sink as well.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from harness.config import RETRIES, Models, Retries
from harness.flow.discovery import DiscoveryAgent
from harness.flow.errors import MissingIdentity
from harness.flow.events import EventSink, EventType, ProgressEvent
from harness.flow.llm import LLMClients
from harness.flow.masterplan import MasterPlanGenerator
from harness.redaction import redact_text

__all__ = ["COMMAND", "ChatCommands", "Conversation", "MasterplanResult"]

COMMAND = "/masterplan"


@dataclass
class Conversation:
    """The chat conversation a command arrives in."""

    user_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def session_id(self) -> str | None:
        sid = self.metadata.get("sid")
        return str(sid) if sid else None


@dataclass
class MasterplanResult:
    """Ids the command produced, filled in as it goes."""

    discovery_id: uuid.UUID | None = None
    masterplan_id: uuid.UUID | None = None


class ChatCommands:
    """Runs chat commands against the flow."""

    POINT = "chat"

    def __init__(
        self,
        clients: LLMClients,
        session_factory: sessionmaker[Session],
        *,
        models: Models,
        events: EventSink | None = None,
        retries: Retries = RETRIES,
    ) -> None:
        self._events = events
        self.discovery_agent = DiscoveryAgent(
            clients, session_factory, models=models, retries=retries
        )
        self.masterplan_generator = MasterPlanGenerator(
            clients, session_factory, models=models, retries=retries
        )

    async def execute_masterplan(
        self, conversation: Conversation, request: str, result: MasterplanResult | None = None
    ) -> AsyncIterator[ProgressEvent]:
        """Run ``/masterplan <request>``: yields progress events; raises on failure after a FAILED event."""
        result = result if result is not None else MasterplanResult()
        user_id = conversation.user_id
        session_id = conversation.session_id
        if not user_id:
            raise MissingIdentity("user id")
        if not session_id:
            raise MissingIdentity("session id")
        if not request.strip():
            raise ValueError("the /masterplan command needs a project description")

        try:
            yield await self._emit(EventType.DISCOVERY_STARTED, session_id, request=request)
            result.discovery_id = await self.discovery_agent.conduct_discovery(request, session_id, user_id)
            discovery = self.discovery_agent.get_discovery(result.discovery_id)
            yield await self._emit(
                EventType.DISCOVERY_SAVED,
                session_id,
                discovery_id=str(result.discovery_id),
                domain=discovery.domain if discovery is not None else None,
            )

            yield await self._emit(EventType.MASTERPLAN_STARTED, session_id, discovery_id=str(result.discovery_id))
            progress: list[ProgressEvent] = []

            async def on_progress(chars: int) -> None:
                progress.append(await self._emit(EventType.MASTERPLAN_PROGRESS, session_id, chars=chars))

            def started(masterplan_id: uuid.UUID) -> None:
                result.masterplan_id = masterplan_id  # known even if generation fails: the plan to resume

            result.masterplan_id = await self.masterplan_generator.generate_masterplan(
                result.discovery_id, session_id, user_id, on_progress=on_progress, on_started=started
            )
            for event in progress:
                yield event
            plan = self.masterplan_generator.get_masterplan(result.masterplan_id)
            yield await self._emit(
                EventType.MASTERPLAN_SAVED,
                session_id,
                masterplan_id=str(result.masterplan_id),
                project_name=plan.project_name if plan is not None else None,
                total_tasks=plan.total_tasks if plan is not None else None,
            )
        except Exception as exc:
            yield await self._emit(EventType.FAILED, session_id, error=redact_text(f"{type(exc).__name__}: {exc}"))
            raise

    async def _emit(self, type_: EventType, session_id: str, **data: Any) -> ProgressEvent:
        event = ProgressEvent(type_, session_id, data)
        if self._events is not None:
            await self._events.emit(event)
        return event
