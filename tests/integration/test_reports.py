"""Reports from the command line: replay writes them, `harness report` re-renders them or refuses in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import ROOT, harness

CASSETTE = ROOT / "cassettes" / "masterplan-max-tokens.yaml"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> tuple[Path, object]:
    """`harness replay` of the max_tokens cassette with JSON debug logs, reports in a temp folder."""
    reports = tmp_path_factory.mktemp("reports")
    result = harness(
        "--log-format", "json", "--log-level", "debug", "replay", str(CASSETTE), "--reports-dir", str(reports)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return reports, result


def test_replay_writes_every_format_and_points_latest_at_it(replayed) -> None:
    """One timestamped folder with report.json, report.md, junit.xml and report.html; latest links to it."""
    reports, result = replayed
    (folder,) = [p for p in reports.iterdir() if p.name.endswith("-replay")]
    assert sorted(p.name for p in folder.iterdir()) == ["junit.xml", "report.html", "report.json", "report.md"]
    assert (reports / "latest").resolve() == folder.resolve()
    assert f"Reports: {folder}/" in result.stdout
    data = json.loads((folder / "report.json").read_text())
    assert data["runs"][0]["first_failure"]["id"] == "LLM001" and data["meta"]["command"] == "replay"
    assert ":***@" in data["meta"]["target"]["database_url"]


@pytest.mark.parametrize(
    ("fmt", "name"), [("json", "report.json"), ("md", "report.md"), ("junit", "junit.xml"), ("html", "report.html")]
)
def test_report_re_renders_the_saved_files(replayed, fmt: str, name: str) -> None:
    """`harness report latest --format F` prints exactly the file the run wrote."""
    reports, _ = replayed
    result = harness("report", str(reports / "latest"), "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (reports / "latest" / name).read_text()


def test_logs_are_json_lines_bound_with_stage_probe_and_check_id(replayed) -> None:
    """--log-format json: every stderr line is JSON; the failing check and db transactions tell the story."""
    _, result = replayed
    events = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    failed = [e for e in events if e["event"] == "check_finished" and e["outcome"] == "failed"]
    assert [(e["stage"], e["probe"], e["check_id"]) for e in failed] == [("llm", "masterplan", "LLM001")]
    committed = [e for e in events if e["event"] == "db_committed"]
    assert committed and all(e["level"] == "debug" and "inserted" in e for e in committed)
    assert "sk-ant-replay" not in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no report at"),
        ('{"kind": "masterplan-harness/run-report", "schema_version": 7}', "schema version 7"),
        ('{"cassettes": [], "matched": 0}', "is not a harness run report"),
        ("not json at all", "not JSON"),
    ],
)
def test_report_bad_input_is_one_line_exit_2(tmp_path: Path, content, expected: str) -> None:
    """A missing file, another schema version or non-report JSON: one clear line on stderr, exit 2."""
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    result = harness("report", str(path))
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout
