"""``junit.xml``: one test case per check, in the JUnit XML most CI systems read.

Mapping (per check at a probe point; ``classname`` is the stage, ``name`` is
``"<ID> <point>"``):

* passed, warned → a passing case (a warning's finding goes to ``system-out``);
* failed → ``<failure>`` with the message, the fix and the evidence; a failure of a
  ``*900`` check (something unexpected went wrong) → ``<error>``;
* blocked, skipped, not applicable → ``<skipped>`` with the reason;
* in a replay run that gave its expected verdict, the expected failure → ``<skipped
  type="xfail">`` (pytest's convention), so a suite of intended faults reads green.

A run with an expected verdict gets one more case, ``classname="expectation"``, that
fails when the verdict differs.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from harness.reports.schema import CheckResult, RunReport, RunResult

__all__ = ["render_junit"]


def render_junit(report: RunReport) -> str:
    """The report as a JUnit XML document (``<testsuites>``, one ``<testsuite>`` per run)."""
    root = ET.Element("testsuites", name=f"harness {report.meta.command}")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for run in report.runs:
        suite = _suite(run, report)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{report.meta.duration_s:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(run: RunResult, report: RunReport) -> ET.Element:
    suite = ET.Element("testsuite", name=run.name, timestamp=report.meta.started_at.strftime("%Y-%m-%dT%H:%M:%S"))
    properties = ET.SubElement(suite, "properties")
    for name, value in (("verdict", run.verdict), ("expect", run.expect), ("source", run.source)):
        if value is not None:
            ET.SubElement(properties, "property", name=name, value=value)
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    expected_id = run.expect.split(":", 1)[1] if run.matched and run.expect and ":" in run.expect else None
    for check in run.checks:
        case = ET.SubElement(
            suite, "testcase", classname=check.stage, name=f"{check.id} {check.point}", time=f"{check.duration_s:.4f}"
        )
        counts["tests"] += 1
        kind = _fill_case(case, check, expected_id)
        if kind:
            counts[kind] += 1
    if run.expect is not None:
        case = ET.SubElement(suite, "testcase", classname="expectation", name=f"expect {run.expect}", time="0")
        counts["tests"] += 1
        if not run.matched:
            counts["failures"] += 1
            failure = ET.SubElement(
                case, "failure", type="verdict", message=f"expected {run.expect}, got {run.verdict}"
            )
            failure.text = f"expected {run.expect}, got {run.verdict}"
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{run.duration_s:.3f}")
    return suite


def _fill_case(case: ET.Element, check: CheckResult, expected_id: str | None) -> str | None:
    """Add the outcome element to ``case``; return the counter it falls under (None: passed)."""
    if check.outcome in ("blocked", "skipped", "not_applicable"):
        ET.SubElement(case, "skipped", message=f"{check.outcome}: {check.reason or ''}".rstrip(": "))
        return "skipped"
    if check.outcome == "warned":
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(_describe(f) for f in check.findings)
        return None
    if check.outcome != "failed":
        return None
    finding = check.findings[0] if check.findings else None
    message = finding.message if finding else check.title
    detail = "\n\n".join(_describe(f) for f in check.findings)
    if expected_id == check.id:
        skipped = ET.SubElement(case, "skipped", type="xfail", message=f"expected failure: {message}")
        skipped.text = detail
        return "skipped"
    tag = "error" if check.id.endswith("900") else "failure"
    element = ET.SubElement(case, tag, type=check.id, message=message)
    element.text = detail
    return "errors" if tag == "error" else "failures"


def _describe(finding) -> str:
    evidence = json.dumps(finding.evidence, indent=2, sort_keys=True, default=str)
    return (
        f"{finding.id} [{finding.stage}/{finding.point}] {finding.message}\nfix: {finding.hint}\nevidence: {evidence}"
    )
