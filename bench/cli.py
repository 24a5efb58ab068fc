"""The command line as a user meets it: start-up time, and time to a verdict on a dead database.

Every sample is a fresh subprocess timed from spawn to exit, so interpreter start-up and
imports are counted, exactly as a user waits for them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DIAGNOSE_ARGS",
    "VerdictTimes",
    "diagnose_available",
    "measure_startup",
    "measure_time_to_verdict",
    "silent_listener",
]

REPO = Path(__file__).resolve().parent.parent
#: ``harness diagnose`` with the LLM calls skipped: only env, db and auth decide the verdict.
DIAGNOSE_ARGS = ["diagnose", "--llm", "off"]
#: No single sample may hang the benchmark: a verdict slower than this is recorded as this.
VERDICT_CEILING_S = 30.0


def _harness_command() -> list[str]:
    """The ``harness`` console script beside this interpreter (as users run it), else ``python -m harness.cli``."""
    script = Path(sys.executable).parent / "harness"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "harness.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_URL", "HARNESS_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _timed_run(command: list[str], env: dict[str, str], timeout: float = VERDICT_CEILING_S) -> tuple[float, int, str]:
    """(seconds, exit code, output) of one subprocess run."""
    started = time.perf_counter()
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, -1, f"timed out after {timeout:g} s"
    return time.perf_counter() - started, result.returncode, result.stdout + result.stderr


def measure_startup(runs: int) -> tuple[list[float], list[float]]:
    """Interleaved samples of ``harness --help`` and of ``python -c pass`` (the baseline)."""
    help_times: list[float] = []
    baseline: list[float] = []
    env = _env()
    _timed_run([*_harness_command(), "--help"], env)  # warm the file cache and .pyc files
    for _ in range(runs):
        seconds, code, output = _timed_run([*_harness_command(), "--help"], env)
        if code != 0:
            raise RuntimeError(f"harness --help failed ({code}): {output[-300:]}")
        help_times.append(seconds)
        baseline.append(_timed_run([sys.executable, "-c", "pass"], env)[0])
    return help_times, baseline


def diagnose_available() -> bool:
    """Whether this checkout has a ``harness diagnose`` command."""
    _seconds, code, _output = _timed_run([*_harness_command(), "diagnose", "--help"], _env(), timeout=60)
    return code == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent_listener(limit_s: float = 120.0) -> Iterator[int]:
    """A loopback TCP port that accepts connections and never says a word; closed on exit or after ``limit_s``."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()
    deadline = time.monotonic() + limit_s

    def accept_and_hold() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept_and_hold, name="silent-listener", daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(1.0)
        for connection in held:
            connection.close()
        server.close()


@dataclass(frozen=True)
class VerdictTimes:
    """Samples (seconds) of ``harness diagnose`` per scenario, with the check IDs its output named."""

    scenario: str
    samples: list[float]
    exit_codes: list[int]
    #: DB check IDs seen in the output of the last run (e.g. ``DB001``).
    checks: list[str]


def _diagnose_once(database_url: str) -> tuple[float, int, list[str]]:
    env = _env(
        DATABASE_URL=database_url,
        # Well-formed stand-ins so the env stage passes and the db stage is what decides.
        ANTHROPIC_API_KEY="sk-ant-bench-000000000000000000",
        OPENAI_API_KEY="sk-bench-0000000000000000000000",
    )
    seconds, code, output = _timed_run([*_harness_command(), *DIAGNOSE_ARGS], env)
    checks = sorted({word.strip("`:,.()[]") for word in output.split() if word.strip("`:,.()[]").startswith("DB0")})
    return seconds, code, checks


def measure_time_to_verdict(runs: int) -> list[VerdictTimes]:
    """``runs`` samples of ``harness diagnose --llm off`` against a closed port and a silent listener."""
    results = []
    closed = f"postgresql://bench:bench@127.0.0.1:{_free_port()}/bench"
    scenarios = [("closed port", lambda: closed)]
    for name, make_url in scenarios:
        samples, codes, checks = [], [], []
        for _ in range(runs):
            seconds, code, checks = _diagnose_once(make_url())
            samples.append(seconds)
            codes.append(code)
        results.append(VerdictTimes(name, samples, codes, checks))
    with silent_listener() as port:
        url = f"postgresql://bench:bench@127.0.0.1:{port}/bench"
        samples, codes, checks = [], [], []
        for _ in range(runs):
            seconds, code, checks = _diagnose_once(url)
            samples.append(seconds)
            codes.append(code)
        results.append(VerdictTimes("listener that never answers", samples, codes, checks))
    return results
