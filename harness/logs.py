"""Logging and console progress: structlog configured once, here, with redaction before rendering.

Events are snake_case facts (``check_finished``) with context bound as keys — ``stage``,
``probe`` (the probe point) and ``check_id`` wherever a check is concerned. Logs go to
stderr: a readable console on a terminal, JSON lines otherwise; ``log_format`` (the CLI's
``--log-format``) wins over that guess. Colour only on a terminal, never with ``NO_COLOR``.

:class:`ProgressSink` is the flow's event sink for a person watching: while a long
generation streams it keeps one status line up to date (characters so far, elapsed), and
says nothing when stderr is not a terminal or ``quiet`` is set.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Literal, TextIO

import structlog

from harness.redaction import redact_value

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ProgressSink",
    "colour_wanted",
    "configure_logging",
    "get_logger",
    "log_report",
    "redact_event",
]

#: ``auto`` (console on a TTY, JSON lines otherwise), ``console`` or ``json``.
LOG_FORMATS = ("auto", "console", "json")
#: Level names, most verbose first.
LOG_LEVELS = ("debug", "info", "warning", "error")


def redact_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: no secret reaches a renderer."""
    return {key: redact_value(value) for key, value in event_dict.items()}


def colour_wanted(stream: TextIO) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set to anything non-empty (no-color.org)."""
    return _is_tty(stream) and not os.environ.get("NO_COLOR")


def configure_logging(
    level: str = "warning",
    *,
    log_format: Literal["auto", "console", "json"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for the process: the one redaction processor, then the renderer."""
    stream = stream if stream is not None else sys.stderr
    json_lines = log_format == "json" or (log_format == "auto" and not _is_tty(stream))
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=colour_wanted(stream))
    )
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
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **context: Any) -> Any:
    """A logger for ``name`` with ``context`` bound."""
    return structlog.get_logger(name).bind(**context) if context else structlog.get_logger(name)


def log_report(logger: Any, report: Any, **context: Any) -> None:
    """Tell one run's story: an event per check outcome, then ``run_finished``.

    ``report`` is a :class:`probes.core.Report`. Passed, blocked and skipped checks log
    at debug, warnings and failures at info; the run at info. Every check event carries
    ``stage``, ``probe`` and ``check_id``; its findings add ``finding_id`` and evidence.
    """
    log = logger.bind(**context)
    for outcome in report.outcomes:
        bound = log.bind(stage=outcome.check.stage.value, probe=outcome.point, check_id=outcome.check.id)
        value = outcome.outcome.value
        fields: dict[str, Any] = {"outcome": value, "duration_s": round(outcome.duration_s, 4)}
        if outcome.reason:
            fields["reason"] = outcome.reason
        if outcome.findings:
            first = outcome.findings[0]
            fields.update(finding_id=first.id, message=first.message, hint=first.hint, evidence=dict(first.evidence))
        method = bound.info if value in ("failed", "warned") else bound.debug
        method("check_finished", **fields)
    first = report.first_failure
    log.info(
        "run_finished",
        verdict=report.verdict,
        stage=first.stage.value if first else None,
        probe=first.point if first else None,
        check_id=first.id if first else None,
    )


class ProgressSink:
    """An event sink that keeps every event and shows streaming progress on a terminal.

    Wraps another sink (``inner``, e.g. the WebSocket manager) if given. The status line
    reads ``<label> masterplan: 12,000 chars · 3.4 s``; it is cleared when the generation
    ends. Silent when ``stream`` is not a terminal or ``quiet`` is set.
    """

    def __init__(
        self, stream: TextIO | None = None, *, quiet: bool = False, label: str = "", inner: Any = None
    ) -> None:
        self.events: list[Any] = []
        self._stream = stream if stream is not None else sys.stderr
        self._show = not quiet and _is_tty(self._stream)
        self._colour = colour_wanted(self._stream)
        self._label = label
        self._inner = inner
        self._started: float | None = None
        self._shown = False

    async def emit(self, event: Any) -> None:
        self.events.append(event)
        if self._inner is not None:
            await self._inner.emit(event)
        kind = getattr(getattr(event, "type", None), "value", "")
        data = getattr(event, "data", {}) or {}
        if kind == "masterplan_generation_start":
            self._started = time.monotonic()
        elif kind == "masterplan_generation_progress":
            self._show_progress("masterplan", data)
        else:
            self.clear()

    def clear(self) -> None:
        """Remove the status line, if one is shown."""
        if self._shown:
            self._stream.write("\r\x1b[2K" if self._colour else "\r" + " " * 79 + "\r")
            self._stream.flush()
            self._shown = False

    def _show_progress(self, what: str, data: dict[str, Any]) -> None:
        if not self._show:
            return
        elapsed = time.monotonic() - (self._started or time.monotonic())
        so_far = f"{data['chars']:,} chars" if "chars" in data else f"{data.get('tasks', 0)} tasks"
        text = f"{self._label + ' ' if self._label else ''}{what}: {so_far} · {elapsed:.1f} s"
        if self._colour:
            text = f"\x1b[2m{text}\x1b[0m"
        self._stream.write("\r" + text[:200])
        self._stream.flush()
        self._shown = True


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
