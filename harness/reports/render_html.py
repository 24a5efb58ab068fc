"""``report.html``: one self-contained page, readable offline.

Inline CSS and SVG only: no script, no font, no image or style from anywhere else (a
Content-Security-Policy meta tag forbids it, so a stray reference cannot fetch either).
Each run gets a stage timeline — the stages in run order, each bar as long as the time
spent in that stage — with the failing stage highlighted and its finding and fix beside it.
"""

from __future__ import annotations

import json
from html import escape

from harness.reports.render_md import cost_words
from harness.reports.schema import RunReport, RunResult, StageResult

__all__ = ["render_html"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_COLOURS = {
    "passed": "#2e7d32",
    "warned": "#b26a00",
    "failed": "#c62828",
    "blocked": "#9e9e9e",
    "skipped": "#cfd8dc",
    "not_applicable": "#e0e0e0",
    "not_run": "#eceff1",
}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:62rem;
 padding:0 1rem;color:#1b1b1b;background:#fff}
h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.2rem;margin:0}
.ok{color:#2e7d32}.bad{color:#c62828}.muted{color:#616161}
table{border-collapse:collapse;margin:.6rem 0;width:100%}
th,td{border-bottom:1px solid #e0e0e0;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5;font-weight:600}
code,pre{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f6f8fa;border:1px solid #e0e0e0;padding:.6rem;overflow:auto;white-space:pre-wrap}
section.run{border:1px solid #e0e0e0;border-radius:6px;padding:1rem;margin:1.2rem 0}
section.run.unexpected{border-color:#c62828;border-width:2px}
.badge{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.85rem;color:#fff;background:#616161}
.badge.passed{background:#2e7d32}.badge.failed{background:#c62828}.badge.warned{background:#b26a00}
.finding{border-left:4px solid #c62828;background:#fdecea;padding:.6rem .8rem;margin:.8rem 0}
.finding p{margin:.2rem 0}.fix{font-weight:600}
svg.timeline{display:block;max-width:100%;height:auto}
"""
_LABEL_W, _BAR_W, _ROW_H, _SVG_W = 80, 470, 28, 760


def render_html(report: RunReport) -> str:
    """The report as one HTML document with everything inline."""
    meta, summary = report.meta, report.summary
    title = f"harness {meta.command} — {'as expected' if summary.ok else 'failures'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f'<h1 class="{"ok" if summary.ok else "bad"}">{escape(title)}</h1>',
        f"<p>{escape(_headline(report))}</p>",
        _meta_table(report),
        _runs_table(report),
    ]
    parts += [_run_section(index, run) for index, run in enumerate(report.runs)]
    parts.append(
        f'<p class="muted">Report schema {escape(report.kind)} v{report.schema_version}; '
        f"re-render with <code>harness report PATH --format html</code>.</p></body></html>"
    )
    return "\n".join(parts) + "\n"


def _headline(report: RunReport) -> str:
    s = report.summary
    stopped = f" Stopped by {report.meta.interrupted} before it finished." if report.meta.interrupted else ""
    if s.matched is not None:
        return f"{s.runs} run(s): {s.matched} as expected, {s.mismatched} not.{stopped}"
    return f"{s.runs} run(s): {s.passed} passed, {s.failed} failed.{stopped}"


def _meta_table(report: RunReport) -> str:
    meta, llm = report.meta, report.summary.llm
    rows = [
        ("command", f"harness {meta.command}"),
        ("harness version", meta.harness_version),
        ("started", f"{meta.started_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("finished", f"{meta.finished_at:%Y-%m-%d %H:%M:%S} UTC ({meta.duration_s:.2f} s)"),
        ("target", " · ".join(x for x in (meta.target.database_url, meta.target.description) if x) or "—"),
        (
            "LLM usage",
            f"{llm.calls} call(s), {llm.input_tokens:,} input / {llm.output_tokens:,} output tokens, "
            f"{cost_words(llm)}, {llm.latency_s:.2f} s",
        ),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="meta">{body}</table>'


def _runs_table(report: RunReport) -> str:
    head = "<tr><th></th><th>run</th><th>expected</th><th>verdict</th><th>duration</th><th>LLM cost spent</th></tr>"
    rows = []
    for index, run in enumerate(report.runs):
        rows.append(
            f'<tr><td class="{"ok" if run.ok else "bad"}">{"✔" if run.ok else "✘"}</td>'
            f'<td><a href="#run-{index}">{escape(run.name)}</a></td><td><code>{escape(run.expect or "—")}</code></td>'
            f"<td><code>{escape(run.verdict)}</code></td><td>{run.duration_s:.2f} s</td>"
            f"<td>${run.llm.totals.spent_usd:.4f}</td></tr>"
        )
    return f'<table class="runs">{head}{"".join(rows)}</table>'


def _run_section(index: int, run: RunResult) -> str:
    status = "passed" if run.verdict == "pass" else "failed"
    classes = "run" + ("" if run.ok else " unexpected")
    expectation = ""
    if run.expect is not None:
        expectation = f' <span class="muted">expected <code>{escape(run.expect)}</code>'
        expectation += (
            " — as expected</span>" if run.matched else " — <strong class=bad>not as expected</strong></span>"
        )
    parts = [
        f'<section class="{classes}" id="run-{index}">',
        f'<h2>{escape(run.name)} <span class="badge {status}">{escape(run.verdict)}</span>{expectation}</h2>',
    ]
    if run.source:
        parts.append(f'<p class="muted">{escape(run.source)} · {run.duration_s:.2f} s</p>')
    parts.append(_timeline(index, run))
    if run.first_failure is not None:
        f = run.first_failure
        parts.append(
            '<div class="finding">'
            f"<p>Failing stage: <strong>{escape(f.stage)}</strong> at point <code>{escape(f.point or '—')}</code></p>"
            f"<p><strong>{escape(f.id)}</strong> {escape(f.message)}</p>"
            f'<p class="fix">Fix: {escape(f.hint)}</p>'
            f"<pre>{escape(json.dumps(f.evidence, indent=2, sort_keys=True, default=str))}</pre></div>"
        )
    parts.append(_checks_table(run))
    if run.llm.calls:
        parts.append(_llm_table(run))
    parts.append("</section>")
    return "\n".join(parts)


def _timeline(index: int, run: RunResult) -> str:
    stages = run.stages
    total = sum(s.duration_s for s in stages) or 1.0
    height = _ROW_H * len(stages) + 34
    hatch = f"hatch-{index}"
    rows = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{_SVG_W}" height="{height}" '
        f'viewBox="0 0 {_SVG_W} {height}" role="img" aria-label="stage timeline of {escape(run.name)}">',
        f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#e0e0e0"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#9e9e9e" stroke-width="3"/></pattern></defs>',
    ]
    offset = 0.0
    for row, stage in enumerate(stages):
        y = 8 + row * _ROW_H
        rows.append(_timeline_row(stage, y, offset, total, hatch))
        offset += stage.duration_s
    axis_y = 8 + len(stages) * _ROW_H + 4
    rows.append(
        f'<line x1="{_LABEL_W}" y1="{axis_y}" x2="{_LABEL_W + _BAR_W}" y2="{axis_y}" stroke="#9e9e9e"/>'
        f'<text x="{_LABEL_W}" y="{axis_y + 16}" font-size="11" fill="#616161">0 s</text>'
        f'<text x="{_LABEL_W + _BAR_W}" y="{axis_y + 16}" font-size="11" fill="#616161" text-anchor="end">'
        f"{_seconds(sum(s.duration_s for s in stages))}</text></svg>"
    )
    return "\n".join(rows)


def _timeline_row(stage: StageResult, y: int, offset: float, total: float, hatch: str) -> str:
    x = _LABEL_W + offset / total * _BAR_W
    width = max(4.0, stage.duration_s / total * _BAR_W) if stage.status != "not_run" else 0.0
    failing = stage.first_failing
    parts = []
    if failing:
        parts.append(f'<rect x="0" y="{y - 3}" width="{_SVG_W}" height="{_ROW_H - 2}" fill="#fdecea" rx="3"/>')
    weight = ' font-weight="700"' if failing else ""
    parts.append(f'<text x="6" y="{y + 15}" font-size="13"{weight}>{escape(stage.stage)}</text>')
    if width:
        fill = f"url(#{hatch})" if stage.status == "blocked" else _COLOURS[stage.status]
        stroke = ' stroke="#7f0000" stroke-width="2"' if failing else ""
        parts.append(
            f'<rect class="stage {escape(stage.status)}" x="{x:.1f}" y="{y}" width="{width:.1f}" '
            f'height="{_ROW_H - 8}" rx="2" fill="{fill}"{stroke}>'
            f"<title>{escape(stage.stage)}: {escape(stage.status)}, {_seconds(stage.duration_s)}</title></rect>"
        )
    label = f"{stage.status.replace('_', ' ')} · {_seconds(stage.duration_s)}"
    if stage.finding_id:
        label += f" · {'✘' if stage.status == 'failed' else '!'} {stage.finding_id}"
    colour = "#c62828" if failing else "#424242"
    parts.append(
        f'<text x="{min(x + width + 6, _LABEL_W + _BAR_W + 6):.1f}" y="{y + 15}" font-size="12" fill="{colour}"'
        f"{weight}>{escape(label)}</text>"
    )
    return "".join(parts)


def _checks_table(run: RunResult) -> str:
    rows = []
    for check in run.checks:
        detail = "; ".join(f"{f.id}: {f.message}" for f in check.findings) or (check.reason or "")
        rows.append(
            f"<tr><td><code>{escape(check.id)}</code></td><td>{escape(check.stage)}</td><td>{escape(check.point)}</td>"
            f'<td><span class="badge {escape(check.outcome)}">{escape(check.outcome)}</span></td>'
            f"<td>{check.duration_s * 1000:.1f} ms</td><td>{escape(check.title)}"
            f"{'<br><span class=muted>' + escape(detail) + '</span>' if detail else ''}</td></tr>"
        )
    head = "<tr><th>ID</th><th>stage</th><th>point</th><th>outcome</th><th>time</th><th>check</th></tr>"
    return (
        f"<details{' open' if not run.ok else ''}><summary>{len(run.checks)} check(s)</summary>"
        f"<table>{head}{''.join(rows)}</table></details>"
    )


def _llm_table(run: RunResult) -> str:
    head = (
        "<tr><th>point</th><th>model</th><th>stop reason</th><th>tokens in/out</th><th>cost</th><th>latency</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{escape(c.point)}</td><td>{escape(c.model or '—')}</td><td>{escape(str(c.stop_reason))}</td>"
        f"<td>{c.input_tokens or 0:,} / {c.output_tokens or 0:,}</td><td>${c.cost_usd or 0:.4f}</td>"
        f"<td>{c.latency_s or 0:.3f} s</td></tr>"
        for c in run.llm.calls
    )
    return f"<details><summary>{len(run.llm.calls)} LLM call(s)</summary><table>{head}{rows}</table></details>"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
