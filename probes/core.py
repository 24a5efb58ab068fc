"""The probe core: stages, checks, findings, and the recorder of one run's outcomes.

A *check* is declared once, as a module-level constant beside the code that emits it
(``DB001 = Check(...)`` in ``probes/db.py``). Running a check yields *findings* —
values, not exceptions. Probe functions are registered with what they emit and require
(:mod:`probes.registry`); a :class:`Recorder` runs them at *points* ("db", "discovery",
"masterplan.batch-2") and collects every outcome, each tagged with the position in the run
of the event it judges, into a :class:`Report` whose first failure is the earliest one.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.redaction import redact_value

__all__ = [
    "Check",
    "CheckFn",
    "CheckOutcome",
    "Classifier",
    "Finding",
    "Level",
    "NotApplicable",
    "Outcome",
    "ProbeSkipped",
    "ProbeTimeout",
    "Recorder",
    "Report",
    "Stage",
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
    #: Did not run because something it needs failed first.
    BLOCKED = "blocked"
    #: Did not run by choice (``--read-only``, ``--stage``, ``--llm off``).
    SKIPPED = "skipped"
    #: Does not apply to this target or this point (for example no migrations configured).
    NOT_APPLICABLE = "not_applicable"

    @property
    def ran(self) -> bool:
        """The check was decided by running it."""
        return self in (Outcome.PASSED, Outcome.WARNED, Outcome.FAILED)


@dataclass(frozen=True)
class CheckOutcome:
    """One check at one probe point, with its findings and how long it took."""

    check: Check
    outcome: Outcome
    point: str
    findings: tuple[Finding, ...] = ()
    duration_s: float = 0.0
    reason: str | None = None
    #: Position in the run: the timeline event it judges (preflight checks come before every event).
    seq: int = -1


class NotApplicable(Exception):
    """Raised by a probe that finds, while running, that there is nothing here to judge; carries why.

    For what is known before a probe runs, its ``applies`` says so; this is for what only the
    probe finds out (migrations without a single revision). The recorder records the probe's
    checks as not applicable — never as passed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProbeSkipped(Exception):
    """Raised by a probe that lacks the means to judge (no disposable database, a trial run it refused).

    The recorder records the probe's checks as skipped, with the reason — never as passed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


class _CheckThread:
    """A daemon thread that runs checks one after another, so a run does not start a thread per check.

    A check that overruns its bound keeps its thread: that thread is never handed another check.
    """

    def __init__(self) -> None:
        import queue
        import threading

        self._jobs: queue.SimpleQueue[tuple[CheckFn, tuple, dict[str, Any], Any]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="probe-check", daemon=True).start()

    def _serve(self) -> None:
        while True:
            check_fn, args, outcome, done = self._jobs.get()
            try:
                outcome["value"] = check_fn(*args)
            except BaseException as exc:  # handed back to the caller's thread
                outcome["error"] = exc
            finally:
                del check_fn, args  # nothing of the finished check stays alive here
                done.set()

    def run(self, check_fn: CheckFn, args: tuple, outcome: dict[str, Any]) -> Any:
        """Start ``check_fn(*args)``; the returned event is set when ``outcome`` holds its value or error."""
        import threading

        done = threading.Event()
        self._jobs.put((check_fn, args, outcome, done))
        return done


#: Threads whose last check finished in time, ready for the next one (a forked child has none).
_IDLE_CHECK_THREADS: list[_CheckThread] = []


def _forget_check_threads() -> None:
    _IDLE_CHECK_THREADS.clear()


os.register_at_fork(after_in_child=_forget_check_threads)


def _call_with_timeout(check_fn: CheckFn, args: tuple, timeout: float) -> Sequence[Finding]:
    """Run ``check_fn`` in a daemon thread; a hung check cannot hang the run."""
    try:
        worker = _IDLE_CHECK_THREADS.pop()
    except IndexError:
        worker = _CheckThread()
    outcome: dict[str, Any] = {}
    if not worker.run(check_fn, args, outcome).wait(timeout):
        raise ProbeTimeout(f"the check did not finish within {timeout:g} s")
    _IDLE_CHECK_THREADS.append(worker)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class Recorder:
    """Collects the outcomes of one run; the runner hands it probes to run at points.

    ``classifiers`` map each stage to the function that explains an exception raised by one
    of its probes (a probe that crashes is a finding of its stage, never a crash of the run).
    Outcomes carry the ``seq`` of the event they judge; :meth:`finish` puts them in run order,
    so the first failure of the report is the earliest failing event.
    """

    def __init__(self, classifiers: Mapping[Stage, Classifier], *, fail_level: Level = Level.ERROR) -> None:
        self._classifiers = dict(classifiers)
        self.report = Report(fail_level=fail_level)
        self.observations: dict[str, Any] = {}

    # -- running probes ----------------------------------------------------------------------

    def run_probe(
        self, probe: Any, point: str, ctx: Any, *item: Any, seq: int = -1, timeout: float | None = None
    ) -> list[Finding]:
        """Run one registered probe at ``point`` (unless a requirement stops it); returns its findings."""
        stopped = self.requirement_problem(probe.requires, point)
        if stopped is not None:
            outcome, reason = stopped
            self.skip(probe.emits, point, reason, blocked=outcome is Outcome.BLOCKED, seq=seq)
            return []
        started = time.perf_counter()
        try:
            reason = probe.not_applicable(ctx, *item)
            if reason is not None:
                self.not_applicable(probe.emits, point, reason, seq=seq)
                return []
            args = (ctx, *item)
            timeout = probe.timeout if probe.timeout is not None and timeout is not None else timeout
            findings = list(
                probe.function(*args) if timeout is None else _call_with_timeout(probe.function, args, timeout)
            )
        except NotApplicable as exc:
            self.not_applicable(probe.emits, point, exc.reason, seq=seq)
            return []
        except ProbeSkipped as exc:
            self.skip(probe.emits, point, exc.reason, seq=seq)
            return []
        except Exception as exc:  # a probe that crashes is a finding of its stage, not a crash of the run
            findings = [self._classify(probe.stage, exc, point)]
        self.record(
            probe.emits, point, findings, seq=seq, elapsed=time.perf_counter() - started, independent=probe.independent
        )
        return findings

    def requirement_problem(self, requires: Iterable[Check], point: str) -> tuple[Outcome, str] | None:
        """Why checks needing ``requires`` cannot run at ``point``: (BLOCKED|SKIPPED, reason), or ``None``."""
        for required in requires:
            outcome = self.outcome_of(required.id, point)
            if outcome is None:
                continue
            where = (
                ""
                if outcome.point in (point, outcome.check.stage.value)
                else f" at {outcome.check.stage.value}/{outcome.point}"
            )
            if outcome.outcome is Outcome.FAILED:
                return Outcome.BLOCKED, f"by {required.id}{where}"
            if outcome.outcome is Outcome.BLOCKED:
                return Outcome.BLOCKED, outcome.reason or f"by {required.id}"
            if outcome.outcome is Outcome.SKIPPED:
                return Outcome.SKIPPED, f"needs {required.id}, which was skipped ({outcome.reason})"
        return None

    def outcome_of(self, check_id: str, point: str | None = None) -> CheckOutcome | None:
        """The latest outcome of a check at ``point``; else, its latest outcome anywhere in the run."""
        anywhere = None
        for outcome in reversed(self.report.outcomes):
            if outcome.check.id != check_id:
                continue
            if point is None or outcome.point == point:
                return outcome
            anywhere = anywhere or outcome
        return anywhere

    # -- recording ---------------------------------------------------------------------------

    def record(
        self,
        checks: Sequence[Check],
        point: str,
        findings: Sequence[Finding],
        *,
        seq: int = -1,
        elapsed: float = 0.0,
        independent: bool = False,
    ) -> None:
        """Record the outcome of ``checks`` decided at ``point`` with these findings.

        A check without a finding passed — unless an earlier check of the same decision failed
        (or a finding of an undeclared check did), which leaves it undecided: blocked. With
        ``independent`` each check stands on its own.
        """
        findings = [f if f.point else Finding(f.check, f.message, point, f.evidence) for f in findings]
        by_id: dict[str, list[Finding]] = {}
        for finding in findings:
            by_id.setdefault(finding.id, []).append(finding)
        declared = list(checks)
        declared_ids = [c.id for c in declared]
        extra = [f.check for f in findings if f.check.id not in declared_ids]
        blocking = [
            f for f in findings if f.level >= self.report.fail_level and (f.id not in declared_ids or not independent)
        ]
        undecided_from = len(declared)
        if blocking:
            undecided_from = min(declared_ids.index(f.id) + 1 if f.id in declared_ids else 0 for f in blocking)
        seen: set[str] = set()
        for index, check in enumerate(declared + extra):
            if check.id in seen:
                continue
            seen.add(check.id)
            mine = tuple(by_id.get(check.id, ()))
            if not mine and index < len(declared) and index >= undecided_from:
                self._add(CheckOutcome(check, Outcome.BLOCKED, point, reason=f"by {blocking[0].id}", seq=seq))
                continue
            if not mine:
                outcome = Outcome.PASSED
            elif max(f.level for f in mine) >= self.report.fail_level:
                outcome = Outcome.FAILED
            else:
                outcome = Outcome.WARNED
            self._add(CheckOutcome(check, outcome, point, mine, elapsed, seq=seq))

    def skip(self, checks: Iterable[Check], point: str, reason: str, *, blocked: bool = False, seq: int = -1) -> None:
        """Record checks that did not run: blocked (something they need failed) or skipped (by choice)."""
        outcome = Outcome.BLOCKED if blocked else Outcome.SKIPPED
        for check in checks:
            self._add(CheckOutcome(check, outcome, point, reason=reason, seq=seq))

    def not_applicable(self, checks: Iterable[Check], point: str, reason: str, *, seq: int = -1) -> None:
        """Record checks that do not apply here, and why."""
        for check in checks:
            self._add(CheckOutcome(check, Outcome.NOT_APPLICABLE, point, reason=reason, seq=seq))

    def observe(self, key: str, value: Any) -> None:
        """Keep something the run produced (an LLM exchange, a committed key) for the report."""
        self.observations[key] = value

    def finish(self) -> Report:
        """Put the outcomes in run order (stable: same event, recording order) and return the report."""
        self.report.outcomes.sort(key=lambda outcome: outcome.seq)
        return self.report

    # -- internals ---------------------------------------------------------------------------

    def _add(self, outcome: CheckOutcome) -> None:
        self.report.outcomes.append(outcome)

    def _classify(self, stage: Stage, exc: BaseException, point: str) -> Finding:
        classifier = self._classifiers.get(stage)
        if classifier is None:
            raise KeyError(f"no classifier for stage {stage.value}") from exc
        finding = classifier(exc, point)
        return finding if finding.point else Finding(finding.check, finding.message, point, finding.evidence)
