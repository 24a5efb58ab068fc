"""Atlas's one door to Claude: a synchronous Anthropic client, shared by every service."""

from __future__ import annotations

import logging
import time
from typing import Any

import anthropic

__all__ = ["ClaudeClient"]

logger = logging.getLogger(__name__)

#: USD per million tokens for Sonnet: input, cache write, cache read, output.
_PRICE_PER_MTOK = (3.0, 3.75, 0.30, 15.0)


class ClaudeClient:
    """Wraps ``anthropic.Anthropic``; :meth:`complete` answers a plain dict the services use."""

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str | None = None,
        model: str = "claude-sonnet-4-6",
        timeout: float = 600.0,
        max_retries: int = 2,
    ) -> None:
        self.model = model
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    def complete(self, system: str, prompt: str, max_tokens: int = 8000) -> dict[str, Any]:
        """One message: ``content`` (text), ``stop_reason``, ``model``, ``usage``, ``cost_usd``."""
        started = time.monotonic()
        message = self._client.messages.create(
            model=self.model,
            max_tokens=max_tokens,
            system=system,
            messages=[{"role": "user", "content": prompt}],
        )
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = message.usage
        prompt_tokens = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
        per_input, per_cache_write, per_cache_read, per_output = _PRICE_PER_MTOK
        cost = (
            usage.input_tokens * per_input
            + usage.cache_creation_input_tokens * per_cache_write
            + usage.cache_read_input_tokens * per_cache_read
            + usage.output_tokens * per_output
        ) / 1_000_000
        result = {
            "content": text,
            "stop_reason": message.stop_reason,
            "model": message.model,
            "usage": {"prompt_tokens": prompt_tokens, "output_tokens": usage.output_tokens},
            "cost_usd": round(cost, 6),
            "latency_s": round(time.monotonic() - started, 3),
        }
        logger.info(
            "Claude answered in %.1fs: %d prompt tokens, %d output tokens, stop_reason=%s",
            result["latency_s"],
            prompt_tokens,
            usage.output_tokens,
            message.stop_reason,
        )
        return result

    def close(self) -> None:
        self._client.close()
