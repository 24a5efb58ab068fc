"""What the application prints and logs while it runs, kept for the report instead of mixed into ours.

The harness's own output (the check lines, the progress) must stay readable, and a failure the
harness provokes on purpose must not look like a real error on the user's terminal. While a flow
runs, ``sys.stdout``, ``sys.stderr`` and every logging handler writing to them go to a buffer;
handlers the application creates during the run are pointed back at the real streams afterwards.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout

from harness.redaction import redact_text

__all__ = ["CapturedOutput", "capturing_output"]

#: Characters of the application's output kept (its end: where a failure is told).
KEPT_CHARS = 4000


class CapturedOutput:
    """The application's output of one run; :meth:`tail` is what a report keeps."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def tail(self, chars: int = KEPT_CHARS) -> str:
        """The last ``chars`` characters, redacted."""
        text = self.buffer.getvalue()
        return redact_text(text[-chars:])


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger))]
    return [h for logger in loggers for h in logger.handlers if isinstance(h, logging.StreamHandler)]


@contextmanager
def capturing_output() -> Iterator[CapturedOutput]:
    """Send what the application prints or logs to stdout/stderr into a buffer for the block."""
    captured = CapturedOutput()
    real = {id(sys.stdout): sys.stdout, id(sys.stderr): sys.stderr}
    moved = [(handler, handler.stream) for handler in _stream_handlers() if id(handler.stream) in real]
    for handler, _ in moved:
        handler.setStream(captured.buffer)  # type: ignore[arg-type]
    try:
        with redirect_stdout(captured.buffer), redirect_stderr(captured.buffer):
            yield captured
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
        for handler in _stream_handlers():
            if handler.stream is captured.buffer:  # made during the run, on the redirected stderr
                handler.setStream(sys.stderr)
