"""The seam between the flow and whoever watches it.

The flow announces each step ("I am now calling the LLM for the discovery") and hands
over what it just produced. It knows nothing about probes: the harness plugs in an
adapter (``harness.adapter``) that turns these calls into checks; production code runs
with :class:`NoHooks`.

Stage names are plain strings (``"auth"``, ``"llm"``, ``"parse"``, ``"persist"``) so this
module imports nothing from ``probes``.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["FlowHooks", "LLMAnswer", "NoHooks"]


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


class FlowHooks(Protocol):
    """What the flow tells its watcher; every method must be cheap and may raise to stop the flow."""

    def step(self, stage: str, point: str) -> AbstractContextManager[None]:
        """Entering ``stage`` at ``point`` (for example ``"llm"``, ``"discovery"``)."""

    def llm_answered(self, point: str, answer: LLMAnswer) -> None:
        """An LLM call at ``point`` returned."""

    def saved(self, point: str, table: str, key: uuid.UUID) -> None:
        """The unit of work at ``point`` committed a row of ``table`` with primary key ``key``."""

    def loaded(self, point: str, obj: object) -> None:
        """The flow got ``obj`` back from the database and its session is closed."""

    def progress_unobserved(self, point: str) -> None:
        """Progress events at ``point`` have nobody to go to."""

    def attempted(self, point: str, attempt: Any) -> None:
        """One attempt of a retried call at ``point`` ended (a :class:`harness.flow.retry.Attempt`)."""


class NoHooks:
    """Hooks that watch nothing: what production runs with."""

    def step(self, stage: str, point: str) -> AbstractContextManager[None]:
        return nullcontext()

    def llm_answered(self, point: str, answer: LLMAnswer) -> None:
        return None

    def saved(self, point: str, table: str, key: uuid.UUID) -> None:
        return None

    def loaded(self, point: str, obj: object) -> None:
        return None

    def progress_unobserved(self, point: str) -> None:
        return None

    def attempted(self, point: str, attempt: Any) -> None:
        return None
