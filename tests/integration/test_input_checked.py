"""Input checked before any work starts: bad input is exit 2 with one line naming it, never exit 3 or a lost run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.postgres import ENV_DATABASE_URL, ENV_PROVIDER

from .test_cli import ROOT, harness

CASSETTES = ROOT / "cassettes"
SCHEMA = json.loads((ROOT / "harness" / "reports" / "report.schema.json").read_text())


def _with_expectation(tmp_path: Path, expect: str) -> Path:
    path = tmp_path / "cassette.yaml"
    data = yaml.safe_load((CASSETTES / "discovery-bad-key.yaml").read_text())
    data["metadata"]["harness"]["expect"] = expect
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("expect", "says"),
    [
        ("nonsense", "not a verdict"),
        ("LLM01", "not a verdict"),
        ("parse:LLM001", "LLM001 is a check of stage llm, not parse: write llm:LLM001"),
        ("llm:LLM01", "no check 'LLM01' in the catalogue"),
        ("persist:PERSIST009", "PERSIST009 is a warning"),
    ],
)
def test_replay_refuses_an_expectation_no_replay_could_give(tmp_path: Path, expect: str, says: str) -> None:
    """An expected verdict outside the catalogue is exit 2 naming the file and the value, before anything runs."""
    path = _with_expectation(tmp_path, expect)
    result = harness("replay", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and repr(expect) in result.stderr and says in result.stderr
    assert "Replaying" not in result.stdout and "Traceback" not in result.stderr


def test_every_committed_cassette_expects_a_verdict_of_the_catalogue() -> None:
    """The cassettes we ship all pass the expectation check (replay would refuse them otherwise)."""
    from harness.cassettes import discover_cassettes, expectation_problem, load_meta

    for path in discover_cassettes([CASSETTES]):
        assert expectation_problem(load_meta(path).expect) is None, path


def test_an_unknown_provider_is_bad_usage() -> None:
    """HARNESS_PG_PROVIDER=bogus is exit 2 naming the value and the known providers, not a harness bug (3)."""
    result = harness("replay", str(CASSETTES / "discovery-bad-key.yaml"), env={ENV_PROVIDER: "bogus"})
    assert result.returncode == 2, result.stderr
    assert "bogus" in result.stderr and "local-binaries" in result.stderr and "internal error" not in result.stderr


def test_an_unreachable_external_server_is_an_error_not_a_fallback() -> None:
    """HARNESS_TEST_DATABASE_URL pointing nowhere is exit 2 naming it; local binaries are not quietly used instead."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = harness(
        "replay",
        str(CASSETTES / "discovery-bad-key.yaml"),
        env={ENV_DATABASE_URL: f"postgresql://postgres:pw@127.0.0.1:{port}/postgres", ENV_PROVIDER: ""},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "external-dsn" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    assert "local-binaries" not in result.stderr and "Replaying" not in result.stdout


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"], ids=["bytes", "png"])
def test_report_refuses_a_binary_file_in_one_line(tmp_path: Path, content: bytes) -> None:
    """`harness report` given a binary file is exit 2 with one line, not an internal error."""
    path = tmp_path / "report.json"
    path.write_bytes(content)
    result = harness("report", str(path))
    assert result.returncode == 2, result.stderr
    assert "not a harness run report" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [("replay", str(CASSETTES / "discovery-bad-key.yaml")), ("diagnose", "--llm", "off")])
def test_an_unwritable_reports_folder_is_refused_before_the_run(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A --reports-dir that cannot be made is exit 2 before any work (works as root too: a file stands in the way)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = harness(*command, "--reports-dir", str(blocker / "reports"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot write reports to" in result.stderr
    assert "Replaying" not in result.stdout and "harness diagnose —" not in result.stdout


def test_probes_piped_into_head_exits_0() -> None:
    """`harness probes | head -1` exits 0: a reader that stops reading is not an error."""
    exe = shutil.which("harness", path=os.path.dirname(sys.executable)) or "harness"
    for _ in range(3):  # the race between head closing and our writes differs run to run
        result = subprocess.run(
            ["bash", "-c", f"'{exe}' probes | head -1; exit ${{PIPESTATUS[0]}}"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("ENV001") and "Traceback" not in result.stderr and "Error" not in result.stderr


@pytest.mark.slow
def test_replay_json_is_the_versioned_report(tmp_path: Path) -> None:
    """`replay --format json` prints exactly the run's report.json, valid under the published schema."""
    result = harness("replay", "--format", "json", str(CASSETTES / "discovery-bad-key.yaml"), "--reports-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(printed)
    assert printed == json.loads((tmp_path / "latest" / "report.json").read_text())
    (run,) = printed["runs"]
    assert run["expect"] == run["verdict"] == "llm:LLM003" and run["matched"] is True


@pytest.mark.slow
def test_diagnose_json_is_the_versioned_report(flow_database_url: str, tmp_path: Path) -> None:
    """`diagnose --format json` prints exactly its report.json, valid under the published schema."""
    result = harness(
        "diagnose", "--format", "json", "--llm", "off", "--user-id", "u", "--session-id", "s",
        "--reports-dir", str(tmp_path), env={"DATABASE_URL": flow_database_url},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    printed = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(printed)
    assert printed == json.loads((tmp_path / "latest" / "report.json").read_text())
    assert printed["meta"]["command"] == "diagnose" and printed["meta"]["interrupted"] is None
