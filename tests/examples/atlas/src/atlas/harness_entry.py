"""Entry point for masterplan-harness: one ``/masterplan`` command, configured from the environment."""

from __future__ import annotations

import uuid

from atlas.config import Settings, configure_logging
from atlas.db import close_db, init_db
from atlas.llm import ClaudeClient
from atlas.services.chat_service import ChatService, Conversation


async def run(request: str, user_id: str | None, session_id: str | None) -> dict[str, str | None]:
    """Run the command to its end; returns the ids the last progress event named."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    init_db(settings.database_url)
    llm = ClaudeClient(
        settings.anthropic_api_key,
        base_url=settings.anthropic_base_url,
        model=settings.claude_model,
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )
    conversation = Conversation(str(uuid.uuid4()), user_id, {"sid": session_id} if session_id else {})
    ids: dict[str, str | None] = {"discovery_id": None, "masterplan_id": None}
    try:
        async for event in ChatService(
            llm,
            discovery_max_tokens=settings.discovery_max_tokens,
            masterplan_max_tokens=settings.masterplan_max_tokens,
        )._execute_masterplan_generation(conversation, request):
            ids.update({key: event[key] for key in ids if key in event})
    finally:
        llm.close()
        close_db()
    return ids
