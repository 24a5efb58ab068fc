"""What a run report says about real runs: stages, checks, findings, LLM usage, masked target."""

from __future__ import annotations

from harness.reports import build_run_report, render

from .conftest import SECRET_URL


def test_failing_run_names_its_stage_check_and_evidence(replayed, context) -> None:
    """The max_tokens run fails at llm with LLM001, stop_reason in evidence; later stages are blocked."""
    report = build_run_report("replay", [replayed["masterplan-max-tokens"]], meta=context)
    (run,) = report.runs
    assert run.verdict == "llm:LLM001" and run.matched is True
    assert (run.first_failure.stage, run.first_failure.id, run.first_failure.point) == ("llm", "LLM001", "masterplan")
    assert run.first_failure.evidence["stop_reason"] == "max_tokens"
    status = {stage.stage: stage.status for stage in run.stages}
    assert status == {
        "env": "passed",
        "db": "passed",
        "auth": "passed",
        "llm": "failed",
        "parse": "blocked",
        "persist": "blocked",
    }
    assert [s.stage for s in run.stages if s.first_failing] == ["llm"]
    assert next(s for s in run.stages if s.stage == "llm").finding_id == "LLM001"


def test_llm_usage_and_cost_are_totalled_from_the_observed_calls(replayed, context) -> None:
    """Each call is listed as the wire showed it (status, stop reason, tokens, the app's line); totals add them up."""
    report = build_run_report("replay", replayed.values(), meta=context)
    failing = next(r for r in report.runs if r.name == "masterplan-max-tokens")
    masterplan = next(c for c in failing.llm.calls if c.point == "masterplan")
    assert masterplan.stop_reason == "max_tokens" and masterplan.output_tokens == masterplan.max_tokens
    assert (masterplan.kind, masterplan.status, masterplan.attempts) == ("masterplan", 200, 1)
    assert masterplan.caller.startswith("harness/flow/") and masterplan.usage["output_tokens"] == masterplan.max_tokens
    calls = [c for r in report.runs for c in r.llm.calls]
    assert report.summary.llm.calls == len(calls) > 3
    assert report.summary.llm.output_tokens == sum(c.output_tokens or 0 for c in calls)
    assert abs(report.summary.llm.cost_usd - sum(c.cost_usd or 0 for c in calls)) < 1e-6


def test_replayed_answers_cost_what_was_recorded_and_spend_nothing(replayed, context) -> None:
    """A replay keeps what the recorded calls cost but spent $0; the same run made live spent exactly that."""
    from dataclasses import replace

    report = build_run_report("replay", replayed.values(), meta=context)
    assert report.summary.llm.cost_usd > 0 and report.summary.llm.spent_usd == 0
    run = replayed["healthy-task-manager"]
    live_run = replace(run.run, observations={**run.run.observations, "llm.replayed": False})
    live = build_run_report("diagnose", [replace(run, run=live_run)], meta=context)
    assert live.summary.llm.spent_usd == live.summary.llm.cost_usd > 0


def test_passing_run_lists_saved_rows_and_warning(replayed, context) -> None:
    """A healthy run saves a discovery and a masterplan; the embeddings run passes with its LLM013 warning."""
    report = build_run_report("replay", replayed.values(), meta=context)
    healthy = next(r for r in report.runs if r.name == "healthy-task-manager")
    assert healthy.verdict == "pass" and {"discovery", "masterplan", "masterplan.skeleton"} <= {
        row.point for row in healthy.saved
    }
    warned = next(r for r in report.runs if r.name == "embeddings-failing")
    llm = next(s for s in warned.stages if s.stage == "llm")
    assert (warned.verdict, llm.status, llm.finding_id) == ("pass", "warned", "LLM013")
    assert report.summary.ok and report.summary.matched == 3 and report.summary.mismatched == 0


def test_target_password_never_reaches_any_format(replayed, context) -> None:
    """The database URL is shown masked in the metadata and its password appears in no rendered file."""
    report = build_run_report("replay", replayed.values(), meta=context)
    assert report.meta.target.database_url == SECRET_URL.replace("hunter2-Sekrit-pw", "***")
    for fmt in ("json", "md", "junit", "html"):
        assert "hunter2-Sekrit-pw" not in render(report, fmt), fmt


def test_unexpected_verdict_makes_the_summary_not_ok(replayed, context) -> None:
    """A run whose verdict differs from what it expected is counted as mismatched."""
    from dataclasses import replace

    wrong = replace(replayed["masterplan-max-tokens"], expect="pass")
    report = build_run_report("replay", [wrong], meta=context)
    assert (report.summary.ok, report.summary.matched, report.summary.mismatched) == (False, 0, 1)
