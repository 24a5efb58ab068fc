"""The probe core: stages, checks, findings, and the recorder the flow reports to.

A *check* is declared once, as a module-level constant beside the code that emits it
(``DB001 = Check(...)`` in ``probes/db.py``). Running a check yields *findings* —
values, not exceptions. A :class:`Recorder` collects every check outcome of one run in
the order they happened and turns them into a :class:`Report`.

The flow talks to the recorder through *probe points* (:meth:`Recorder.point`): "I am
now in stage X". Any exception raised inside a point is attributed to that stage by the
stage's classifier. When a point records a failure it raises :class:`StageFailed` so the
flow stops at the first failing stage, exactly as it would in production.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.redaction import redact_value

__all__ = [
    "STAGE_NEEDS",
    "Check",
    "CheckFn",
    "CheckOutcome",
    "Classifier",
    "Finding",
    "Level",
    "NotApplicable",
    "Outcome",
    "ProbeTimeout",
    "Recorder",
    "Report",
    "Stage",
    "StageFailed",
]


class Stage(str, enum.Enum):
    """The stages of the flow, in the order they run."""

    #: Required settings, before anything runs.
    ENV = "env"
    #: The database: reachable, authenticated, schema as the models expect.
    DB = "db"
    #: The request carries a user identity and a session id.
    AUTH = "auth"
    #: Each LLM call: accepted, answered, not truncated.
    LLM = "llm"
    #: Each LLM answer: JSON extracted, contract fields present, plan coherent.
    PARSE = "parse"
    #: Each save: committed and read back through an independent connection.
    PERSIST = "persist"

    @property
    def order(self) -> int:
        return list(Stage).index(self)


#: Which stages a stage cannot run without: a failure upstream blocks these.
STAGE_NEEDS: Mapping[Stage, frozenset[Stage]] = {
    Stage.ENV: frozenset(),
    Stage.DB: frozenset({Stage.ENV}),
    Stage.AUTH: frozenset({Stage.ENV}),
    Stage.LLM: frozenset({Stage.ENV, Stage.AUTH}),
    Stage.PARSE: frozenset({Stage.ENV, Stage.AUTH, Stage.LLM}),
    Stage.PERSIST: frozenset({Stage.ENV, Stage.DB, Stage.AUTH, Stage.LLM, Stage.PARSE}),
}


class Level(enum.IntEnum):
    """How much a finding matters; a run fails on ``ERROR`` and above by default."""

    #: Worth knowing, nothing to fix.
    INFO = 20
    #: Works now, will hurt later (for example progress events never emitted).
    WARNING = 30
    #: The flow cannot succeed until this is fixed.
    ERROR = 40

    @classmethod
    def parse(cls, name: str) -> Level:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            choices = ", ".join(level.name.lower() for level in cls)
            raise ValueError(f"unknown level {name!r}; choose one of: {choices}") from None


@dataclass(frozen=True)
class Check:
    """A check's identity: stable ID, stage, level, title and the fix to suggest.

    IDs are never renumbered or reused.
    """

    id: str
    stage: Stage
    level: Level
    title: str
    hint: str

    def finding(self, message: str, *, point: str | None = None, **evidence: Any) -> Finding:
        """A finding of this check, with ``evidence`` redacted of anything secret-shaped."""
        return Finding(
            check=self,
            message=message,
            point=point,
            evidence={key: redact_value(value) for key, value in evidence.items()},
        )


@dataclass(frozen=True)
class Finding:
    """One thing a check found: which check, what, where, and the evidence."""

    check: Check
    message: str
    point: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.check.id

    @property
    def stage(self) -> Stage:
        return self.check.stage

    @property
    def level(self) -> Level:
        return self.check.level

    @property
    def hint(self) -> str:
        return self.check.hint

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage.value,
            "level": self.level.name.lower(),
            "point": self.point,
            "message": self.message,
            "hint": self.hint,
            "evidence": dict(self.evidence),
        }


class Outcome(str, enum.Enum):
    """What became of one check at one point."""

    #: Ran and found nothing.
    PASSED = "passed"
    #: Ran and found something below the failing level.
    WARNED = "warned"
    #: Ran and found something at or above the failing level.
    FAILED = "failed"
    #: Did not run because a stage it needs failed first.
    BLOCKED = "blocked"
    #: Did not run by choice (``--read-only``, ``--stage``, not applicable).
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckOutcome:
    """One check at one probe point, with its findings and how long it took."""

    check: Check
    outcome: Outcome
    point: str
    findings: tuple[Finding, ...] = ()
    duration_s: float = 0.0
    reason: str | None = None


class NotApplicable(Exception):
    """Raised by a check function that cannot judge here (nothing to judge, or no means to); carries why.

    The recorder records the checks it declares as skipped with that reason — never as passed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StageFailed(Exception):
    """Raised into the flow by a probe point that recorded a failure; carries the finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"{finding.id}: {finding.message}")
        self.finding = finding


#: A check function: takes what the flow produced, returns findings (empty: passed).
CheckFn = Callable[..., Sequence[Finding]]
#: Turns an exception raised inside a stage into the finding that explains it.
Classifier = Callable[[BaseException, str], Finding]


@dataclass
class Report:
    """Every check outcome of one run, in the order they happened."""

    outcomes: list[CheckOutcome] = field(default_factory=list)
    fail_level: Level = Level.ERROR

    @property
    def findings(self) -> list[Finding]:
        return [finding for outcome in self.outcomes for finding in outcome.findings]

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.level >= self.fail_level]

    @property
    def first_failure(self) -> Finding | None:
        failures = self.failures
        return failures[0] if failures else None

    @property
    def first_failing_stage(self) -> Stage | None:
        first = self.first_failure
        return first.stage if first else None

    @property
    def verdict(self) -> str:
        """``"pass"`` or ``"<stage>:<check id>"`` of the first failure."""
        first = self.first_failure
        return "pass" if first is None else f"{first.stage.value}:{first.id}"

    def count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome is outcome)

    def to_dict(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "verdict": self.verdict,
            "first_failing_stage": first.stage.value if first else None,
            "first_failure": first.to_dict() if first else None,
            "checks": [
                {
                    "id": o.check.id,
                    "stage": o.check.stage.value,
                    "point": o.point,
                    "title": o.check.title,
                    "outcome": o.outcome.value,
                    "duration_s": round(o.duration_s, 4),
                    "reason": o.reason,
                    "findings": [f.to_dict() for f in o.findings],
                }
                for o in self.outcomes
            ],
            "totals": {o.value: self.count(o) for o in Outcome},
        }


class ProbeTimeout(TimeoutError):
    """A check function did not return within its probe timeout."""


def _call_with_timeout(check_fn: CheckFn, args: tuple, timeout: float) -> Sequence[Finding]:
    """Run ``check_fn`` in a daemon thread; a hung check cannot hang the run."""
    import threading

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = check_fn(*args)
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="probe-check", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ProbeTimeout(f"the check did not finish within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class Recorder:
    """Collects the outcomes of one run; the flow reports to it through probe points.

    ``classifiers`` map each stage to the function that explains an exception raised
    inside that stage. With ``stop_on_failure`` (the default) a failing check raises
    :class:`StageFailed` into the flow so nothing downstream runs on bad input.
    """

    def __init__(
        self,
        classifiers: Mapping[Stage, Classifier],
        *,
        fail_level: Level = Level.ERROR,
        stop_on_failure: bool = True,
    ) -> None:
        self._classifiers = dict(classifiers)
        self._stop_on_failure = stop_on_failure
        self.report = Report(fail_level=fail_level)
        self.observations: dict[str, Any] = {}

    # -- recording -------------------------------------------------------------------------

    def run_checks(
        self,
        stage: Stage,
        point: str,
        checks: Iterable[tuple[Sequence[Check], CheckFn]],
        *args: Any,
        timeout: float | None = None,
        gates: int | None = None,
    ) -> list[Finding]:
        """Run each check function at ``point``; record one outcome per declared check.

        A check function declares the checks it can emit; each declared check that it
        did not emit a finding for has passed — unless a *gate* failed first. The first
        ``gates`` declared checks (default: all of them) are gates: when one fails, the
        declared checks after it were never decided and are recorded as blocked. A
        failure the function did not declare (a crash, a classified exception) leaves
        every declared check undecided. A function that raises :class:`NotApplicable`
        leaves its declared checks skipped, with the reason. With ``timeout``, a check
        function that has not returned in time is a finding of its stage. Raises
        :class:`StageFailed` on failure.
        """
        found: list[Finding] = []
        for declared, check_fn in checks:
            started = time.perf_counter()
            try:
                findings = list(check_fn(*args) if timeout is None else _call_with_timeout(check_fn, args, timeout))
            except StageFailed:
                raise
            except NotApplicable as skipped:
                self.skip(declared, point, skipped.reason)
                continue
            except Exception as exc:  # a check that crashes is a finding of its stage, not a crash
                findings = [self._classify(stage, exc, point)]
            elapsed = time.perf_counter() - started
            self._record(declared, point, findings, elapsed, gates)
            found.extend(findings)
        self._stop_if_failed(found)
        return found

    def record_findings(self, declared: Sequence[Check], point: str, findings: Sequence[Finding]) -> None:
        """Record the outcome of checks that ran elsewhere (for example inside the flow)."""
        self._record(declared, point, list(findings), 0.0)
        self._stop_if_failed(findings)

    def skip(self, checks: Iterable[Check], point: str, reason: str, *, blocked: bool = False) -> None:
        """Record checks that did not run, and why."""
        outcome = Outcome.BLOCKED if blocked else Outcome.SKIPPED
        for check in checks:
            self.report.outcomes.append(CheckOutcome(check, outcome, point, reason=reason))

    @contextmanager
    def point(self, stage: Stage, point: str, *, attributes: Sequence[Check] = ()) -> Iterator[None]:
        """A probe point: an exception raised inside is explained by ``stage``'s classifier.

        ``attributes`` are checks that pass when the block completes (for example "the
        LLM answered" for a call); on an exception the classified finding fails them.
        """
        started = time.perf_counter()
        try:
            yield
        except StageFailed:
            raise
        except Exception as exc:
            finding = self._classify(stage, exc, point)
            self._record((), point, [finding], time.perf_counter() - started)
            raise StageFailed(finding) from exc
        else:
            self._record(attributes, point, [], time.perf_counter() - started)

    def observe(self, key: str, value: Any) -> None:
        """Keep something the flow produced (an LLM exchange, a committed id) for the report."""
        self.observations[key] = value

    # -- internals -------------------------------------------------------------------------

    def _classify(self, stage: Stage, exc: BaseException, point: str) -> Finding:
        classifier = self._classifiers.get(stage)
        if classifier is None:
            raise KeyError(f"no classifier for stage {stage.value}") from exc
        finding = classifier(exc, point)
        return finding if finding.point else Finding(finding.check, finding.message, point, finding.evidence)

    def _record(
        self,
        declared: Sequence[Check],
        point: str,
        findings: list[Finding],
        elapsed: float,
        gates: int | None = None,
    ) -> None:
        findings = [f if f.point else Finding(f.check, f.message, point, f.evidence) for f in findings]
        by_id: dict[str, list[Finding]] = {}
        for finding in findings:
            by_id.setdefault(finding.id, []).append(finding)
        checks = list(declared) + [f.check for f in findings if f.check not in declared]
        # Where a failing gate (or an undeclared failure) stops the function, later checks stay undecided.
        gate_ids = [c.id for c in list(declared)[: len(declared) if gates is None else gates]]
        declared_ids = [c.id for c in declared]
        blocking = [
            f for f in findings if f.level >= self.report.fail_level and (f.id in gate_ids or f.id not in declared_ids)
        ]
        undecided_from = min(
            (declared_ids.index(f.id) + 1 if f.id in declared_ids else 0 for f in blocking), default=len(declared)
        )
        seen: set[str] = set()
        for check in checks:
            if check.id in seen:
                continue
            seen.add(check.id)
            mine = tuple(by_id.get(check.id, ()))
            if not mine and check.id in declared_ids and declared_ids.index(check.id) >= undecided_from:
                self.report.outcomes.append(CheckOutcome(check, Outcome.BLOCKED, point, reason=f"by {blocking[0].id}"))
                continue
            if not mine:
                outcome = Outcome.PASSED
            elif max(f.level for f in mine) >= self.report.fail_level:
                outcome = Outcome.FAILED
            else:
                outcome = Outcome.WARNED
            self.report.outcomes.append(CheckOutcome(check, outcome, point, mine, elapsed))

    def _stop_if_failed(self, findings: Sequence[Finding]) -> None:
        if not self._stop_on_failure:
            return
        for finding in findings:
            if finding.level >= self.report.fail_level:
                raise StageFailed(finding)
