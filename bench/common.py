"""What every benchmark shares: timing, medians, and the rows of the results table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Row", "fmt_ms", "fmt_s", "median", "time_call"]


def time_call(function: Callable[[], object]) -> float:
    """Seconds one call of ``function`` took (wall clock, ``perf_counter``)."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def median(samples: list[float]) -> float:
    """The median of ``samples`` (NaN for none)."""
    return statistics.median(samples) if samples else float("nan")


def fmt_ms(seconds: float) -> str:
    """``seconds`` as milliseconds with a sensible number of digits."""
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_s(seconds: float) -> str:
    """``seconds`` as seconds, two decimals."""
    return f"{seconds:.2f} s"


@dataclass
class Row:
    """One line of the results table."""

    section: str
    what: str
    #: The measured figure (a median), already formatted.
    result: str
    #: The baseline measured in the same run and our ratio to it, if there is one.
    baseline: str = ""
    target: str = ""
    #: "met", "missed by …", "not yet measurable", or "" when there is no target.
    verdict: str = ""
    runs: int = 0
    #: Raw samples in seconds, for the JSON dump.
    samples: list[float] = field(default_factory=list, repr=False)
    note: str = ""
