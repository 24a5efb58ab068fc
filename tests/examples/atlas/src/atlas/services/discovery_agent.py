"""Discovery: the LLM's domain analysis of a project request, saved as a DiscoveryDocument."""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from atlas.db import get_db_context
from atlas.llm import ClaudeClient
from atlas.models import DiscoveryDocument
from atlas.prompts import DISCOVERY_SYSTEM_PROMPT, build_discovery_prompt

__all__ = ["DiscoveryAgent", "extract_json"]

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("domain", "bounded_contexts", "aggregates", "value_objects", "domain_events", "services")


def extract_json(content: str) -> dict[str, Any]:
    """The JSON object in an answer: bare, in a ```json fence, or between paragraphs."""
    text = content.strip()
    if "```json" in text:
        text = text.split("```json", 1)[1].split("```", 1)[0]
    elif text.startswith("```"):
        text = text.split("```", 2)[1]
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("No JSON object found in the LLM response")
    return json.loads(text[start : end + 1])


class DiscoveryAgent:
    """Runs the discovery conversation with Claude and stores its result."""

    def __init__(self, llm: ClaudeClient, *, max_tokens: int = 8000) -> None:
        self.llm = llm
        self.max_tokens = max_tokens

    async def conduct_discovery(self, user_request: str, session_id: str, user_id: str) -> UUID:
        """Ask for the discovery, parse it, save it; returns its ``discovery_id``."""
        logger.info("Starting discovery for session %s", session_id)
        response = self.llm.complete(
            system=DISCOVERY_SYSTEM_PROMPT,
            prompt=build_discovery_prompt(user_request),
            max_tokens=self.max_tokens,
        )
        discovery_data = self._parse_discovery(response["content"])
        discovery_id = self._save_discovery(
            user_request=user_request,
            session_id=session_id,
            user_id=user_id,
            discovery_data=discovery_data,
            llm_model=response["model"],
            llm_cost=response["cost_usd"],
            usage=response["usage"],
        )
        logger.info("Discovery %s saved (domain: %s)", discovery_id, discovery_data["domain"])
        return discovery_id

    def _parse_discovery(self, content: str) -> dict[str, Any]:
        try:
            data = extract_json(content)
        except json.JSONDecodeError as exc:
            logger.error("Discovery response is not valid JSON: %s", exc)
            raise ValueError(f"Invalid discovery JSON: {exc}") from exc
        missing = [field for field in REQUIRED_FIELDS if field not in data]
        if missing:
            raise ValueError(f"Discovery is missing required fields: {', '.join(missing)}")
        return data

    def _save_discovery(
        self,
        user_request: str,
        session_id: str,
        user_id: str,
        discovery_data: dict[str, Any],
        llm_model: str | None,
        llm_cost: float | None,
        usage: dict[str, int],
    ) -> UUID:
        with get_db_context() as db:
            discovery = DiscoveryDocument(
                session_id=session_id,
                user_id=user_id,
                user_request=user_request,
                domain=discovery_data["domain"],
                bounded_contexts=discovery_data["bounded_contexts"],
                aggregates=discovery_data["aggregates"],
                value_objects=discovery_data["value_objects"],
                domain_events=discovery_data["domain_events"],
                services=discovery_data["services"],
                assumptions=discovery_data.get("assumptions"),
                risks=discovery_data.get("risks"),
                llm_model=llm_model,
                llm_cost_usd=llm_cost,
                llm_input_tokens=usage.get("prompt_tokens"),
                llm_output_tokens=usage.get("output_tokens"),
            )
            db.add(discovery)
            db.flush()  # assigns discovery_id
            discovery_id = discovery.discovery_id
        return discovery_id

    def get_discovery(self, discovery_id: UUID) -> DiscoveryDocument | None:
        with get_db_context() as db:
            discovery = db.query(DiscoveryDocument).filter(DiscoveryDocument.discovery_id == discovery_id).first()
            return discovery
