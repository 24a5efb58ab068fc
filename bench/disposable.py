"""Disposable database: session-ready time against pytest-postgresql, and create + drop per test.

Session-ready time is what a test session waits before its first test can touch the
database. Both sides are measured the same way: a fresh ``pytest`` process runs one test
that asks for the session fixture — ``postgres_cluster`` (ours) or ``postgresql_proc``
(pytest-postgresql) — and a hook times that test's setup. pytest-postgresql refuses to
run as root, so when we are root it runs as the ``postgres`` user with the system Python
and a private install of it (``--target``); ours runs as we do, as users run it.

The direct ``initdb`` + ``pg_ctl start -w`` pair (what pytest-postgresql does per
session) is timed too, as the ``postgres`` user when we are root: it needs no extra
package, and it is the baseline when pytest-postgresql cannot be run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import time_call
from harness.postgres import DatabaseFactory

__all__ = [
    "PGPP_TARGET",
    "SessionReady",
    "measure_create_drop",
    "measure_session_ready",
]

#: Where a private pytest-postgresql install lives when we are root (``BENCH_PGPP_TARGET`` overrides).
PGPP_TARGET = Path(os.environ.get("BENCH_PGPP_TARGET", "/tmp/bench-pytest-postgresql"))
PGPP_REQUIREMENT = "pytest-postgresql>=10,<11"
REPO = Path(__file__).resolve().parent.parent

_CONFTEST = """
import os, time, pytest

@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        with open(os.environ["BENCH_SETUP_OUT"], "w") as out:
            out.write(repr(time.perf_counter() - started))
"""


@dataclass(frozen=True)
class SessionReady:
    """Samples (seconds) of each way to get a session's database ready; empty when not measurable."""

    ours: list[float]
    pytest_postgresql: list[float]
    initdb_pg_ctl: list[float]
    #: Why pytest-postgresql was not measured, if it was not.
    pgpp_skipped: str = ""


def _pg_bindir() -> Path:
    from harness.postgres import _find_local_bindir

    return _find_local_bindir(os.environ)


def _as_postgres_user() -> dict:
    """``subprocess`` arguments that drop root to the ``postgres`` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _chown_for_run(path: Path) -> None:
    kwargs = _as_postgres_user()
    if kwargs:
        for directory, _dirs, files in os.walk(path):
            os.chown(directory, kwargs["user"], kwargs["group"])
            for name in files:
                os.chown(os.path.join(directory, name), kwargs["user"], kwargs["group"])


def _pgpp_python() -> tuple[list[str], dict[str, str]] | str:
    """The interpreter (and PYTHONPATH) that runs pytest-postgresql, or why there is none."""
    if os.geteuid() != 0:
        try:
            import pytest_postgresql  # noqa: F401
        except ImportError:
            return "pytest-postgresql is not installed (pip install -e '.[bench]')"
        return [sys.executable], {}
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        return "running as root and no system python3 for the postgres user to run pytest-postgresql"
    if not (PGPP_TARGET / "pytest_postgresql").is_dir():
        # The postgres user cannot read our venv (it lives under /root here): give it its own copy.
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(PGPP_TARGET), PGPP_REQUIREMENT],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            return f"could not install {PGPP_REQUIREMENT} into {PGPP_TARGET}: {result.stderr.strip()[-300:]}"
    return [system_python], {"PYTHONPATH": str(PGPP_TARGET)}


def _pytest_setup_time(
    python: list[str], env_extra: dict[str, str], fixture: str, args: list[str], user: dict
) -> float:
    """Seconds the setup of one test asking for ``fixture`` took, in a fresh pytest process."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-session-", dir="/tmp"))
    try:
        (workdir / "pytest.ini").write_text("[pytest]\n")
        (workdir / "conftest.py").write_text(_CONFTEST)
        (workdir / "test_ready.py").write_text(f"def test_ready({fixture}):\n    pass\n")
        out = workdir / "setup.txt"
        if user:
            _chown_for_run(workdir)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "BENCH_SETUP_OUT": str(out),
            **env_extra,
        }
        command = [*python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={workdir / 'tmp'}", *args]
        result = subprocess.run(
            [*command, "test_ready.py"],
            check=False,
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **user,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"pytest with {fixture} failed: " + " | ".join(tail))
        return float(out.read_text())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _initdb_pg_ctl_time(bindir: Path) -> float:
    """``initdb`` then ``pg_ctl start -w`` into a fresh directory (what pytest-postgresql does), timed; then stopped."""
    user = _as_postgres_user()
    workdir = Path(tempfile.mkdtemp(prefix="bench-initdb-", dir="/tmp"))
    try:
        _chown_for_run(workdir)
        data = workdir / "data"
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
        from harness.postgres import _free_port

        port = _free_port()

        def initdb_and_start() -> None:
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "--auth=trust", "--username=postgres"],
                check=True,
                capture_output=True,
                env=env,
                timeout=60,
                **user,
            )
            subprocess.run(
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "-w",
                    "-D",
                    str(data),
                    "-o",
                    f"-F -p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={workdir}",
                    "-l",
                    str(workdir / "log"),
                ],
                check=True,
                capture_output=True,
                env=env,
                timeout=60,
                **user,
            )

        elapsed = time_call(initdb_and_start)
        subprocess.run(
            [str(bindir / "pg_ctl"), "stop", "-m", "fast", "-D", str(data)],
            check=False,
            capture_output=True,
            env=env,
            timeout=60,
            **user,
        )
        return elapsed
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure_session_ready(runs: int) -> SessionReady:
    """``runs`` interleaved samples of ours, pytest-postgresql's process fixture, and initdb + pg_ctl."""
    bindir = _pg_bindir()
    ours_env = {"PYTHONPATH": str(REPO)}
    pgpp = _pgpp_python()
    pgpp_args = [f"--postgresql-exec={bindir / 'pg_ctl'}"]
    ours: list[float] = []
    theirs: list[float] = []
    direct: list[float] = []
    skipped = pgpp if isinstance(pgpp, str) else ""
    for _ in range(runs):
        ours.append(_pytest_setup_time([sys.executable], ours_env, "postgres_cluster", [], {}))
        if not skipped:
            assert not isinstance(pgpp, str)
            try:
                theirs.append(_pytest_setup_time(pgpp[0], pgpp[1], "postgresql_proc", pgpp_args, _as_postgres_user()))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                skipped = str(exc)[:300]
                theirs.clear()
        direct.append(_initdb_pg_ctl_time(bindir))
    return SessionReady(ours=ours, pytest_postgresql=theirs, initdb_pg_ctl=direct, pgpp_skipped=skipped)


def measure_create_drop(
    factory: DatabaseFactory, runs: int, baseline: DatabaseFactory | None = None, body_s: float = 0.05
) -> tuple[list[float], list[float], list[float]]:
    """(create, create + drop, baseline create + drop) samples of a fresh database cloned from the migrated template.

    ``factory`` clones a spare ahead (the default); ``baseline``, if given, is a factory on the same
    cluster with ``spare=False``, sampled interleaved. Between create and drop the database sits
    unused for ``body_s`` (a short test's body, not timed): that is when the spare's next clone is
    made. Back to back it would not help, since CREATE and DROP share one admin connection.
    """
    factories = [factory] + ([baseline] if baseline is not None else [])
    for each in factories:  # the template is made on first use: not part of a test's cost
        each.drop(each.new_database())
    creates: list[float] = []
    totals: list[float] = []
    baseline_totals: list[float] = []
    for _ in range(runs):
        for each in factories:
            urls: list[str] = []
            create = time_call(lambda each=each, urls=urls: urls.append(each.new_database()))
            time.sleep(body_s)
            drop = time_call(lambda each=each, urls=urls: each.drop(urls[0]))
            if each is factory:
                creates.append(create)
                totals.append(create + drop)
            else:
                baseline_totals.append(create + drop)
    return creates, totals, baseline_totals
