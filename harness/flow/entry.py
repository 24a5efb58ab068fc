"""The reference flow's entry point for the harness: one ``/masterplan`` run, set up from the environment.

This is the shim any application writes (its ``[tool.masterplan-harness] flow``): it builds
its engine and clients inside the call from ``DATABASE_URL``, ``ANTHROPIC_API_KEY``,
``OPENAI_API_KEY``, their ``*_BASE_URL`` and the ``MASTERPLAN_*`` model settings, runs the
chat command to its end, and releases what it built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.config import Settings
from harness.flow.chat import ChatCommands, Conversation, MasterplanResult
from harness.flow.database import make_engine, make_session_factory
from harness.flow.events import CollectingSink
from harness.flow.llm import LLMClients, build_clients

__all__ = ["run", "run_commands"]


async def run(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Run ``/masterplan <request>`` for ``user_id`` in chat session ``session_id``; returns the saved ids."""
    settings = Settings.from_env()

    def commands(clients: LLMClients, engine: Any) -> ChatCommands:
        return ChatCommands(
            clients,
            make_session_factory(engine),
            models=settings.models,
            events=CollectingSink(),
            retries=settings.retries,
        )

    return await run_commands(settings, commands, request, user_id, session_id)


async def run_commands(
    settings: Settings,
    commands: Callable[[LLMClients, Any], ChatCommands],
    request: str,
    user_id: str | None,
    session_id: str | None,
    *,
    clients: Callable[[Settings], LLMClients] = build_clients,
) -> MasterplanResult:
    """Build the engine and clients from ``settings`` and the chat commands from them, run one ``/masterplan``,
    release both.

    ``commands(clients, engine)`` assembles the chat commands (a test shim swaps a component there).
    """
    engine = make_engine(settings.database_url or "", timeouts=settings.timeouts)
    llm = clients(settings)
    try:
        chat = commands(llm, engine)
        conversation = Conversation(user_id=user_id, metadata={"sid": session_id} if session_id else {})
        result = MasterplanResult()
        async for _event in chat.execute_masterplan(conversation, request, result):
            pass
        return result
    finally:
        for client in (llm.anthropic, llm.openai):
            if client is not None:
                await client.close()
        engine.dispose()
