"""Nothing claimed that was not checked: a missing request named where it is missing, recorded dollars not spent, an empty database not "at head"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .test_cli import ROOT, harness

CASSETTES = ROOT / "cassettes"


def _without_embeddings(tmp_path: Path) -> Path:
    data = yaml.safe_load((CASSETTES / "healthy-task-manager.yaml").read_text())
    data["interactions"] = [i for i in data["interactions"] if "/embeddings" not in i["request"]["uri"]]
    path = tmp_path / "no-embeddings.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_removed_embeddings_interaction_is_llm012_at_that_call(tmp_path: Path) -> None:
    """The cassette lacks the embeddings exchange: LLM012 at `examples`, not at the next call and not a key warning."""
    result = harness("replay", "--format", "json", str(_without_embeddings(tmp_path)), "--reports-dir", str(tmp_path))
    assert result.returncode == 1, result.stderr[-2000:]
    (run,) = json.loads(result.stdout)["runs"]
    first = run["first_failure"]
    assert (first["id"], first["point"]) == ("LLM012", "examples")
    assert "/embeddings" in first["evidence"]["mismatch"]
    flagged = {c["id"] for c in run["checks"] if c["outcome"] in ("failed", "warned")}
    assert not flagged & {"LLM003", "ENV002", "ENV003", "ENV006", "LLM013"}


@pytest.mark.slow
def test_replayed_calls_are_shown_as_recorded_cost_not_spent(tmp_path: Path) -> None:
    """A replay spends nothing: spent_usd is 0 while cost_usd keeps what the recorded calls cost, and report.md says so."""
    result = harness("replay", "--format", "json", str(CASSETTES / "healthy-task-manager.yaml"), "--reports-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    totals = json.loads(result.stdout)["summary"]["llm"]
    assert totals["spent_usd"] == 0 and totals["cost_usd"] > 0
    markdown = (tmp_path / "latest" / "report.md").read_text()
    assert "$0 spent (the recorded calls cost $" in markdown


@pytest.mark.slow
def test_an_empty_database_is_not_at_the_migrations_head(postgres_cluster, tmp_path: Path) -> None:
    """A database with no tables at all: DB007 is a warning that it was never migrated, never a tick."""
    name = postgres_cluster.create_database()
    try:
        result = harness(
            "diagnose", "--stage", "env", "--stage", "db", "--format", "json", "--user-id", "u", "--session-id", "s",
            "--reports-dir", str(tmp_path), env={"DATABASE_URL": postgres_cluster.url(name)},
        )
    finally:
        postgres_cluster.drop_database(name)
    (run,) = json.loads(result.stdout)["runs"]
    (db007,) = [c for c in run["checks"] if c["id"] == "DB007"]
    assert db007["outcome"] == "warned" and "never migrated" in db007["findings"][0]["message"]
