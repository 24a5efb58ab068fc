"""What an LLM call costs: public list prices per million tokens, matched by model-name prefix.

The one place prices live; the flow and the probes both price calls from here.
"""

from __future__ import annotations

__all__ = ["PRICES_PER_MTOK", "cost_usd"]

#: USD per million tokens (input, output), matched by model-name prefix; public list prices.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o": (2.5, 10.0),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
}


def cost_usd(model: str | None, input_tokens: int | None, output_tokens: int | None) -> float | None:
    """Price of one call, or ``None`` for a model without a known price."""
    if not model:
        return None
    for prefix, (per_in, per_out) in PRICES_PER_MTOK.items():
        if model.startswith(prefix):
            return round(((input_tokens or 0) * per_in + (output_tokens or 0) * per_out) / 1_000_000, 6)
    return None
