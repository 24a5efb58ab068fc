"""``harness replay`` of the whole cassette library, end to end, as a user runs it.

Every sample is a fresh ``harness replay --format json`` subprocess timed from spawn to exit:
interpreter start-up, imports, starting the disposable PostgreSQL, migrating its template,
every cassette, the reports (written into a temporary folder) and stopping the cluster.
Three commands, interleaved sample by sample (the order rotates each round) so a busy machine
slows them alike:

- the library (``cassettes/``) with ``-j 1``, one cassette after another;
- the library with ``-j 2``, two at a time (one process each);
- one cassette (``cassettes/healthy-task-manager.yaml``), the same command: what a run costs
  before its cassettes, so "library ÷ one cassette" says how much the other cassettes add;
- importing the reference flow alone (``python -c "import harness.flow.entry"``: the flow and the
  SDKs it imports), which every replay of it pays before its first cassette — the floor under
  which no replay of this flow goes, however fast the rest.

A sample counts only if the command exits 0 and its report says every cassette matched its
expectation; anything else is kept as a failure with its reason, never timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.cli import _env, _harness_command

__all__ = ["LIBRARY_CEILING_S", "ONE_CASSETTE", "LibraryTimes", "measure_library"]

REPO = Path(__file__).resolve().parent.parent
CASSETTES = REPO / "cassettes"
ONE_CASSETTE = CASSETTES / "healthy-task-manager.yaml"
#: No sample may hang the benchmark: a replay slower than this is stopped and counted as failed.
LIBRARY_CEILING_S = 300.0


@dataclass
class LibraryTimes:
    """Wall-time samples (seconds) of each command, and what failed."""

    cassettes: int
    one: list[float] = field(default_factory=list)
    jobs1: list[float] = field(default_factory=list)
    jobs2: list[float] = field(default_factory=list)
    #: ``python -c "import harness.flow.entry"``: the reference flow's imports, SDKs included.
    flow_import: list[float] = field(default_factory=list)
    #: Sum of the report's per-cassette ``duration_s`` in each ``-j 1`` library run: the cassettes
    #: themselves, without start-up, cluster, template and reports.
    jobs1_cassette_sum: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _replay(paths: list[Path], jobs: int, expected_runs: int) -> tuple[float, dict | None, str]:
    """(seconds, report, why it failed or "") of one ``harness replay`` subprocess."""
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as reports:
        command = [
            *_harness_command(),
            "replay",
            "-j",
            str(jobs),
            "--format",
            "json",
            "--reports-dir",
            reports,
            *map(str, paths),
        ]
        started = time.perf_counter()
        try:
            result = subprocess.run(
                command, check=False, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=LIBRARY_CEILING_S
            )
        except subprocess.TimeoutExpired:
            return time.perf_counter() - started, None, f"stopped after {LIBRARY_CEILING_S:g} s"
        seconds = time.perf_counter() - started
    if result.returncode != 0:
        return seconds, None, f"exit {result.returncode}: {(result.stderr or result.stdout).strip()[-300:]}"
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        return seconds, None, f"stdout is not the JSON report ({error}): {result.stdout[:200]!r}"
    runs = report.get("runs", [])
    unmatched = [run.get("name", "?") for run in runs if not run.get("matched")]
    if report.get("summary", {}).get("mismatched") != 0 or unmatched:
        return seconds, None, f"verdicts not as expected: {', '.join(unmatched) or report.get('summary')}"
    if len(runs) != expected_runs:
        return seconds, None, f"{len(runs)} cassettes replayed, {expected_runs} expected"
    return seconds, report, ""


def measure_library(runs: int) -> LibraryTimes:
    """``runs`` interleaved samples: the library with ``-j 1`` and ``-j 2``, one cassette, the flow's import."""
    count = len(list(CASSETTES.glob("*.yaml")))
    times = LibraryTimes(cassettes=count)
    _replay([ONE_CASSETTE], 1, 1)  # warm-up: the initdb cache, .pyc files, the file cache

    def one() -> None:
        seconds, _report, failure = _replay([ONE_CASSETTE], 1, 1)
        if failure:
            times.failures.append(f"one cassette: {failure}")
        else:
            times.one.append(seconds)

    def library(jobs: int, samples: list[float]) -> None:
        seconds, report, failure = _replay([CASSETTES], jobs, count)
        if failure:
            times.failures.append(f"library -j {jobs}: {failure}")
            return
        samples.append(seconds)
        if jobs == 1 and report is not None:
            times.jobs1_cassette_sum.append(sum(run.get("duration_s") or 0.0 for run in report["runs"]))

    def flow_import() -> None:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", "import harness.flow.entry"], env=_env(), cwd=REPO, capture_output=True, timeout=120
        )
        if result.returncode == 0:
            times.flow_import.append(time.perf_counter() - started)
        else:
            times.failures.append(f"flow import: exit {result.returncode}: {result.stderr.decode()[-300:]}")

    commands = [one, lambda: library(1, times.jobs1), lambda: library(2, times.jobs2), flow_import]
    for round_ in range(runs):
        for index in range(len(commands)):
            commands[(index + round_) % len(commands)]()
    return times
