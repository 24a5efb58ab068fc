"""Logging and console progress: structlog configured once, here, with redaction before rendering.

Events are snake_case facts (``check_finished``) with context bound as keys — ``stage``,
``probe`` (the probe point) and ``check_id`` wherever a check is concerned. Logs go to
stderr: a readable console on a terminal, JSON lines otherwise; ``log_format`` (the CLI's
``--log-format``) wins over that guess. Colour only on a terminal, never with ``NO_COLOR``.

:class:`ProgressLine` is for a person watching: while the flow waits for an LLM answer it
keeps one status line up to date (characters streamed so far, elapsed), read from the run's
timeline — nothing in the application reports progress to us — and says nothing when
stderr is not a terminal or ``quiet`` is set.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog

from harness.redaction import redact_value

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ProgressLine",
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


def log_timeline(logger: Any, timeline: Any) -> None:
    """At debug level, every unit of work the watchers saw: ``unit_committed``, ``unit_rolled_back``, ``unit_closed_uncommitted``.

    Told for any application (not only the reference flow, which also logs its own): the unit,
    the application's line, and rows per table — never a row's contents.
    """
    from collections import Counter

    from harness.observe.timeline import UnitClosed, UnitCommitted, UnitRolledBack

    for event in timeline:
        if isinstance(event, UnitCommitted):
            name, writes = "unit_committed", event.writes
        elif isinstance(event, UnitRolledBack):
            name, writes = "unit_rolled_back", event.discarded
        elif isinstance(event, UnitClosed) and event.uncommitted:
            name, writes = "unit_closed_uncommitted", event.uncommitted
        else:
            continue
        fields: dict[str, Any] = {
            "unit": event.unit,
            "at": str(event.location) if event.location else None,
            "rows": dict(Counter(f"{write.op} {write.table}" for write in writes)),
        }
        if isinstance(event, UnitCommitted):
            fields["commit"] = event.number
        if isinstance(event, UnitRolledBack) and event.error is not None:
            fields["error"] = f"{event.error.type}: {event.error.message}"
        logger.debug(name, **fields)


class ProgressLine:
    """A status line on a terminal while the flow waits for an LLM answer, read from outside the flow.

    While :meth:`watching` a run's timeline, a thread looks at it twice a second. When a
    generation call is open it shows ``<label> LLM call 3 (claude-sonnet-4-5): 12,000 chars ·
    3.4 s`` — characters of the answer streamed so far and seconds since the request was
    sent (``waiting for the answer`` for a call that does not stream) — and clears the line
    when no call is open and when the run ends. Silent (no thread at all) when ``stream`` is
    not a terminal or ``quiet`` is set; dim only where :func:`colour_wanted`.
    """

    #: Seconds between two looks at the timeline.
    INTERVAL = 0.5

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False, label: str = "") -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._show = not quiet and _is_tty(self._stream)
        self._colour = colour_wanted(self._stream)
        self._label = label
        self._shown = 0  # characters of the line on screen (0: none shown)
        self._lock = threading.Lock()

    @contextmanager
    def watching(self, timeline: Any) -> Iterator[None]:
        """Show the progress of the run recording into ``timeline`` for the block; clear it afterwards."""
        if not self._show:
            yield
            return
        stop = threading.Event()
        thread = threading.Thread(target=self._follow, args=(timeline, stop), name="harness-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.clear()

    def describe(self, timeline: Any) -> str | None:
        """The line for the call open now in ``timeline`` (the latest, if several), or ``None``."""
        from harness.observe.timeline import LLMExchange

        calls = [event for event in timeline.of(LLMExchange) if event.api != "embeddings"]
        open_calls = [
            (number, call) for number, call in enumerate(calls, 1) if call.latency_s is None and call.error is None
        ]
        if not open_calls:
            return None
        number, call = open_calls[-1]
        so_far = f"{call.received_chars:,} chars" if call.streamed else "waiting for the answer"
        model = f" ({call.model})" if call.model else ""
        elapsed = time.perf_counter() - call.at
        return f"{self._label + ' ' if self._label else ''}LLM call {number}{model}: {so_far} · {elapsed:.1f} s"

    def clear(self) -> None:
        """Remove the status line, if one is shown."""
        with self._lock:
            if self._shown:
                self._stream.write(self._erase())
                self._stream.flush()
                self._shown = 0

    def _follow(self, timeline: Any, stop: threading.Event) -> None:
        while not stop.wait(self.INTERVAL):
            try:
                text = self.describe(timeline)
            except Exception:  # noqa: BLE001 - a progress line never breaks a run
                text = None
            if text is None:
                self.clear()
            else:
                self._write(text)

    def _erase(self) -> str:
        """Back to the line's start with the shown text gone (spaces where escape sequences are unwelcome)."""
        return "\r\x1b[2K" if self._colour else "\r" + " " * self._shown + "\r"

    def _write(self, text: str) -> None:
        text = text[:200]
        with self._lock:
            erase = self._erase() if self._shown else "\r"
            self._stream.write(erase + (f"\x1b[2m{text}\x1b[0m" if self._colour else text))
            self._stream.flush()
            self._shown = len(text)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
