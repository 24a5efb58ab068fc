"""`harness diagnose` and `harness replay` as real subprocesses, stopped mid-run by SIGTERM, SIGINT, SIGHUP or SIGKILL.

Mid-run is decided from outside, as a user's `timeout` or CI cancellation would hit it: the
signal goes out when the flow's first plan rows are committed in the target database (diagnose)
or when the first cassette's verdict is printed (replay). Afterwards the database, the
processes and the folders are inspected: nothing of the run may be left behind after a
catchable signal, and what SIGKILL leaves is swept by the next run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness.config import sqlalchemy_url
from harness.postgres import ENV_BASEDIR, ENV_DATABASE_URL, ENV_PROVIDER, start_cluster
from tests.support import content
from tests.support.scenarios import healthy_script
from tests.support.wire_server import Delayed, WireScript, WireServer

from .test_cli import ROOT, harness

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-sig-7c1e2f3a4b5d6e7f", "OPENAI_API_KEY": "sk-proj-sig-1a2b3c4d5e6f7a8b"}
IDS = ("--user-id", "user-9", "--session-id", "sid-9")
TABLES = (
    "discovery_documents",
    "masterplans",
    "masterplan_phases",
    "masterplan_milestones",
    "masterplan_tasks",
    "masterplan_task_dependencies",
)
#: A run must be over this long after its signal (the canary cleanup is bounded by the statement timeout).
BOUND_S = 60


def _libpq(database_url: str) -> str:
    return sqlalchemy_url(database_url).replace("+psycopg", "")


def _rows(database_url: str) -> dict[str, int]:
    with psycopg.connect(_libpq(database_url), connect_timeout=2) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    exe = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "harness"
    command = [str(exe) if exe.exists() else "harness", *args]
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _when_plan_rows_are_committed(process: subprocess.Popen[str], database_url: str) -> None:
    """Wait (polling from outside) until the flow has committed masterplan tasks; fail if the run ends first."""
    with psycopg.connect(_libpq(database_url), connect_timeout=2, autocommit=True) as connection:
        while process.poll() is None:
            if connection.execute("SELECT count(*) FROM masterplan_tasks").fetchone()[0]:
                return
            time.sleep(0.02)
    pytest.fail(f"the run ended before it committed a plan: {process.stdout.read()[-2000:]}")  # type: ignore[union-attr]


def _diagnose_env(database_url: str, reports: Path) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "HARNESS_REPORTS_DIR": str(reports), **KEYS}


def _latest_report(reports: Path) -> dict:
    return json.loads((reports / "latest" / "report.json").read_text())


def _messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("harness:")]


@pytest.mark.slow
@pytest.mark.parametrize("second", [None, signal.SIGINT], ids=["one-signal", "second-signal-during-cleanup"])
def test_sigterm_mid_diagnose_removes_the_canary_rows_and_keeps_the_report(
    flow_database_url: str, tmp_path: Path, second: signal.Signals | None
) -> None:
    """SIGTERM while the flow writes: exit 143, one line, no row left in any table, the report of what ran written."""
    process = _start("diagnose", *IDS, env=_diagnose_env(flow_database_url, tmp_path))
    _when_plan_rows_are_committed(process, flow_database_url)
    process.send_signal(signal.SIGTERM)
    if second is not None:
        time.sleep(0.05)
        process.send_signal(second)
    _stdout, stderr = process.communicate(timeout=BOUND_S)

    assert process.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    (message,) = _messages(stderr)[-1:]
    assert message.startswith("harness: stopped by SIGTERM") and "canary rows removed and verified" in message
    assert set(_rows(flow_database_url).values()) == {0}
    report = _latest_report(tmp_path)
    assert report["meta"]["interrupted"] == "SIGTERM" and report["summary"]["ok"] is False
    (run,) = report["runs"]
    canary = [c for c in run["checks"] if c["id"] == "PERSIST008"]
    assert [c["outcome"] for c in canary] == ["passed"]
    assert any(c["stage"] == "db" and c["outcome"] == "passed" for c in run["checks"])


@pytest.mark.slow
def test_sigkill_mid_diagnose_leaves_a_canary_that_the_next_diagnose_removes_and_reports(
    flow_database_url: str, tmp_path: Path
) -> None:
    """After kill -9 the canary rows stay; the next diagnose finds them, removes them and warns with when they were written."""
    process = _start("diagnose", *IDS, env=_diagnose_env(flow_database_url, tmp_path))
    _when_plan_rows_are_committed(process, flow_database_url)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=BOUND_S)
    assert process.returncode == -signal.SIGKILL
    left = _rows(flow_database_url)
    assert left["masterplans"] == 1 and left["masterplan_tasks"] > 0
    with psycopg.connect(_libpq(flow_database_url)) as connection:
        (session_id,) = connection.execute("SELECT session_id FROM masterplans").fetchone()
    assert session_id.startswith("harness-canary-")
    written = f"{session_id[15:19]}-{session_id[19:21]}-{session_id[21:23]} {session_id[24:26]}:{session_id[26:28]}"

    result = harness(
        "diagnose", "--llm", "off", "--format", "json", *IDS, env=_diagnose_env(flow_database_url, tmp_path)
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    (run,) = json.loads(result.stdout)["runs"]
    outcomes = {c["id"]: c for c in run["checks"] if c["id"] in ("PERSIST008", "PERSIST014")}
    assert outcomes["PERSIST008"]["outcome"] == "passed"
    assert outcomes["PERSIST014"]["outcome"] == "warned"
    (finding,) = outcomes["PERSIST014"]["findings"]
    assert session_id in finding["message"] and written in finding["message"]
    assert set(_rows(flow_database_url).values()) == {0}


# -- replay: the disposable server and its folder -----------------------------------------------


@pytest.fixture
def pg_base() -> Iterator[Path]:
    """A base directory of our own for disposable clusters, so what a run leaves there is this test's to see."""
    base = Path(tempfile.mkdtemp(prefix="harness-signals-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
    base.chmod(0o755)  # the postgres user must reach the cluster folders inside
    try:
        yield base
    finally:
        for pid in _postgres_processes(base):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def _replay_env(base: Path, reports: Path) -> dict[str, str]:
    return {
        ENV_BASEDIR: str(base),
        ENV_PROVIDER: "local-binaries,embedded-wheel",  # a server of our own: its process and folder are checked
        ENV_DATABASE_URL: "",
        "HARNESS_REPORTS_DIR": str(reports),
    }


def _postgres_processes(base: Path) -> list[int]:
    """Processes whose command line names a folder under ``base`` (a server serving a cluster there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(base) in command and "postgres" in command:
            found.append(int(entry.name))
    return found


def _cluster_folders(base: Path) -> list[Path]:
    return sorted(base.glob("harness-pg-run-*"))


def _after_first_verdict(process: subprocess.Popen[str]) -> list[str]:
    """Read replay's output until the first cassette's verdict line; the lines read so far."""
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if line.startswith(("  ✔ ", "  ✘ ")):
            return lines
    pytest.fail(f"replay ended before its first verdict: {''.join(lines)[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_mid_replay_stops_the_server_removes_its_folder_and_keeps_finished_cassettes(
    pg_base: Path, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """SIGTERM, SIGINT or SIGHUP mid-replay: its exit code, one line, no server or cluster folder left, a report of what finished."""
    process = _start("replay", "cassettes", env=_replay_env(pg_base, tmp_path))
    _after_first_verdict(process)
    assert _cluster_folders(pg_base) and _postgres_processes(pg_base), "the run's server is up while it replays"
    process.send_signal(signum)
    _stdout, stderr = process.communicate(timeout=BOUND_S)

    assert process.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr and "Aborted" not in stderr
    (message,) = _messages(stderr)
    assert message.startswith(f"harness: stopped by {signum.name}") and "disposable PostgreSQL stopped" in message
    assert _cluster_folders(pg_base) == [] and _postgres_processes(pg_base) == []
    report = _latest_report(tmp_path)
    assert report["meta"]["interrupted"] == signum.name and report["summary"]["ok"] is False
    finished = report["runs"]
    assert 1 <= len(finished) < len(list((ROOT / "cassettes").glob("*.yaml")))
    assert all(run["matched"] for run in finished)
    assert f"{len(finished)} of " in message


@pytest.mark.slow
def test_sigkill_mid_replay_leaves_the_server_and_the_next_start_sweeps_it(pg_base: Path, tmp_path: Path) -> None:
    """kill -9 leaves the server and its folder (nothing can run); the next replay's start stops and removes them."""
    process = _start("replay", "cassettes", env=_replay_env(pg_base, tmp_path))
    _after_first_verdict(process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=BOUND_S)
    orphans, folders = _postgres_processes(pg_base), _cluster_folders(pg_base)
    assert orphans and folders, "a killed run cannot stop its server"

    result = harness(
        "replay", "cassettes/discovery-bad-key.yaml", env=_replay_env(pg_base, tmp_path), timeout=BOUND_S
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert not set(orphans) & set(_postgres_processes(pg_base))
    assert not set(folders) & set(_cluster_folders(pg_base))
    assert _cluster_folders(pg_base) == [] and _postgres_processes(pg_base) == []


@pytest.mark.slow
def test_sigterm_while_recording_writes_no_cassette_and_stops_the_disposable_server(
    pg_base: Path, tmp_path: Path
) -> None:
    """SIGTERM while `record --disposable-db` waits for an answer: exit 143, no cassette, no server or folder left."""
    script = healthy_script("task_manager")
    held = [script.anthropic[0], Delayed(script.anthropic[1], 20.0), *script.anthropic[2:]]
    out = tmp_path / "cassettes"
    with (
        WireServer(WireScript(anthropic=held)) as anthropic,
        WireServer(WireScript(openai=list(script.openai))) as openai,
    ):
        process = _start(
            "record", content.request_for("task_manager"), "--name", "stopped", "--out", str(out), "--disposable-db",
            "--anthropic-base-url", anthropic.base_url, "--openai-base-url", openai.base_url + "/v1",
            env={**_replay_env(pg_base, tmp_path / "reports"), **KEYS},
        )
        deadline = time.monotonic() + BOUND_S
        while len(anthropic.requests) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # the second call (the held one) has been sent: the run waits for its answer
        assert process.poll() is None, process.communicate()[0][-2000:]
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=BOUND_S)

    assert process.returncode == 143, stderr[-2000:]
    (message,) = _messages(stderr)
    assert message.startswith("harness: stopped by SIGTERM; nothing recorded") and "Traceback" not in stderr
    assert not (out / "stopped.yaml").exists()
    assert _cluster_folders(pg_base) == [] and _postgres_processes(pg_base) == []
    assert _latest_report(tmp_path / "reports")["meta"]["interrupted"] == "SIGTERM"


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_db012s_trial_runs_ahead_stops_its_server_and_removes_its_folder(
    pg_base: Path, tmp_path: Path, silent_listener: int, signum: signal.Signals, code: int
) -> None:
    """diagnose on a server that never answers runs DB012's trial while the connect waits; stopped then: no server left."""
    environ = {ENV_BASEDIR: str(pg_base), ENV_PROVIDER: "local-binaries", ENV_DATABASE_URL: ""}
    start_cluster(environ=environ).stop()  # the initdb cache made now: the run's own start is a copy and a start
    env = {
        **environ,
        "DATABASE_URL": f"postgresql://u:p@127.0.0.1:{silent_listener}/x",
        "HARNESS_REPORTS_DIR": str(tmp_path),
        **KEYS,
    }
    process = _start("--log-level", "debug", "--log-format", "json", "diagnose", "--llm", "off", env=env)
    deadline = time.monotonic() + BOUND_S  # a bound on a hang, not a speed
    while not _postgres_processes(pg_base) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before its trial's server was up"
    process.send_signal(signum)
    _stdout, stderr = process.communicate(timeout=BOUND_S)

    assert process.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr and "trial_begun_ahead" in stderr
    assert _cluster_folders(pg_base) == [] and _postgres_processes(pg_base) == []


def test_help_documents_the_signal_exit_codes() -> None:
    """`harness --help` names 130, 143 and 129 and what a stopped command leaves behind."""
    result = harness("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "130/143/129" in text and "SIGINT/SIGTERM/SIGHUP" in text and "canary rows removed" in text
