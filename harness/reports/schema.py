"""The run report's data model: what ``report.json`` holds, versioned.

These pydantic models *are* the schema. ``report.schema.json`` beside this module is
generated from them (:func:`json_schema`) and published for other tools; a test keeps the
two in step and validates written reports against the file. A change that would make an
old reader misread a report bumps :data:`SCHEMA_VERSION`.

::

    RunReport
    ├── meta       RunMeta: command, harness version, started/finished, masked target, the signal that stopped it
    ├── summary    Summary: runs passed/failed, verdicts matched, check counts, LLM totals
    └── runs[]     RunResult: one per run (a cassette, a diagnosis)
        ├── stages[]   StageResult: env → persist, status and duration
        ├── checks[]   CheckResult: one per check per probe point, with its findings
        ├── llm        LLMUsage: each call (stop reason, tokens, cost, latency) and totals
        ├── saved[]    SavedRow: the keys the flow committed
        └── canary     CanaryCleanup: diagnose's canary rows removed, and killed runs' leftovers
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "REPORT_KIND",
    "SCHEMA_VERSION",
    "CanaryCleanup",
    "CanaryLeftover",
    "CheckResult",
    "FindingResult",
    "LLMCall",
    "LLMTotals",
    "LLMUsage",
    "Outcome",
    "RunMeta",
    "RunReport",
    "RunResult",
    "SavedRow",
    "StageResult",
    "StageStatus",
    "Summary",
    "Target",
    "json_schema",
]

#: The ``kind`` every run report carries; anything else is not a run report.
REPORT_KIND = "masterplan-harness/run-report"
#: Bumped whenever a reader of the previous version would misread a report.
SCHEMA_VERSION = 3

#: What became of one check at one point (``probes.core.Outcome``).
Outcome = Literal["passed", "warned", "failed", "blocked", "skipped", "not_applicable"]
#: A stage's status in one run: the worst of its checks, or ``not_run`` when none was recorded.
StageStatus = Literal["passed", "warned", "failed", "blocked", "skipped", "not_applicable", "not_run"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_serialization_defaults_required=True)


class FindingResult(_Model):
    """One finding: stable check ID, where, what, the fix, and redacted evidence."""

    id: str = Field(description="Stable check ID, e.g. LLM001; never renumbered or reused.")
    stage: str
    level: Literal["info", "warning", "error"]
    point: str | None = Field(description="Probe point, e.g. discovery or masterplan.")
    message: str
    hint: str = Field(description="What to do about it.")
    evidence: dict[str, Any] = Field(description="Facts behind the finding, secrets already redacted.")


class CheckResult(_Model):
    """One check at one probe point."""

    id: str
    stage: str
    point: str
    title: str
    outcome: Outcome
    duration_s: float = Field(description="Seconds spent in the check function that decided it.")
    reason: str | None = Field(description="Why it did not run (blocked, skipped or not applicable).")
    findings: list[FindingResult]


class StageResult(_Model):
    """One stage of one run."""

    stage: str
    status: StageStatus
    duration_s: float = Field(
        description="Seconds in the stage's check functions (each counted once) plus, for llm, the calls' latency."
    )
    checks: dict[str, int] = Field(description="How many of the stage's checks had each outcome.")
    finding_id: str | None = Field(description="The stage's first failing (else warning) finding.")
    first_failing: bool = Field(description="True for the stage of the run's first failure.")


class LLMCall(_Model):
    """One LLM exchange as it crossed the wire."""

    point: str
    kind: str | None = Field(default=None, description="discovery, skeleton, batch, masterplan, embeddings or unknown.")
    provider: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    max_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    streamed: bool | None = None
    text_chars: int | None = None
    status: int | None = Field(default=None, description="HTTP status of the answer (null: no answer arrived).")
    attempts: int | None = Field(default=None, description="Attempts of this request, retries included.")
    usage: dict[str, Any] | None = Field(default=None, description="Every usage field the API sent.")
    caller: str | None = Field(default=None, description="The application's line that made the call.")


class LLMTotals(_Model):
    """Sums over LLM calls; unknown values count as zero."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = Field(default=0.0, description="What the calls cost at list prices (when recorded, then).")
    spent_usd: float = Field(default=0.0, description="What this run spent: 0 when the answers were replayed.")
    latency_s: float = 0.0


class LLMUsage(_Model):
    """Every LLM call of a run, and their totals."""

    calls: list[LLMCall]
    totals: LLMTotals


class SavedRow(_Model):
    """A row the flow committed, by table and key."""

    point: str
    table: str
    key: str


class CanaryLeftover(_Model):
    """Canary rows of an earlier run that never cleaned up (killed outright), found by this run."""

    session_id: str
    written_at: datetime | None = Field(description="When its canary id was made (null: an id without a time).")
    rows: dict[str, int] = Field(description="Rows found per table, children included.")
    removed: bool = Field(description="False when they were left in place (see PERSIST008's evidence).")


class CanaryCleanup(_Model):
    """What a diagnose run removed from the database it was pointed at."""

    session_id: str = Field(description="This run's canary session id: harness-canary-<UTC time>-<random>.")
    rows_deleted: int = Field(description="Rows deleted: this run's, and the leftovers of killed runs.")
    leftovers: list[CanaryLeftover] = Field(description="Earlier runs' canary rows found (PERSIST014).")


class RunResult(_Model):
    """One run of the flow (one cassette replayed, one diagnosis)."""

    name: str
    source: str | None = Field(description="Where the run came from, e.g. the cassette path.")
    expect: str | None = Field(description="Expected verdict (replay), or null when nothing was expected.")
    verdict: str = Field(description='"pass" or "<stage>:<check ID>" of the first failure.')
    matched: bool | None = Field(description="verdict == expect; null when nothing was expected.")
    duration_s: float
    first_failure: FindingResult | None
    stages: list[StageResult]
    checks: list[CheckResult]
    totals: dict[str, int] = Field(description="How many checks had each outcome.")
    llm: LLMUsage
    saved: list[SavedRow]
    canary: CanaryCleanup | None = Field(
        default=None, description="diagnose: the canary rows removed afterwards; null when none were written or looked for."
    )

    @property
    def ok(self) -> bool:
        """As it should be: the expected verdict, or (nothing expected) a pass."""
        return self.matched if self.matched is not None else self.verdict == "pass"


class Target(_Model):
    """What the command ran against; the database URL never carries its password."""

    database_url: str | None = Field(description="DATABASE_URL with its password replaced by ***.")
    description: str | None = None


class RunMeta(_Model):
    """The command run that wrote the report."""

    command: str
    harness_version: str
    started_at: datetime
    finished_at: datetime
    duration_s: float
    target: Target
    interrupted: str | None = Field(
        default=None,
        description="The signal (SIGINT, SIGTERM, SIGHUP) that stopped the command before it finished; runs then "
        "holds only the runs that finished (and, for diagnose, the checks decided before the signal). Null: it ran "
        "to its end.",
    )


class Summary(_Model):
    """Totals over every run."""

    ok: bool = Field(description="True when every run is as it should be and none was cut short (exit code 0).")
    runs: int
    passed: int = Field(description='Runs whose verdict is "pass".')
    failed: int = Field(description="Runs with a failure.")
    matched: int | None = Field(description="Runs whose verdict matched its expectation (replay), else null.")
    mismatched: int | None
    checks: dict[str, int]
    llm: LLMTotals


class RunReport(_Model):
    """Everything one command run found: ``report.json``."""

    kind: Literal["masterplan-harness/run-report"] = REPORT_KIND
    schema_version: Literal[3] = SCHEMA_VERSION
    meta: RunMeta
    summary: Summary
    runs: list[RunResult]


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of ``report.json`` (what ``report.schema.json`` holds)."""
    schema = RunReport.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:masterplan-harness:run-report:v{SCHEMA_VERSION}",
        **schema,
    }


if __name__ == "__main__":  # python -m harness.reports.schema: regenerate the published file
    import json
    from pathlib import Path

    Path(__file__).with_name("report.schema.json").write_text(json.dumps(json_schema(), indent=2) + "\n")
