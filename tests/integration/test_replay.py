"""`harness replay` over the committed cassettes, as a subprocess on a disposable database."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from harness.cassettes import discover_cassettes, load_meta
from harness.config import Models
from harness.redaction import find_secrets
from tests.support.scenarios import RECORDING_ANTHROPIC_KEY, RECORDING_OPENAI_KEY, SCENARIOS

from .test_cli import ROOT, harness

CASSETTES = ROOT / "cassettes"


def _findings(cassette: dict) -> list[dict]:
    return [finding for check in cassette["report"]["checks"] for finding in check["findings"]]


def _copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.yaml"
    shutil.copy(CASSETTES / f"{name}.yaml", target)
    return target


def _edit_meta(path: Path, **changes: str) -> None:
    data = yaml.safe_load(path.read_text())
    data["metadata"]["harness"].update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.slow
def test_every_committed_cassette_replays_to_its_expected_verdict() -> None:
    """The default replay over cassettes/ matches every expectation and exits 0."""
    result = harness("replay", "--format", "json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    report = json.loads(result.stdout)
    assert report["mismatched"] == 0
    assert {c["name"] for c in report["cassettes"]} == {s.name for s in SCENARIOS}
    # Our flow commits each unit of work exactly once, also when a batch fails: no double-commit warning.
    double_commits = [c["name"] for c in report["cassettes"] for f in _findings(c) if f["id"] == "PERSIST009"]
    assert double_commits == []
    for cassette in report["cassettes"]:
        outcome = {check["id"]: check["outcome"] for check in cassette["report"]["checks"]}
        # The migrations were applied from empty to a disposable database and built the models (once per process).
        assert (outcome["DB011"], outcome["DB012"]) == ("passed", "passed"), cassette["name"]
        if cassette["verdict"] == "pass":  # a save made to fail in a second run reached the flow's caller
            assert outcome["PERSIST011"] == "passed", cassette["name"]


def test_committed_cassettes_match_the_scenarios_that_made_them() -> None:
    """Each scenario has its cassette, expecting the verdict the scenario intends."""
    metas = {meta.name: meta for meta in map(load_meta, discover_cassettes([CASSETTES]))}
    assert {name: meta.expect for name, meta in metas.items()} == {s.name: s.intended for s in SCENARIOS}


def test_truncated_cassette_is_reported_at_llm_with_stop_reason(tmp_path: Path) -> None:
    """The max_tokens cassette fails at stage llm with LLM001 and stop_reason in the evidence, not a parse error."""
    result = harness("replay", "--format", "json", str(CASSETTES / "masterplan-max-tokens.yaml"))
    assert result.returncode == 0, result.stderr
    (cassette,) = json.loads(result.stdout)["cassettes"]
    first = cassette["report"]["first_failure"]
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
    (cassette,) = json.loads(json_result.stdout)["cassettes"]
    mismatch = cassette["report"]["first_failure"]["evidence"]["mismatch"]
    assert "messages[0].content" in mismatch
    assert "Connection error" not in cassette["report"]["first_failure"]["message"]


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


def test_single_call_fails_where_batched_succeeds_and_the_failing_batch_is_named() -> None:
    """The comparison: single-call mode stops at max_tokens, the same request batched passes; batch 2's cut is named."""
    names = ("masterplan-max-tokens", "masterplan-max-tokens-batched", "masterplan-batch-2-max-tokens")
    default = Models().generation_mode  # the flow reads MASTERPLAN_GENERATION_MODE; the cassette keeps what it ran with
    modes = {
        name: load_meta(CASSETTES / f"{name}.yaml").extra["env"].get("MASTERPLAN_GENERATION_MODE", default)
        for name in names
    }
    assert modes == dict(zip(names, ("single", "batched", "batched"), strict=True))
    result = harness("replay", "--format", "json", *(str(CASSETTES / f"{name}.yaml") for name in names))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    by_name = {c["name"]: c["report"] for c in json.loads(result.stdout)["cassettes"]}
    assert by_name["masterplan-max-tokens"]["first_failure"]["point"] == "masterplan"
    assert by_name["masterplan-max-tokens-batched"]["verdict"] == "pass"
    first = by_name["masterplan-batch-2-max-tokens"]["first_failure"]
    assert (first["id"], first["point"]) == ("LLM001", "masterplan.batch-2")
