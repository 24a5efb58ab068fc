"""``report.md``: a run report as Markdown, short enough for a CI step summary."""

from __future__ import annotations

import json
from typing import Any

from harness.reports.schema import RunReport, RunResult

__all__ = ["render_markdown"]

_MARK = {
    "passed": "✅",
    "warned": "⚠️",
    "failed": "❌",
    "blocked": "⛔",
    "skipped": "⏭️",
    "not_applicable": "➖",
    "not_run": "·",
}


def cost_words(totals: Any) -> str:
    """What calls cost, saying whether it was spent now or only recorded (replayed answers cost nothing)."""
    if totals.spent_usd or not totals.cost_usd:
        return f"${totals.spent_usd:.4f} spent"
    return f"$0 spent (the recorded calls cost ${totals.cost_usd:.4f})"


def render_markdown(report: RunReport) -> str:
    """The report as GitHub-flavoured Markdown."""
    meta, summary = report.meta, report.summary
    lines = [f"## {'✅' if summary.ok else '❌'} harness {meta.command}: {_headline(report)}", ""]
    target = meta.target.database_url or meta.target.description or "—"
    llm = summary.llm
    lines += [
        f"Started {meta.started_at:%Y-%m-%d %H:%M:%S} UTC · {meta.duration_s:.2f} s · "
        f"target `{_cell(target)}` · harness {meta.harness_version}",
        "",
        f"LLM: {llm.calls} call(s), {llm.input_tokens:,} input / {llm.output_tokens:,} output tokens, "
        f"{cost_words(llm)}, {llm.latency_s:.2f} s",
        "",
        "| | run | expected | verdict | stages | duration | LLM cost (spent) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in report.runs:
        stages = " ".join(f"{_MARK[s.status]}{s.stage}" for s in run.stages if s.status != "not_run")
        lines.append(
            f"| {'✅' if run.ok else '❌'} | {_cell(run.name)} | {_cell(run.expect or '—')} | `{_cell(run.verdict)}` "
            f"| {stages} | {run.duration_s:.2f} s | ${run.llm.totals.spent_usd:.4f} |"
        )
    failing = [run for run in report.runs if run.first_failure is not None]
    if failing:
        lines += ["", "### Findings", ""]
        for run in failing:
            lines += _finding_section(run)
    return "\n".join(lines).rstrip() + "\n"


def _headline(report: RunReport) -> str:
    summary = report.summary
    stopped = f" — stopped by {report.meta.interrupted} before it finished" if report.meta.interrupted else ""
    if summary.matched is not None:
        return f"{summary.runs} run(s), {summary.matched} as expected, {summary.mismatched} not{stopped}"
    return f"{summary.runs} run(s), {summary.passed} passed, {summary.failed} failed{stopped}"


def _finding_section(run: RunResult) -> list[str]:
    finding = run.first_failure
    assert finding is not None
    expected = " (expected)" if run.matched else ""
    return [
        f"#### {'✅' if run.ok else '❌'} {run.name} — `{finding.stage}:{finding.id}`{expected}",
        "",
        f"**{finding.id}** at `{finding.stage}/{finding.point}`: {finding.message}",
        "",
        f"**Fix:** {finding.hint}",
        "",
        "<details><summary>evidence</summary>",
        "",
        "```json",
        json.dumps(finding.evidence, indent=2, sort_keys=True, default=str).replace("```", "` ` `"),
        "```",
        "",
        "</details>",
        "",
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
