"""Real runs to report on: committed cassettes replayed through the flow on disposable databases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.cassettes import load_meta
from harness.replay import replay_cassette
from harness.reports import ReportedRun, RunContext

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes"
#: A database URL whose password must never show in any report.
SECRET_URL = "postgresql://flow:hunter2-Sekrit-pw@db.internal:5432/masterplans"


@pytest.fixture(scope="session")
def replayed(flow_database_factory: Any) -> dict[str, ReportedRun]:
    """A passing, a warning and a failing (max_tokens) run, each replayed on its own fresh database."""
    runs = {}
    for name in ("healthy-task-manager", "embeddings-failing", "masterplan-max-tokens"):
        meta = load_meta(CASSETTES / f"{name}.yaml")
        url = flow_database_factory.new_database()
        try:
            result = replay_cassette(meta, url)
        finally:
            flow_database_factory.drop(url)
        runs[name] = ReportedRun(name, result.run, result.duration_s, source=str(meta.path), expect=meta.expect)
    return runs


@pytest.fixture
def context() -> RunContext:
    """When and against what: a target URL carrying a password."""
    return RunContext(started_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), database_url=SECRET_URL, target="test")
