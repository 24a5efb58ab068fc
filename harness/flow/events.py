"""Progress events and where they go (the seed's WebSocket manager is one such sink)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CollectingSink", "EventSink", "EventType", "ProgressEvent"]


class EventType(str, enum.Enum):
    """What a progress event announces."""

    #: Discovery generation started.
    DISCOVERY_STARTED = "discovery_generation_start"
    #: Discovery saved; carries its id.
    DISCOVERY_SAVED = "discovery_saved"
    #: Masterplan generation started.
    MASTERPLAN_STARTED = "masterplan_generation_start"
    #: More of the masterplan has streamed in; carries characters so far.
    MASTERPLAN_PROGRESS = "masterplan_generation_progress"
    #: Masterplan saved; carries its id and counts.
    MASTERPLAN_SAVED = "masterplan_saved"
    #: The command failed; carries the error.
    FAILED = "masterplan_generation_failed"


@dataclass(frozen=True)
class ProgressEvent:
    """One progress event for one chat session."""

    type: EventType
    session_id: str
    data: dict[str, Any] = field(default_factory=dict)


class EventSink(Protocol):
    """Receives progress events (for example a WebSocket manager)."""

    async def emit(self, event: ProgressEvent) -> None: ...


class CollectingSink:
    """A sink that keeps every event it receives, in order."""

    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []

    async def emit(self, event: ProgressEvent) -> None:
        self.events.append(event)
