"""Entry point for masterplan-harness: one ``/masterplan`` run, configured from the environment."""

from __future__ import annotations

import asyncio

from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

from beacon.db import make_engine
from beacon.pipeline import MasterplanPipeline
from beacon.retrieval import ExampleRetriever
from beacon.settings import Settings


def run(request: str, user_id: str | None, session_id: str | None) -> dict[str, str]:
    """Run the command to its end (in its own event loop); returns the discovery and plan ids."""
    return asyncio.run(_run(Settings.from_env(), request, user_id, session_id))


async def _run(settings: Settings, request: str, user_id: str | None, session_id: str | None) -> dict[str, str]:
    engine = make_engine(settings.database_url)
    claude = AsyncAnthropic(
        api_key=settings.anthropic_api_key, base_url=settings.anthropic_base_url, timeout=settings.llm_timeout_s
    )
    openai = (
        AsyncOpenAI(api_key=settings.openai_api_key, base_url=settings.openai_base_url, timeout=30.0)
        if settings.openai_api_key
        else None
    )
    try:
        retriever = ExampleRetriever(openai, model=settings.embedding_model)
        result = await MasterplanPipeline(settings, engine, claude, retriever).run(request, user_id, session_id)
    finally:
        await claude.close()
        if openai is not None:
            await openai.close()
        await engine.dispose()
    return {"discovery_id": str(result.discovery_id), "plan_id": str(result.plan_id)}
