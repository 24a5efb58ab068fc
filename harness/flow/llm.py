"""LLM clients and calls: one client per provider, built once, every call bounded.

The SDKs retry on their own unless told not to; the flow sets ``max_retries`` from
:class:`harness.config.Settings` (0 by default) so every attempt is visible to the probes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Imported with the module, not inside the async entry point: importing an SDK takes seconds
# on a cold start, and doing it inside a running event loop stalls that loop.
import anthropic
import openai

from harness import sdk
from harness.config import Settings
from harness.flow.errors import MissingCredentials, NonJSONResponse
from harness.pricing import cost_usd

__all__ = ["LLMAnswer", "LLMClients", "build_clients", "create_message", "embed", "stream_message"]

#: Characters of streamed text between two progress events.
PROGRESS_EVERY_CHARS = 4000


@dataclass(frozen=True)
class LLMAnswer:
    """What one LLM call produced, as the flow saw it."""

    provider: str
    model: str
    text: str
    stop_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_s: float
    streamed: bool
    max_tokens: int | None
    cost_usd: float | None
    request_id: str | None = None


@dataclass(frozen=True)
class LLMClients:
    """The two SDK clients the flow uses, shared by every call; ``None`` where no key is set."""

    anthropic: Any | None
    openai: Any | None


def build_clients(settings: Settings, *, http_client: Any = None) -> LLMClients:
    """Async Anthropic and OpenAI clients with the project's timeouts and retry count."""
    timeouts = settings.timeouts
    anthropic_client = openai_client = None
    if settings.anthropic_api_key:
        anthropic_client = anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            max_retries=settings.sdk_max_retries,
            timeout=anthropic.Timeout(timeouts.llm_request, connect=timeouts.llm_connect),
            # The SDK's own default client, but sharing one loaded CA store instead of loading its own.
            http_client=http_client or sdk.default_async_http_client(anthropic),
        )
    if settings.openai_api_key:
        openai_client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            max_retries=settings.sdk_max_retries,
            timeout=openai.Timeout(timeouts.llm_request, connect=timeouts.llm_connect),
            http_client=http_client or sdk.default_async_http_client(openai),
        )
    return LLMClients(anthropic=anthropic_client, openai=openai_client)


def _require(client: Any, variable: str) -> Any:
    if client is None:
        raise MissingCredentials(variable)
    return client


def _answer(message: Any, *, started: float, streamed: bool, max_tokens: int, model: str) -> LLMAnswer:
    text = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
    usage = getattr(message, "usage", None)
    input_tokens = getattr(usage, "input_tokens", None)
    output_tokens = getattr(usage, "output_tokens", None)
    answered_model = getattr(message, "model", None) or model
    return LLMAnswer(
        provider="anthropic",
        model=answered_model,
        text=text,
        stop_reason=message.stop_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_s=time.perf_counter() - started,
        streamed=streamed,
        max_tokens=max_tokens,
        cost_usd=cost_usd(answered_model, input_tokens, output_tokens),
        request_id=getattr(message, "_request_id", None),
    )


async def create_message(clients: LLMClients, *, model: str, system: str, prompt: str, max_tokens: int) -> LLMAnswer:
    """One non-streaming Messages call."""
    started = time.perf_counter()
    client = _require(clients.anthropic, "ANTHROPIC_API_KEY")
    message = await client.messages.create(
        model=model,
        max_tokens=max_tokens,
        system=system,
        messages=[{"role": "user", "content": prompt}],
        **sdk.per_call_timeout(client),  # early anthropic 0.x would wait 600 s instead
    )
    if isinstance(message, str):  # the SDK hands back the body as text when it is not JSON
        raise NonJSONResponse(message)
    return _answer(message, started=started, streamed=False, max_tokens=max_tokens, model=model)


async def stream_message(
    clients: LLMClients,
    *,
    model: str,
    system: str,
    prompt: str,
    max_tokens: int,
    on_progress: Callable[[int], Awaitable[None]] | None = None,
) -> LLMAnswer:
    """One streaming Messages call; ``on_progress(chars_so_far)`` every few thousand characters."""
    started = time.perf_counter()
    received = 0
    next_progress = PROGRESS_EVERY_CHARS
    async with _require(clients.anthropic, "ANTHROPIC_API_KEY").messages.stream(
        model=model,
        max_tokens=max_tokens,
        system=system,
        messages=[{"role": "user", "content": prompt}],
    ) as stream:
        async for text in stream.text_stream:
            received += len(text)
            if on_progress is not None and received >= next_progress:
                next_progress += PROGRESS_EVERY_CHARS
                await on_progress(received)
        message = await stream.get_final_message()
    return _answer(message, started=started, streamed=True, max_tokens=max_tokens, model=model)


async def embed(clients: LLMClients, *, model: str, texts: Sequence[str]) -> list[list[float]]:
    """Embeddings for ``texts``, in order."""
    # The encoding asked for explicitly: every SDK generation then sends the same request (see harness.sdk).
    response = await _require(clients.openai, "OPENAI_API_KEY").embeddings.create(
        model=model, input=list(texts), encoding_format=sdk.EMBEDDING_ENCODING
    )
    ordered = sorted(response.data, key=lambda item: item.index)
    return [sdk.embedding_vector(item.embedding) for item in ordered]
