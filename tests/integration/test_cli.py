"""The ``harness`` command, run as a real subprocess the way a user runs it."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import probes

ROOT = Path(__file__).resolve().parents[2]
_SCRATCH_REPORTS = tempfile.mkdtemp(prefix="harness-test-reports-")
atexit.register(shutil.rmtree, _SCRATCH_REPORTS, ignore_errors=True)


def harness(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed console script (falling back to ``python -m harness.cli``)."""
    exe = shutil.which("harness", path=os.path.dirname(sys.executable)) or shutil.which("harness")
    command = [exe, *args] if exe else [sys.executable, "-m", "harness.cli", *args]
    # Reports go to a scratch folder unless a test says otherwise: tests never litter the repo's reports/.
    base = {**os.environ, "HARNESS_REPORTS_DIR": os.environ.get("HARNESS_TEST_REPORTS_DIR", _SCRATCH_REPORTS)}
    # The session's cluster (tests/conftest.py), unless the test chooses where PostgreSQL comes from itself.
    shared = os.environ.get("HARNESS_TESTS_SHARED_DATABASE_URL")
    if shared and not {"HARNESS_TEST_DATABASE_URL", "HARNESS_PG_PROVIDER"} & set(env or {}):
        base["HARNESS_TEST_DATABASE_URL"] = shared
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})}
    )


def test_help_lists_commands_and_exit_codes() -> None:
    """Top-level help names every command and documents exit codes."""
    result = harness("--help")
    assert result.returncode == 0
    for word in ("diagnose", "replay", "migrate", "probes", "explain", "Exit codes"):
        assert word in result.stdout


@pytest.mark.parametrize("command", ["diagnose", "replay", "migrate", "probes", "explain", "report"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    """Each command's --help teaches with an example."""
    result = harness(command, "--help")
    assert result.returncode == 0
    assert "Example" in result.stdout


def test_probes_lists_every_check_id() -> None:
    """`harness probes` prints one line per check in the catalogue."""
    result = harness("probes")
    assert result.returncode == 0
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert listed == {check.id for check in probes.ALL_CHECKS}


#: Checks of the design that watches any application from outside.
NEW_IDS = ("LLM101", "LLM102", "PARSE101", "PERSIST011", "PERSIST012", "PERSIST013", "PERSIST101", "DB011", "DB012")


def test_probes_and_explain_know_the_checks_of_the_outside_design() -> None:
    """The checks added for watching any application are listed by `probes` and printed by `explain`."""
    listed = {line.split()[0] for line in harness("probes").stdout.splitlines() if line.strip()}
    assert set(NEW_IDS) <= listed
    for check_id in NEW_IDS:
        result = harness("explain", check_id)
        assert result.returncode == 0 and result.stdout.startswith(f"{check_id} — ") and "fix:" in result.stdout


def test_explain_prints_stage_level_and_fix() -> None:
    """`harness explain` shows one check with its fix."""
    result = harness("explain", "llm001")
    assert result.returncode == 0
    assert "LLM001" in result.stdout and "stage: llm" in result.stdout and "fix:" in result.stdout


def test_unknown_check_id_is_bad_usage() -> None:
    """An unknown ID is one line on stderr and exit 2."""
    result = harness("explain", "DB999")
    assert result.returncode == 2
    assert "unknown check ID" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing.yaml", "no such file or folder"),
        (lambda tmp: tmp, "holds no cassette"),
        (lambda tmp: (tmp / "x.yaml").write_text("- not\n- a cassette\n") and tmp / "x.yaml", "not a vcrpy cassette"),
        (lambda tmp: (tmp / "x.yaml").write_text("a: [\n") and tmp / "x.yaml", "not valid YAML"),
        (
            lambda tmp: (
                (tmp / "x.yaml").write_text(
                    "interactions: []\nmetadata: {harness: {name: x, request: r, expect: pass, env: [turbo]}}\n"
                )
                and tmp / "x.yaml"
            ),
            "metadata.harness.env must map variable names to values",
        ),
    ],
)
def test_replay_bad_paths_exit_2_with_one_line(tmp_path: Path, make, expected: str) -> None:
    """Missing path, empty folder and non-cassettes give one line naming the path, exit 2, no traceback."""
    target = make(tmp_path)
    result = harness("replay", str(target))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and str(target) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_readme_table_lists_every_check_id() -> None:
    """Every check ID in the code appears in README's probe table, which is `harness probes --format markdown` as is."""
    readme = (ROOT / "README.md").read_text()
    missing = [check.id for check in probes.ALL_CHECKS if f"| `{check.id}` |" not in readme]
    assert missing == [], f"add these to README (harness probes --format markdown): {missing}"
    table = harness("probes", "--format", "markdown").stdout
    assert table in readme, "README's check table is stale: paste `harness probes --format markdown` over it"


BROKEN_CATALOGUE = """
import probes


class _Broken:  # a bug planted in the harness's own code: a catalogue entry that cannot say its ID
    @property
    def id(self):
        raise RuntimeError("catalogue entry broken near sk-ant-api03-PLANTEDkeyPLANTEDkey0042")


probes.ALL_CHECKS = (*probes.ALL_CHECKS, _Broken())
"""


@pytest.mark.parametrize("debug", [False, True])
def test_a_bug_in_the_harness_is_exit_3_without_a_traceback_unless_asked(tmp_path: Path, debug: bool) -> None:
    """A harness bug (planted at start-up through sitecustomize) is two redacted lines and exit 3; HARNESS_DEBUG shows it."""
    (tmp_path / "sitecustomize.py").write_text(BROKEN_CATALOGUE)
    env = {"PYTHONPATH": str(tmp_path), **({"HARNESS_DEBUG": "1"} if debug else {})}
    result = harness("probes", env=env)
    if debug:
        assert result.returncode != 0 and "Traceback" in result.stderr and "RuntimeError" in result.stderr
        return
    assert result.returncode == 3 and "PLANTEDkey" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "harness: internal error: RuntimeError: catalogue entry broken near ***",
        "This is a bug in the harness; rerun with HARNESS_DEBUG=1 for the traceback.",
    ]
