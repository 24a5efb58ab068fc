"""Logging: structlog configured once, here, with redaction before rendering.

Events are snake_case facts (``cassette_replayed``) with context as keys. Logs go to
stderr: JSON lines when stderr is not a terminal, a readable console otherwise.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from harness.redaction import redact_value

__all__ = ["configure_logging", "get_logger", "redact_event"]


def redact_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: no secret reaches a renderer."""
    return {key: redact_value(value) for key, value in event_dict.items()}


def configure_logging(level: str = "warning", *, json_lines: bool | None = None) -> None:
    """Configure structlog for the process; ``json_lines`` defaults to "stderr is not a TTY"."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A logger bound to ``name``."""
    return structlog.get_logger(name)
