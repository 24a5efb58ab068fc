"""A report of a command stopped half-way says so (schema v3), and a diagnosis reports its canary cleanup."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness.reports import ReportedRun, RunContext, build_run_report, render
from probes.core import Report


@dataclass
class _Run:
    """What a command hands the report builder: a report and what the run observed."""

    report: Report = field(default_factory=Report)
    observations: dict[str, Any] = field(default_factory=dict)


def _context(interrupted: str | None) -> RunContext:
    return RunContext(started_at=datetime(2026, 11, 30, 15, 20, tzinfo=UTC), target="test", interrupted=interrupted)


def test_a_stopped_command_is_not_ok_and_says_which_signal_stopped_it() -> None:
    """meta.interrupted names the signal, summary.ok is false though every finished run passed, Markdown and HTML say it."""
    report = build_run_report("replay", [ReportedRun("one", _Run(), 0.1, expect="pass")], meta=_context("SIGTERM"))
    assert report.meta.interrupted == "SIGTERM"
    assert report.runs[0].ok and report.summary.ok is False
    assert "stopped by SIGTERM before it finished" in render(report, "md")
    assert "Stopped by SIGTERM before it finished." in render(report, "html")
    assert json.loads(render(report, "json"))["meta"]["interrupted"] == "SIGTERM"


def test_a_whole_run_has_no_signal_and_can_be_ok() -> None:
    """A command that ran to its end has meta.interrupted null and is ok when its runs are."""
    report = build_run_report("replay", [ReportedRun("one", _Run(), 0.1, expect="pass")], meta=_context(None))
    assert report.meta.interrupted is None and report.summary.ok is True


def test_a_diagnosis_reports_its_canary_cleanup_and_the_leftovers_it_found() -> None:
    """runs[].canary carries this run's canary id, rows deleted, and each killed run's leftovers with their time."""
    written = datetime(2025, 3, 1, 8, 15, 2, tzinfo=UTC)
    observed = {
        "session_id": "harness-canary-20261130T152000Z-1a2b3c4d",
        "rows_deleted": 250,
        "leftovers": [
            {"session_id": "harness-canary-20250301T081502Z-0badc0de", "written_at": written, "rows": {"masterplans": 1}, "removed": True}
        ],
    }
    report = build_run_report("diagnose", [ReportedRun("diagnose", _Run(observations={"canary": observed}), 1.0)], meta=_context(None))
    canary = report.runs[0].canary
    assert canary is not None and canary.rows_deleted == 250 and canary.session_id == observed["session_id"]
    (left,) = canary.leftovers
    assert left.written_at == written and left.rows == {"masterplans": 1} and left.removed
    replayed = build_run_report("replay", [ReportedRun("one", _Run(), 0.1, expect="pass")], meta=_context(None))
    assert replayed.runs[0].canary is None
