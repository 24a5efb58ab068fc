"""`harness replay` over the committed cassettes, as a subprocess on a disposable database."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.cassettes import discover_cassettes, load_meta
from harness.config import Models
from harness.redaction import find_secrets
from tests.support.scenarios import RECORDING_ANTHROPIC_KEY, RECORDING_OPENAI_KEY, SCENARIOS

from .test_cli import ROOT, harness

CASSETTES = ROOT / "cassettes"


def _findings(run: dict) -> list[dict]:
    return [finding for check in run["checks"] for finding in check["findings"]]


def _copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.yaml"
    shutil.copy(CASSETTES / f"{name}.yaml", target)
    return target


def _edit_meta(path: Path, **changes: str) -> None:
    data = yaml.safe_load(path.read_text())
    data["metadata"]["harness"].update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def committed() -> tuple[subprocess.CompletedProcess, dict]:
    """One `harness replay --format json` over cassettes/ (side by side, the default), shared by the tests reading it."""
    result = harness("replay", "--format", "json")
    return result, (json.loads(result.stdout) if result.stdout.startswith("{") else {})


def _cassette(report: dict, name: str) -> dict:
    return next(c for c in report["runs"] if c["name"] == name)


@pytest.mark.slow
def test_every_committed_cassette_replays_to_its_expected_verdict(committed) -> None:
    """The default replay over cassettes/ matches every expectation and exits 0."""
    result, report = committed
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert report["summary"]["mismatched"] == 0
    assert {c["name"] for c in report["runs"]} == {s.name for s in SCENARIOS}
    # Our flow commits each unit of work exactly once, also when a batch fails: no double-commit warning.
    double_commits = [c["name"] for c in report["runs"] for f in _findings(c) if f["id"] == "PERSIST009"]
    assert double_commits == []
    for cassette in report["runs"]:
        outcome = {check["id"]: check["outcome"] for check in cassette["checks"]}
        # The migrations were applied from empty to a disposable database and built the models (once per process).
        assert (outcome["DB011"], outcome["DB012"]) == ("passed", "passed"), cassette["name"]
        if cassette["verdict"] == "pass":  # a save made to fail in a second run reached the flow's caller
            assert outcome["PERSIST011"] == "passed", cassette["name"]


def test_committed_cassettes_match_the_scenarios_that_made_them() -> None:
    """Each scenario has its cassette, expecting the verdict the scenario intends."""
    metas = {meta.name: meta for meta in map(load_meta, discover_cassettes([CASSETTES]))}
    assert {name: meta.expect for name, meta in metas.items()} == {s.name: s.intended for s in SCENARIOS}


def test_truncated_cassette_is_reported_at_llm_with_stop_reason(committed) -> None:
    """The max_tokens cassette fails at stage llm with LLM001 and stop_reason in the evidence, not a parse error."""
    result, report = committed
    assert result.returncode == 0, result.stderr
    cassette = _cassette(report, "masterplan-max-tokens")
    first = cassette["first_failure"]
    assert (first["stage"], first["id"], first["point"]) == ("llm", "LLM001", "masterplan")
    assert first["evidence"]["stop_reason"] == "max_tokens"
    assert "Traceback" not in result.stdout + result.stderr


def test_changed_prompt_is_a_cassette_mismatch_naming_the_field(tmp_path: Path) -> None:
    """One changed word of the request makes replay report LLM012 with the differing JSON field, exit 1."""
    path = _copy(tmp_path, "healthy-task-manager")
    meta = load_meta(path)
    _edit_meta(path, request=meta.request.replace("small teams", "large teams"))
    result = harness("replay", str(path))
    assert result.returncode == 1
    assert "got llm:LLM012" in result.stdout
    assert "messages[0].content" in result.stdout or "LLM012" in result.stdout
    json_result = harness("replay", "--format", "json", str(path))
    (cassette,) = json.loads(json_result.stdout)["runs"]
    mismatch = cassette["first_failure"]["evidence"]["mismatch"]
    assert "messages[0].content" in mismatch
    assert "Connection error" not in cassette["first_failure"]["message"]


def test_wrong_expectation_exits_1_and_shows_the_fix(tmp_path: Path) -> None:
    """A cassette whose verdict differs from its expectation fails the run with the finding and its fix."""
    path = _copy(tmp_path, "masterplan-dependency-cycle")
    _edit_meta(path, expect="pass")
    result = harness("replay", str(path))
    assert result.returncode == 1
    assert "got parse:PARSE007" in result.stdout and "fix:" in result.stdout


def test_no_secret_survives_in_any_cassette() -> None:
    """The keys used while recording, and anything secret-shaped, are absent from every cassette."""
    for path in discover_cassettes([CASSETTES]):
        text = path.read_text()
        assert RECORDING_ANTHROPIC_KEY not in text and RECORDING_OPENAI_KEY not in text, path
        assert find_secrets(text) == [], path
        assert not re.search(r"req_[A-Za-z0-9]{12,}", text), f"{path} keeps a request id"
        for header in ("authorization:", "x-api-key:", "set-cookie:", "anthropic-organization-id:", "user-agent:"):
            assert header not in text.lower(), (path, header)


def test_single_call_fails_where_batched_succeeds_and_the_failing_batch_is_named(committed) -> None:
    """The comparison: single-call mode stops at max_tokens, the same request batched passes; batch 2's cut is named."""
    names = ("masterplan-max-tokens", "masterplan-max-tokens-batched", "masterplan-batch-2-max-tokens")
    default = Models().generation_mode  # the flow reads MASTERPLAN_GENERATION_MODE; the cassette keeps what it ran with
    modes = {
        name: load_meta(CASSETTES / f"{name}.yaml").extra["env"].get("MASTERPLAN_GENERATION_MODE", default)
        for name in names
    }
    assert modes == dict(zip(names, ("single", "batched", "batched"), strict=True))
    result, report = committed
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    by_name = {c["name"]: c for c in report["runs"] if c["name"] in names}
    assert by_name["masterplan-max-tokens"]["first_failure"]["point"] == "masterplan"
    assert by_name["masterplan-max-tokens-batched"]["verdict"] == "pass"
    first = by_name["masterplan-batch-2-max-tokens"]["first_failure"]
    assert (first["id"], first["point"]) == ("LLM001", "masterplan.batch-2")


def _outcomes(cassette: dict) -> dict[tuple[str, str], str]:
    return {(check["id"], check["point"]): check["outcome"] for check in cassette["checks"]}


@pytest.mark.slow
def test_side_by_side_replay_reports_what_one_at_a_time_does_in_cassette_order(committed, tmp_path: Path) -> None:
    """`-j 1` over some committed cassettes gives each the verdict and check outcomes the side-by-side run gave,
    and both list cassettes, in their output and in report.json, in the order the cassettes were found."""
    names = ["discovery-rate-limited", "healthy-task-manager", "masterplan-batch-3-stream-cut", "masterplan-wrong-total"]
    first_run, side_by_side = committed
    assert [c["name"] for c in side_by_side["runs"]] == [load_meta(p).name for p in discover_cassettes([CASSETTES])]
    result = harness("replay", "-j", "1", "--format", "json", *(str(CASSETTES / f"{name}.yaml") for name in names))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    one_at_a_time = json.loads(result.stdout)
    assert [c["name"] for c in one_at_a_time["runs"]] == names
    for cassette in one_at_a_time["runs"]:
        other = _cassette(side_by_side, cassette["name"])
        assert (cassette["verdict"], _outcomes(cassette)) == (other["verdict"], _outcomes(other)), cassette["name"]
    for run, report in ((first_run, side_by_side), (result, one_at_a_time)):
        folder = re.search(r"Reports: (\S+?)/?$", run.stderr, re.MULTILINE)
        assert folder, run.stderr
        written = json.loads((Path(folder.group(1)) / "report.json").read_text())
        assert [r["name"] for r in written["runs"]] == [c["name"] for c in report["runs"]]


def test_side_by_side_text_output_keeps_cassette_order(tmp_path: Path) -> None:
    """With two processes, the text rows still come one per cassette, in cassette order, with the count of processes."""
    # The first waits out the flow's retries (over a second); the other two finish before it.
    names = ["discovery-overloaded", "masterplan-dependency-cycle", "discovery-missing-fields"]
    for index, name in enumerate(names):  # file names sort in this order, the cassettes' own names do not
        shutil.copy(CASSETTES / f"{name}.yaml", tmp_path / f"{index}-{name}.yaml")
    result = harness("replay", "-j", "2", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 cassette(s) on disposable PostgreSQL" in result.stdout and "2 at a time" in result.stdout
    rows = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("  ✔")]
    assert rows == names


def test_an_app_whose_migrations_fail_is_told_so_with_exit_2_not_an_internal_error(tmp_path: Path) -> None:
    """The template is built by the app's own migrations (beside the app's import); when they fail, that is the
    app's problem: one line naming the migrations and their error, and where to look, exit 2 — never 'a bug in the
    harness' (exit 3)."""
    from tests.examples.bugs import copy_app

    app = copy_app("atlas", tmp_path)
    first = next((app / "migrations" / "versions").glob("20251104_0001_*.py"))
    source = first.read_text(encoding="utf-8")
    assert source.count("def upgrade() -> None:\n") == 1
    first.write_text(
        source.replace("def upgrade() -> None:\n", 'def upgrade() -> None:\n    raise RuntimeError("disk quota hit")\n'),
        encoding="utf-8",
    )
    shutil.copytree(ROOT / "tests" / "examples" / "atlas" / "cassettes", app / "cassettes")
    result = harness("replay", "cassettes", cwd=app)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the migrations failed: disk quota hit" in result.stderr and "DB011, DB012" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
