"""From a command's results to a :class:`~harness.reports.schema.RunReport`.

A command hands over what it ran — :class:`ReportedRun` (a name, the
:class:`~harness.runner.FlowRun`, its duration, and for replay the cassette and its
expected verdict) — and :class:`RunContext` (when, against what). Everything the report
says is derived here, once; the renderers only lay it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness.redaction import redact_url, redact_value
from harness.reports.schema import (
    CanaryCleanup,
    CanaryLeftover,
    CheckResult,
    FindingResult,
    LLMCall,
    LLMTotals,
    LLMUsage,
    RunMeta,
    RunReport,
    RunResult,
    SavedRow,
    StageResult,
    Summary,
    Target,
)

__all__ = ["STAGES", "ReportedRun", "RunContext", "build_run_report", "build_run_result", "harness_version"]

#: Stages in the order they run (``probes.core.Stage``), as the report names them.
STAGES: tuple[str, ...] = ("env", "db", "auth", "llm", "parse", "persist")
_OUTCOMES = ("passed", "warned", "failed", "blocked", "skipped", "not_applicable")


@dataclass(frozen=True)
class ReportedRun:
    """One run a command made: what to call it, what came of it, how long it took."""

    name: str
    #: A :class:`harness.runner.FlowRun` (anything with ``report`` and ``observations``).
    run: Any
    duration_s: float
    #: Where the run came from (the cassette path), if anywhere.
    source: str | None = None
    #: The verdict the run was expected to give (replay), if any.
    expect: str | None = None


@dataclass(frozen=True)
class RunContext:
    """When a command ran and against what; the URL's password never reaches the report."""

    started_at: datetime
    finished_at: datetime | None = None
    database_url: str | None = None
    #: Words for the target, e.g. "disposable PostgreSQL (local-binaries)".
    target: str | None = None
    #: The signal's name when the command was stopped before it finished (``"SIGTERM"``).
    interrupted: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


def harness_version() -> str:
    """The installed distribution's version ("unknown" when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("masterplan-harness")
    except PackageNotFoundError:
        return "unknown"


def build_run_report(command: str, runs: Iterable[ReportedRun], *, meta: RunContext) -> RunReport:
    """The report of one command run; every string in it passes through redaction."""
    results = [build_run_result(run) for run in runs]
    finished = meta.finished_at or datetime.now(UTC)
    started = _utc(meta.started_at)
    finished = _utc(finished)
    expecting = [r for r in results if r.matched is not None]
    checks = {o: sum(r.totals.get(o, 0) for r in results) for o in _OUTCOMES}
    summary = Summary(
        ok=all(r.ok for r in results) and meta.interrupted is None,
        runs=len(results),
        passed=sum(1 for r in results if r.verdict == "pass"),
        failed=sum(1 for r in results if r.verdict != "pass"),
        matched=sum(1 for r in expecting if r.matched) if expecting else None,
        mismatched=sum(1 for r in expecting if not r.matched) if expecting else None,
        checks=checks,
        llm=_sum_totals(r.llm.totals for r in results),
    )
    report = RunReport(
        meta=RunMeta(
            command=command,
            harness_version=harness_version(),
            started_at=started,
            finished_at=finished,
            duration_s=round(max(0.0, (finished - started).total_seconds()), 3),
            target=Target(
                database_url=redact_url(meta.database_url) if meta.database_url else None,
                description=meta.target,
            ),
            interrupted=meta.interrupted,
        ),
        summary=summary,
        runs=results,
    )
    # Findings are redacted when made; this second net covers names, sources and observations.
    return RunReport.model_validate(redact_value(report.model_dump(mode="json")))


def build_run_result(reported: ReportedRun) -> RunResult:
    """One run's entry: stages, checks, findings, LLM usage, saved rows."""
    report = reported.run.report
    data = report.to_dict()
    checks = [CheckResult.model_validate(check) for check in data["checks"]]
    first = data["first_failure"]
    observations = getattr(reported.run, "observations", {}) or {}
    calls, saved = _observations(observations)
    replayed = bool(observations.get("llm.replayed"))
    verdict = data["verdict"]
    return RunResult(
        name=reported.name,
        source=reported.source,
        expect=reported.expect,
        verdict=verdict,
        matched=(verdict == reported.expect) if reported.expect is not None else None,
        duration_s=round(reported.duration_s, 3),
        first_failure=FindingResult.model_validate(first) if first else None,
        stages=_stages(checks, calls, data["first_failing_stage"]),
        checks=checks,
        totals={o: data["totals"].get(o, 0) for o in _OUTCOMES},
        llm=LLMUsage(calls=calls, totals=_sum_totals([_totals_of(calls, replayed=replayed)])),
        saved=saved,
        canary=_canary(observations.get("canary")),
    )


def _canary(observed: Any) -> CanaryCleanup | None:
    if not isinstance(observed, Mapping) or "session_id" not in observed:
        return None
    return CanaryCleanup(
        session_id=str(observed["session_id"]),
        rows_deleted=int(observed.get("rows_deleted") or 0),
        leftovers=[
            CanaryLeftover(
                session_id=str(left["session_id"]),
                written_at=left.get("written_at"),
                rows=dict(left.get("rows") or {}),
                removed=bool(left.get("removed", True)),
            )
            for left in observed.get("leftovers") or []
        ],
    )


def _stages(checks: Sequence[CheckResult], calls: Sequence[LLMCall], first_failing: str | None) -> list[StageResult]:
    stages = []
    for stage in STAGES:
        mine = [c for c in checks if c.stage == stage]
        counts = {o: sum(1 for c in mine if c.outcome == o) for o in _OUTCOMES}
        # Every check a function declares carries that function's time: count each (point, time) once.
        timed = {(c.point, c.duration_s) for c in mine if c.duration_s}
        seconds = sum(seconds for _point, seconds in timed) + (
            sum(call.latency_s or 0.0 for call in calls) if stage == "llm" else 0.0
        )
        finding = next((f for c in mine if c.outcome == "failed" for f in c.findings), None) or next(
            (f for c in mine if c.outcome == "warned" for f in c.findings), None
        )
        stages.append(
            StageResult(
                stage=stage,
                status=_stage_status(counts),
                duration_s=round(seconds, 4),
                checks=counts,
                finding_id=finding.id if finding else None,
                first_failing=stage == first_failing,
            )
        )
    return stages


def _stage_status(counts: Mapping[str, int]) -> str:
    for status in ("failed", "blocked", "warned", "passed", "skipped", "not_applicable"):
        if counts.get(status):
            return status
    return "not_run"


def _observations(observations: Mapping[str, Any]) -> tuple[list[LLMCall], list[SavedRow]]:
    """The run's LLM calls (as the wire showed them) and the rows it committed."""
    calls = [
        LLMCall(**{name: call.get(name) for name in LLMCall.model_fields if name in call})
        for call in observations.get("llm.calls") or []
        if isinstance(call, Mapping) and "point" in call
    ]
    saved = [
        SavedRow(point=str(row.get("point") or row["table"]), table=str(row["table"]), key=", ".join(map(str, row["key"])))
        for row in observations.get("saved") or []
        if isinstance(row, Mapping) and {"table", "key"} <= row.keys()
    ]
    return calls, saved


def _totals_of(calls: Sequence[LLMCall], *, replayed: bool = False) -> LLMTotals:
    cost = sum(c.cost_usd or 0.0 for c in calls)
    return LLMTotals(
        calls=len(calls),
        input_tokens=sum(c.input_tokens or 0 for c in calls),
        output_tokens=sum(c.output_tokens or 0 for c in calls),
        cost_usd=cost,
        spent_usd=0.0 if replayed else cost,
        latency_s=sum(c.latency_s or 0.0 for c in calls),
    )


def _sum_totals(totals: Iterable[LLMTotals]) -> LLMTotals:
    items = list(totals)
    return LLMTotals(
        calls=sum(t.calls for t in items),
        input_tokens=sum(t.input_tokens for t in items),
        output_tokens=sum(t.output_tokens for t in items),
        cost_usd=round(sum(t.cost_usd for t in items), 6),
        spent_usd=round(sum(t.spent_usd for t in items), 6),
        latency_s=round(sum(t.latency_s for t in items), 3),
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
