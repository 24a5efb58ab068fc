"""Claude calls: one plain call for the discovery, streamed calls for the plan."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from anthropic import AsyncAnthropic

__all__ = ["Answer", "TruncatedAnswer", "ask", "extract_json", "stream_text"]

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)\n```", re.DOTALL)


@dataclass(frozen=True)
class Answer:
    text: str
    stop_reason: str | None
    model: str
    input_tokens: int
    output_tokens: int


class TruncatedAnswer(RuntimeError):
    """The model stopped before it finished (``max_tokens``, or a stream that ended without a stop reason)."""


async def ask(client: AsyncAnthropic, *, model: str, system: str, prompt: str, max_tokens: int) -> Answer:
    """One non-streamed message."""
    message = await client.messages.create(
        model=model, max_tokens=max_tokens, system=system, messages=[{"role": "user", "content": prompt}]
    )
    return _answer(message)


async def stream_text(client: AsyncAnthropic, *, model: str, system: str, prompt: str, max_tokens: int) -> Answer:
    """One streamed message, read to its end."""
    received = 0
    async with client.messages.stream(
        model=model, max_tokens=max_tokens, system=system, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        async for chunk in stream.text_stream:
            received += len(chunk)
        message = await stream.get_final_message()
    logger.debug("stream finished: %d characters", received)
    return _answer(message)


def _answer(message: Any) -> Answer:
    answer = Answer(
        text="".join(block.text for block in message.content if block.type == "text"),
        stop_reason=message.stop_reason,
        model=message.model,
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
    )
    if answer.stop_reason in (None, "max_tokens"):
        raise TruncatedAnswer(f"answer cut off (stop_reason={answer.stop_reason}, {answer.output_tokens} tokens)")
    return answer


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in an answer: fenced, bare, or with prose around it."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text[text.find("{") : text.rfind("}") + 1]
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("the answer's JSON is not an object")
    return document
