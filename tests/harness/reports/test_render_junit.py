"""junit.xml read back with junitparser (a JUnit XML reader): one case per check, outcomes mapped."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped

from harness.reports import build_run_report, write_run_reports
from harness.reports.build import STAGES, ReportedRun
from probes import llm
from probes.core import CheckOutcome, Outcome, Report


def _kind(case) -> str:
    results = case.result
    if not results:
        return "passed"
    result = results[0]
    if isinstance(result, Error):
        return "error"
    if isinstance(result, Failure):
        return "failure"
    if isinstance(result, Skipped):
        return "xfail" if result.type == "xfail" else "skipped"
    return type(result).__name__


def _suites(folder: Path) -> dict:
    xml = JUnitXml.fromfile(str(folder / "junit.xml"))
    return {suite.name: suite for suite in xml}


def test_one_case_per_check_with_its_outcome(replayed, context, tmp_path) -> None:
    """Every check of every run is one case named "<ID> <point>" in its stage; outcomes map to results."""
    wrong = replace(replayed["masterplan-max-tokens"], name="max-tokens-expecting-pass", expect="pass")
    runs = [*replayed.values(), wrong]
    report = build_run_report("replay", runs, meta=context)
    suites = _suites(write_run_reports("replay", runs, meta=context, out_dir=tmp_path))
    mapping = {
        "passed": "passed",
        "warned": "passed",
        "failed": "failure",
        "blocked": "skipped",
        "skipped": "skipped",
        "not_applicable": "skipped",
    }
    for run in report.runs:
        cases = [case for case in suites[run.name] if case.classname in STAGES]
        assert [(c.classname, c.name) for c in cases] == [(c.stage, f"{c.id} {c.point}") for c in run.checks]
        expected = [mapping[c.outcome] for c in run.checks]
        if run.matched and run.verdict != "pass":  # the intended fault reads as an expected failure
            expected = ["xfail" if c.outcome == "failed" else kind for c, kind in zip(run.checks, expected)]
        assert [_kind(case) for case in cases] == expected, run.name
    run, not_applicable = next((r, c) for r in report.runs for c in r.checks if c.outcome == "not_applicable")
    case = next(c for c in suites[run.name] if c.name == f"{not_applicable.id} {not_applicable.point}")
    assert case.result[0].message == f"not_applicable: {not_applicable.reason}"
    failing = {(c.name, _kind(c)) for c in suites["max-tokens-expecting-pass"]}
    assert ("LLM001 masterplan", "failure") in failing and ("expect pass", "failure") in failing
    assert ("expect llm:LLM001", "passed") in {(c.name, _kind(c)) for c in suites["masterplan-max-tokens"]}


def test_failure_carries_message_fix_and_evidence(replayed, context, tmp_path) -> None:
    """A failure's message is the finding; its text has the fix and the evidence."""
    wrong = replace(replayed["masterplan-max-tokens"], expect="pass")
    suites = _suites(write_run_reports("replay", [wrong], meta=context, out_dir=tmp_path))
    case = next(c for c in suites[wrong.name] if c.name == "LLM001 masterplan")
    failure = case.result[0]
    assert failure.type == "LLM001" and "max_tokens" in failure.message
    assert "fix: Generate the plan in batches" in failure.text and '"stop_reason": "max_tokens"' in failure.text


def test_unexpected_error_check_is_an_error(context, tmp_path) -> None:
    """A failed *900 check (something unexpected went wrong) is a JUnit error, not a failure."""
    finding = llm.LLM900.finding("RuntimeError: boom", point="discovery", error="boom")
    report = Report(outcomes=[CheckOutcome(llm.LLM900, Outcome.FAILED, "discovery", (finding,), 0.01)])

    class _Run:  # a FlowRun's shape, built from real probe data; no flow produces a 900 on purpose
        observations: dict = {}

    _Run.report = report
    suites = _suites(write_run_reports("diagnose", [ReportedRun("prod", _Run(), 0.1)], meta=context, out_dir=tmp_path))
    (case,) = list(suites["prod"])
    assert (case.classname, case.name, _kind(case)) == ("llm", "LLM900 discovery", "error")
