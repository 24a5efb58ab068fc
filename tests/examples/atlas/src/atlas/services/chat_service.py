"""Chat commands; ``/masterplan <request>`` runs discovery, then masterplan generation."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from atlas.llm import ClaudeClient
from atlas.services.discovery_agent import DiscoveryAgent
from atlas.services.masterplan_generator import MasterPlanGenerator

__all__ = ["ChatService", "Conversation"]

logger = logging.getLogger(__name__)


@dataclass
class Conversation:
    """A chat conversation; ``metadata['sid']`` is the socket.io session id."""

    conversation_id: str
    user_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


class ChatService:
    """Runs chat commands; long ones yield progress events for the socket."""

    def __init__(self, llm: ClaudeClient, *, discovery_max_tokens: int = 8000, masterplan_max_tokens: int = 64000):
        self.llm = llm
        self.discovery_max_tokens = discovery_max_tokens
        self.masterplan_max_tokens = masterplan_max_tokens

    async def _execute_masterplan_generation(
        self, conversation: Conversation, request: str
    ) -> AsyncIterator[dict[str, Any]]:
        user_id = conversation.user_id
        if not user_id:
            raise ValueError("User must be authenticated to generate a masterplan")
        session_id = conversation.metadata.get("sid")
        if not session_id:
            raise ValueError("Conversation has no socket session id (metadata['sid'])")
        if not request.strip():
            raise ValueError("Describe the project after /masterplan")

        yield {"type": "masterplan_progress", "phase": "discovery", "message": "Analysing your project request..."}
        discovery_agent = DiscoveryAgent(self.llm, max_tokens=self.discovery_max_tokens)
        discovery_id = await discovery_agent.conduct_discovery(
            user_request=request, session_id=session_id, user_id=user_id
        )
        discovery = discovery_agent.get_discovery(discovery_id)
        if not discovery:
            logger.error("Discovery not found in database: %s", discovery_id)
            yield {"type": "masterplan_error", "message": "Discovery could not be loaded"}
            return
        yield {
            "type": "discovery_complete",
            "discovery_id": str(discovery_id),
            "domain": discovery.domain,
            "bounded_contexts": len(discovery.bounded_contexts),
        }

        yield {"type": "masterplan_progress", "phase": "masterplan", "message": "Writing the masterplan..."}
        generator = MasterPlanGenerator(self.llm, discovery_agent, max_tokens=self.masterplan_max_tokens)
        masterplan_id = await generator.generate_masterplan(
            discovery_id=discovery_id, session_id=session_id, user_id=user_id
        )
        masterplan = generator.get_masterplan(masterplan_id)
        if not masterplan:
            logger.error("MasterPlan not found in database: %s", masterplan_id)
        yield {
            "type": "masterplan_complete",
            "discovery_id": str(discovery_id),
            "masterplan_id": str(masterplan_id),
            "project_name": masterplan.project_name if masterplan else None,
            "total_tasks": masterplan.total_tasks if masterplan else None,
        }
