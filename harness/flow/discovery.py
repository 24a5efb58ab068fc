"""DiscoveryAgent: a user request → an LLM discovery → a saved ``discovery_documents`` row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from harness.config import RETRIES, Models, Retries
from harness.contract import Discovery, parse_discovery
from harness.flow.database import session_scope
from harness.flow.errors import LLMTruncated
from harness.flow.llm import LLMAnswer, LLMClients, create_message
from harness.flow.models import DiscoveryDocument
from harness.flow.prompts import DISCOVERY_SYSTEM, discovery_prompt
from harness.flow.retry import log_attempt, retry_async

__all__ = ["DiscoveryAgent", "ensure_complete"]


def ensure_complete(point: str, answer: LLMAnswer) -> None:
    """Raise :class:`LLMTruncated` unless the answer ended on its own."""
    if answer.stop_reason in (None, "max_tokens"):
        raise LLMTruncated(point, answer.stop_reason, answer.output_tokens)


class DiscoveryAgent:
    """Conducts a discovery for a request and saves it."""

    POINT = "discovery"

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

    async def conduct_discovery(self, user_request: str, session_id: str, user_id: str) -> uuid.UUID:
        """Generate, parse and save a discovery; returns its id."""
        answer = await retry_async(
            lambda: create_message(
                self._clients,
                model=self._models.generation,
                system=DISCOVERY_SYSTEM,
                prompt=discovery_prompt(user_request),
                max_tokens=self._models.discovery_max_tokens,
            ),
            point=self.POINT,
            stage="llm",
            policy=self._retries,
            observe=log_attempt,
            sleep=self._sleep,
        )
        ensure_complete(self.POINT, answer)
        discovery = parse_discovery(answer.text)
        return self._save(user_request, session_id, user_id, discovery, answer)

    def _save(
        self, user_request: str, session_id: str, user_id: str, discovery: Discovery, answer: LLMAnswer
    ) -> uuid.UUID:
        def dump(items: list) -> list:
            return [item.model_dump(mode="json") for item in items]

        row = DiscoveryDocument(
            discovery_id=uuid.uuid4(),
            session_id=session_id,
            user_id=user_id,
            user_request=user_request,
            domain=discovery.domain,
            bounded_contexts=dump(discovery.bounded_contexts),
            aggregates=dump(discovery.aggregates),
            value_objects=dump(discovery.value_objects),
            domain_events=dump(discovery.domain_events),
            services=dump(discovery.services),
            assumptions=list(discovery.assumptions),
            risks=list(discovery.risks),
            llm_model=answer.model,
            llm_cost_usd=Decimal(str(answer.cost_usd)) if answer.cost_usd is not None else None,
        )
        with session_scope(self._sessions) as session:
            session.add(row)
        return row.discovery_id

    def get_discovery(self, discovery_id: uuid.UUID) -> DiscoveryDocument | None:
        """The saved discovery, usable after its session has closed."""
        with session_scope(self._sessions) as session:
            found = session.scalars(
                select(DiscoveryDocument).where(DiscoveryDocument.discovery_id == discovery_id)
            ).first()
        return found
