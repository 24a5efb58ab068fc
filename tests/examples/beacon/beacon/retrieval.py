"""Similar example plans, by OpenAI embeddings; skipped when there is no OpenAI key."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from openai import APIError, AsyncOpenAI

from beacon.examples import EXAMPLE_OUTLINES

__all__ = ["ExampleRetriever"]

logger = logging.getLogger(__name__)


class ExampleRetriever:
    def __init__(self, client: AsyncOpenAI | None, *, model: str, outlines: Sequence[str] = EXAMPLE_OUTLINES) -> None:
        self.client = client
        self.model = model
        self.outlines = tuple(outlines)

    async def similar(self, query: str, k: int = 2) -> list[str]:
        """The ``k`` outlines closest to ``query``; none without a client or when the API fails."""
        if self.client is None or not self.outlines:
            return []
        try:
            response = await self.client.embeddings.create(model=self.model, input=[query, *self.outlines])
        except APIError as exc:
            logger.warning("example retrieval failed, planning without examples: %s", exc)
            return []
        vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        scores = [_cosine(vectors[0], vector) for vector in vectors[1:]]
        ranked = sorted(range(len(self.outlines)), key=lambda i: scores[i], reverse=True)
        return [self.outlines[i] for i in ranked[:k]]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
