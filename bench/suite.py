"""The project's test suite: wall time in one process (``-n 0``) and with pytest-xdist (``-n 2``, the default).

Each xdist worker is its own process with its own pytest session, so the session-scoped
``postgres_cluster`` fixture gives every worker a cluster of its own. A run that does not
pass is reported with its summary line, never hidden behind a time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SuiteRun", "run_suite", "xdist_available"]

REPO = Path(__file__).resolve().parent.parent
#: A suite run slower than this is stopped (the whole suite, ~900 tests, takes a few minutes).
SUITE_CEILING_S = 1200.0


@dataclass(frozen=True)
class SuiteRun:
    """One run of the suite: wall seconds, exit code and pytest's closing line."""

    seconds: float
    exit_code: int
    summary: str

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def xdist_available() -> bool:
    """Whether pytest-xdist can be loaded here."""
    try:
        import xdist  # noqa: F401
    except ImportError:
        return False
    return True


def run_suite(workers: int | None = None) -> SuiteRun:
    """Run ``pytest`` over the project's tests (``-n workers`` with xdist, ``-n 0`` for one process) and time it."""
    # pyproject's addopts turn xdist on (-n 2): one process is asked for with -n 0.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers or 0)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(REPO)
    started = time.perf_counter()
    try:
        result = subprocess.run(
            command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=SUITE_CEILING_S
        )
    except subprocess.TimeoutExpired:
        return SuiteRun(time.perf_counter() - started, -1, f"stopped after {SUITE_CEILING_S:g} s")
    seconds = time.perf_counter() - started
    lines = [line for line in result.stdout.splitlines() if re.search(r"\b(passed|failed|error)", line)]
    summary = lines[-1].strip("= ") if lines else (result.stdout + result.stderr).strip()[-200:]
    if result.returncode != 0:
        failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        if failed:
            summary += " — " + "; ".join(failed[:5])
    return SuiteRun(seconds, result.returncode, summary)
