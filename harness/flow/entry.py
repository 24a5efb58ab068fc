"""The reference flow's entry point for the harness: one ``/masterplan`` run, set up from the environment.

This is the shim any application writes (its ``[tool.masterplan-harness] flow``): it builds
its engine and clients inside the call from ``DATABASE_URL``, ``ANTHROPIC_API_KEY``,
``OPENAI_API_KEY``, their ``*_BASE_URL`` and the ``MASTERPLAN_*`` model settings, runs the
chat command to its end, and releases what it built.
"""

from __future__ import annotations

from harness.config import Settings
from harness.flow.chat import ChatCommands, Conversation, MasterplanResult
from harness.flow.database import make_engine, make_session_factory
from harness.flow.events import CollectingSink
from harness.flow.llm import build_clients

__all__ = ["run"]


async def run(request: str, user_id: str | None, session_id: str | None) -> MasterplanResult:
    """Run ``/masterplan <request>`` for ``user_id`` in chat session ``session_id``; returns the saved ids."""
    settings = Settings.from_env()
    engine = make_engine(settings.database_url or "", timeouts=settings.timeouts)
    clients = build_clients(settings)
    try:
        commands = ChatCommands(
            clients,
            make_session_factory(engine),
            models=settings.models,
            events=CollectingSink(),
            retries=settings.retries,
        )
        conversation = Conversation(user_id=user_id, metadata={"sid": session_id} if session_id else {})
        result = MasterplanResult()
        async for _event in commands.execute_masterplan(conversation, request, result):
            pass
        return result
    finally:
        for client in (clients.anthropic, clients.openai):
            if client is not None:
                await client.close()
        engine.dispose()
