"""The probe core: the Recorder running registered probes (blocking, gating, timeouts, order, verdict) and the registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import probes
from harness.judge import _FLOW_SCOPES  # the order the judge walks the scopes in: one place decides it
from probes import registry
from probes.core import Check, Finding, Level, NotApplicable, Outcome, ProbeSkipped, Recorder, Stage
from probes.registry import Probe, Scope, probe, probes_for

A = Check("TST001", Stage.PARSE, Level.ERROR, "a holds", "fix a")
B = Check("TST002", Stage.PARSE, Level.WARNING, "b holds", "fix b")
C = Check("TST003", Stage.PARSE, Level.ERROR, "c holds", "fix c")
#: What the test classifier turns a probe's exception into.
CRASH = Check("TST900", Stage.PARSE, Level.ERROR, "probe finished", "see the evidence")


def _recorder(**kwargs: Any) -> Recorder:
    return Recorder({Stage.PARSE: lambda exc, point: CRASH.finding(f"boom: {exc}")}, **kwargs)


def _probe(
    function: Callable[..., Sequence[Finding]],
    emits: Sequence[Check] = (A, B),
    *,
    requires: Sequence[Check] = (),
    **options: Any,
) -> Probe:
    """A probe of the parse stage, built without touching the registry."""
    return Probe("tests.probe", Stage.PARSE, Scope.ANSWER, tuple(emits), tuple(requires), function, **options)


def _outcomes(recorder: Recorder, point: str | None = None) -> dict[str, tuple[Outcome, str | None]]:
    return {o.check.id: (o.outcome, o.reason) for o in recorder.report.outcomes if point is None or o.point == point}


# -- one probe: what its findings make of the checks it emits ---------------------------------------


def test_declared_checks_without_findings_pass() -> None:
    """A probe that finds nothing passes every check it emits, and the verdict is pass."""
    recorder = _recorder()
    assert recorder.run_probe(_probe(lambda ctx: []), "p", None) == []
    assert _outcomes(recorder) == {"TST001": (Outcome.PASSED, None), "TST002": (Outcome.PASSED, None)}
    assert recorder.report.verdict == "pass"


def test_a_warning_is_recorded_and_does_not_fail_the_run() -> None:
    """A finding below the fail level is a warning; the checks after it are still decided."""
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: [B.finding("meh")], emits=(B, A)), "p", None)
    assert _outcomes(recorder) == {"TST002": (Outcome.WARNED, None), "TST001": (Outcome.PASSED, None)}
    assert recorder.report.verdict == "pass" and recorder.report.failures == []


def test_a_failure_leaves_the_checks_after_it_blocked_by_it() -> None:
    """In a probe that decides its checks in order, checks before a failure pass and those after are blocked by it."""
    recorder = _recorder()
    findings = recorder.run_probe(_probe(lambda ctx: [C.finding("bad", detail=1)], emits=(A, C, B)), "p", None)
    assert [f.id for f in findings] == ["TST003"]
    assert [(f.id, f.point) for f in recorder.report.findings] == [("TST003", "p")]
    assert _outcomes(recorder) == {
        "TST001": (Outcome.PASSED, None),
        "TST003": (Outcome.FAILED, None),
        "TST002": (Outcome.BLOCKED, "by TST003"),
    }
    assert recorder.report.verdict == "parse:TST003"


def test_an_independent_probe_judges_each_check_on_its_own() -> None:
    """With ``independent``, a failing check leaves its siblings' own outcomes standing."""
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: [C.finding("bad")], emits=(A, C, B), independent=True), "p", None)
    assert _outcomes(recorder) == {
        "TST001": (Outcome.PASSED, None),
        "TST003": (Outcome.FAILED, None),
        "TST002": (Outcome.PASSED, None),
    }


@pytest.mark.parametrize("independent", [False, True])
def test_a_probe_that_crashes_is_its_stages_finding_and_decides_nothing_it_emits(independent: bool) -> None:
    """A probe's exception goes through its stage's classifier; every check it emits is left blocked by that finding."""

    def crash(ctx: Any) -> list[Finding]:
        raise ValueError("no such column")

    recorder = _recorder()
    (finding,) = recorder.run_probe(_probe(crash, independent=independent), "p", None)
    assert (finding.id, finding.point, finding.message) == ("TST900", "p", "boom: no such column")
    assert _outcomes(recorder) == {
        "TST001": (Outcome.BLOCKED, "by TST900"),
        "TST002": (Outcome.BLOCKED, "by TST900"),
        "TST900": (Outcome.FAILED, None),
    }


def test_an_undeclared_finding_blocks_every_check_the_probe_emits() -> None:
    """A finding of a check the probe does not emit (an SDK failure's own ID) leaves all it emits undecided."""
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: [C.finding("401")], emits=(A, B), independent=True), "p", None)
    assert _outcomes(recorder) == {
        "TST001": (Outcome.BLOCKED, "by TST003"),
        "TST002": (Outcome.BLOCKED, "by TST003"),
        "TST003": (Outcome.FAILED, None),
    }


def test_fail_level_warning_turns_a_warning_into_a_failure_that_gates() -> None:
    """With fail level warning, a warning fails, decides the verdict, and blocks the checks after it."""
    recorder = _recorder(fail_level=Level.WARNING)
    recorder.run_probe(_probe(lambda ctx: [B.finding("meh")], emits=(B, A)), "p", None)
    assert _outcomes(recorder) == {"TST002": (Outcome.FAILED, None), "TST001": (Outcome.BLOCKED, "by TST002")}
    assert recorder.report.verdict == "parse:TST002"


# -- what a probe needs: requirements, applicability, means -------------------------------------


def _ran(calls: list[str], name: str) -> Callable[[Any], list[Finding]]:
    def function(ctx: Any) -> list[Finding]:
        calls.append(name)
        return []

    return function


def test_a_failed_requirement_blocks_the_probe_without_running_it() -> None:
    """A probe whose required check failed at the same point is blocked by that check, and never called."""
    recorder = _recorder()
    calls: list[str] = []
    recorder.run_probe(_probe(lambda ctx: [A.finding("bad")], emits=(A,)), "p", None)
    recorder.run_probe(_probe(_ran(calls, "needs A"), emits=(C,), requires=(A,)), "p", None)
    assert calls == []
    assert _outcomes(recorder)["TST003"] == (Outcome.BLOCKED, "by TST001")


def test_a_requirement_failed_at_another_point_is_named_with_that_point() -> None:
    """A requirement decided only elsewhere in the run blocks the probe, saying where it failed."""
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: [A.finding("bad")], emits=(A,)), "masterplan.batch-1", None)
    recorder.run_probe(_probe(lambda ctx: [], emits=(C,), requires=(A,)), "masterplan", None)
    assert _outcomes(recorder, "masterplan")["TST003"] == (Outcome.BLOCKED, "by TST001 at parse/masterplan.batch-1")


def test_a_requirement_is_judged_at_the_same_point_first() -> None:
    """A check that failed for one batch and passed for the next blocks only the first batch's dependants."""
    recorder = _recorder()
    calls: list[str] = []
    recorder.run_probe(_probe(lambda ctx: [A.finding("bad")], emits=(A,)), "batch-1", None)
    recorder.run_probe(_probe(lambda ctx: [], emits=(A,)), "batch-2", None)
    for point in ("batch-1", "batch-2"):
        recorder.run_probe(_probe(_ran(calls, point), emits=(C,), requires=(A,)), point, None)
    assert calls == ["batch-2"]
    assert _outcomes(recorder, "batch-1")["TST003"] == (Outcome.BLOCKED, "by TST001")
    assert _outcomes(recorder, "batch-2")["TST003"] == (Outcome.PASSED, None)


def test_blocking_passes_down_a_chain_with_the_first_cause() -> None:
    """A probe whose requirement was itself blocked is blocked for the same reason, naming the first failure."""
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: [A.finding("bad")], emits=(A,)), "p", None)
    recorder.run_probe(_probe(lambda ctx: [], emits=(B,), requires=(A,)), "p", None)
    recorder.run_probe(_probe(lambda ctx: [], emits=(C,), requires=(B,)), "p", None)
    assert _outcomes(recorder)["TST003"] == (Outcome.BLOCKED, "by TST001")


def test_a_skipped_requirement_skips_the_probe_saying_why() -> None:
    """A probe whose requirement was skipped by choice is skipped too (never passed), with the requirement's reason."""
    recorder = _recorder()
    recorder.skip((A,), "p", "stage not selected (--stage)")
    recorder.run_probe(_probe(lambda ctx: [], emits=(C,), requires=(A,)), "p", None)
    assert _outcomes(recorder)["TST003"] == (
        Outcome.SKIPPED,
        "needs TST001, which was skipped (stage not selected (--stage))",
    )


@pytest.mark.parametrize("finding", [None, B.finding("meh")])
def test_a_requirement_that_passed_or_warned_lets_the_probe_run(finding: Finding | None) -> None:
    """Only a failed, blocked or skipped requirement stops a probe; one that passed or warned does not."""
    recorder = _recorder()
    calls: list[str] = []
    recorder.run_probe(_probe(lambda ctx: [finding] if finding else [], emits=(B,)), "p", None)
    recorder.run_probe(_probe(_ran(calls, "ran"), emits=(C,), requires=(B,)), "p", None)
    assert calls == ["ran"] and _outcomes(recorder)["TST003"] == (Outcome.PASSED, None)


def test_a_probe_that_does_not_apply_is_not_applicable_and_never_called() -> None:
    """``applies`` giving a reason records every emitted check as not applicable with it; the probe is not run."""
    recorder = _recorder()
    calls: list[str] = []
    entry = _probe(_ran(calls, "ran"), applies=lambda ctx, item: f"no migrations for {item}")
    recorder.run_probe(entry, "db", None, "planner")
    assert calls == []
    assert _outcomes(recorder) == {
        "TST001": (Outcome.NOT_APPLICABLE, "no migrations for planner"),
        "TST002": (Outcome.NOT_APPLICABLE, "no migrations for planner"),
    }
    assert recorder.report.verdict == "pass" and recorder.report.count(Outcome.PASSED) == 0


def test_not_applicable_found_while_running_is_recorded_as_such() -> None:
    """A probe that finds out while running that there is nothing to judge records NotApplicable, never passed."""

    def no_revision(ctx: Any) -> list[Finding]:
        raise NotApplicable("the migrations hold no revision")

    recorder = _recorder()
    recorder.run_probe(_probe(no_revision), "db", None)
    assert set(_outcomes(recorder).values()) == {(Outcome.NOT_APPLICABLE, "the migrations hold no revision")}


def test_a_probe_without_the_means_to_judge_is_skipped_with_its_reason() -> None:
    """ProbeSkipped records the probe's checks as skipped with the reason it gave, never as passed."""

    def no_database(ctx: Any) -> list[Finding]:
        raise ProbeSkipped("no disposable PostgreSQL to apply the migrations to")

    recorder = _recorder()
    recorder.run_probe(_probe(no_database), "db", None)
    assert set(_outcomes(recorder).values()) == {
        (Outcome.SKIPPED, "no disposable PostgreSQL to apply the migrations to")
    }


def test_a_probe_is_given_the_context_and_the_item_it_judges() -> None:
    """The runner's context and the item (an exchange, an answer, a commit) reach the probe function as arguments."""
    seen: list[tuple[Any, ...]] = []
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx, item: seen.append((ctx, item)) or []), "p", "ctx", "item")
    assert seen == [("ctx", "item")]


def test_a_probe_judges_only_the_kinds_of_item_it_names() -> None:
    """A probe with ``kinds`` wants only those items; one without wants every kind."""
    assert _probe(lambda ctx: [], kinds=frozenset({"batch"})).wants("batch")
    assert not _probe(lambda ctx: [], kinds=frozenset({"batch"})).wants("skeleton")
    assert _probe(lambda ctx: []).wants("skeleton") and _probe(lambda ctx: []).wants(None)


# -- timeouts ---------------------------------------------------------------------------------------


def test_a_hung_probe_becomes_a_finding_instead_of_a_hang() -> None:
    """A probe that does not return within the run's probe timeout is its stage's finding; its checks stay undecided."""
    release = threading.Event()
    recorder = _recorder()
    try:
        (finding,) = recorder.run_probe(_probe(lambda ctx: release.wait(30) and []), "p", None, timeout=0.05)
    finally:
        release.set()
    assert finding.id == "TST900" and "did not finish within 0.05 s" in finding.message
    assert _outcomes(recorder)["TST001"] == (Outcome.BLOCKED, "by TST900")


def test_a_probe_with_its_own_bound_is_given_that_bound_instead_of_the_runs() -> None:
    """A probe declared with a longer timeout of its own (a migration trial) is not cut at the run's probe timeout."""

    def slow(ctx: Any) -> list[Finding]:
        time.sleep(0.3)
        return []

    recorder = _recorder()
    assert recorder.run_probe(_probe(slow, timeout=60.0), "p", None, timeout=0.05) == []
    assert _outcomes(recorder)["TST001"] == (Outcome.PASSED, None)


def test_checks_share_one_thread_and_a_hung_checks_thread_is_never_handed_another() -> None:
    """Checks in turn run on one kept thread (a thread a check cost time under load); one that overran keeps its own."""
    seen: list[threading.Thread] = []

    def where(ctx: Any) -> list[Finding]:
        seen.append(threading.current_thread())
        return []

    release = threading.Event()
    recorder = _recorder()
    try:
        recorder.run_probe(_probe(where), "p1", None, timeout=5)
        recorder.run_probe(_probe(where), "p2", None, timeout=5)
        hung: list[threading.Thread] = []
        recorder.run_probe(
            _probe(lambda ctx: hung.append(threading.current_thread()) or release.wait(30) and []), "p3", None, timeout=0.05
        )
        recorder.run_probe(_probe(where), "p4", None, timeout=5)
    finally:
        release.set()
    assert seen[0] is seen[1] and seen[0] is not threading.current_thread()
    assert hung == [seen[0]]  # the hung check ran on the kept thread...
    assert seen[2] is not hung[0]  # ...which the next check did not wait behind
    assert _outcomes(recorder)["TST001"] == (Outcome.PASSED, None)


def test_a_forked_child_runs_checks_on_threads_of_its_own() -> None:
    """A replay process forked after its parent ran checks finds them done, not timed out on a thread it does not have."""
    import multiprocessing

    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: []), "parent", None, timeout=5)  # leaves a kept thread in this process
    with multiprocessing.get_context("fork").Pool(1) as pool:
        outcomes = pool.apply(_run_one_check_in_child)
    assert outcomes == {"TST001": (Outcome.PASSED, None), "TST002": (Outcome.PASSED, None)}


def _run_one_check_in_child() -> dict[str, tuple[Outcome, str | None]]:
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: []), "child", None, timeout=5)
    return _outcomes(recorder)


# -- the report: run order and verdict --------------------------------------------------------------


def test_finish_puts_outcomes_in_run_order_so_the_earliest_failure_is_first() -> None:
    """Outcomes judged out of order are sorted by the seq of their event (stably), and the verdict is the earliest failure."""
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: [C.finding("late")], emits=(C,)), "persist", None, seq=40)
    recorder.run_probe(_probe(lambda ctx: [], emits=(B, A)), "answer", None, seq=12)
    recorder.run_probe(_probe(lambda ctx: [A.finding("early")], emits=(A,)), "exchange", None, seq=7)
    recorder.skip((B,), "env", "stage not selected (--stage)")  # pre-flight outcomes carry no event: first
    assert recorder.report.verdict == "parse:TST003"  # before finish: recording order
    report = recorder.finish()
    assert [(o.seq, o.check.id) for o in report.outcomes] == [
        (-1, "TST002"),
        (7, "TST001"),
        (12, "TST002"),
        (12, "TST001"),
        (40, "TST003"),
    ]
    assert report.verdict == "parse:TST001" and report.first_failing_stage is Stage.PARSE


def test_the_report_counts_every_outcome_and_shows_why_a_check_did_not_run() -> None:
    """The report's totals cover all six outcomes, and each check that did not run carries its reason."""
    recorder = _recorder()
    recorder.run_probe(_probe(lambda ctx: [A.finding("bad")], emits=(A,)), "p", None)
    recorder.run_probe(_probe(lambda ctx: [], emits=(C,), requires=(A,)), "p", None)
    recorder.not_applicable((B,), "q", "no plan")
    recorder.skip((B,), "r", "--read-only")
    shown = recorder.finish().to_dict()
    assert shown["verdict"] == "parse:TST001" and shown["first_failure"]["id"] == "TST001"
    assert shown["totals"] == {
        "passed": 0,
        "warned": 0,
        "failed": 1,
        "blocked": 1,
        "skipped": 1,
        "not_applicable": 1,
    }
    reasons = {(c["id"], c["outcome"]): c["reason"] for c in shown["checks"]}
    assert reasons[("TST003", "blocked")] == "by TST001" and reasons[("TST002", "not_applicable")] == "no plan"


def test_evidence_is_redacted_when_the_finding_is_made() -> None:
    """A secret in evidence never reaches the report."""
    finding = A.finding("x", url="postgresql://u:topsecret99@h/db")
    assert "topsecret99" not in str(finding.to_dict())


# -- the registry ------------------------------------------------------------------------------------


@pytest.fixture
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> list[Probe]:
    """A registry of its own for one test, so probes registered here never reach a run."""
    fresh: list[Probe] = []
    monkeypatch.setattr(registry, "REGISTRY", fresh)
    return fresh


def test_a_probe_cannot_emit_another_stages_checks(empty_registry: list[Probe]) -> None:
    """Registering an llm probe that emits a parse check is refused, naming the check."""
    with pytest.raises(ValueError, match="llm probe cannot emit TST001"):

        @probe(Stage.LLM, emits=(A,))
        def wrong(ctx: Any) -> list[Finding]:
            return []

    assert empty_registry == []


def test_a_probe_registered_twice_is_refused(empty_registry: list[Probe]) -> None:
    """The same function registered twice is refused, so no check is ever judged twice at one point."""

    def twice(ctx: Any) -> list[Finding]:
        return []

    probe(Stage.PARSE, emits=(A,))(twice)
    with pytest.raises(ValueError, match="registered twice"):
        probe(Stage.PARSE, emits=(B,))(twice)
    assert [entry.emits for entry in empty_registry] == [(A,)]


def test_probes_for_gives_one_stage_and_scope_in_registration_order(empty_registry: list[Probe]) -> None:
    """probes_for selects by stage and scope and keeps the order the probes were registered in."""

    def first(ctx: Any) -> list[Finding]:
        return []

    def other_scope(ctx: Any) -> list[Finding]:
        return []

    def second(ctx: Any) -> list[Finding]:
        return []

    probe(Stage.PARSE, emits=(C,), scope=Scope.ANSWER)(first)
    probe(Stage.PARSE, emits=(A,), scope=Scope.PLAN)(other_scope)
    probe(Stage.PARSE, emits=(B,), scope=Scope.ANSWER, requires=(A,), kinds=("batch",))(second)
    found = probes_for(Stage.PARSE, Scope.ANSWER)
    assert [entry.function for entry in found] == [first, second]
    assert found[1].requires == (A,) and found[1].kinds == frozenset({"batch"})
    assert probes_for(Stage.LLM, Scope.ANSWER) == []


def _run_position(entry: Probe) -> tuple[int, int, int]:
    """When the runner runs a probe: pre-flight first, then the judge's scopes in order; stage order within each."""
    scopes = (Scope.PREFLIGHT, *_FLOW_SCOPES)
    return scopes.index(entry.scope), entry.stage.order, registry.REGISTRY.index(entry)


def test_every_requirement_is_decided_before_the_probes_that_need_it() -> None:
    """Each check a registered probe requires is emitted by a probe the runner runs earlier (else it never blocks)."""
    late = []
    for entry in registry.REGISTRY:
        for required in entry.requires:
            deciders = [other for other in registry.REGISTRY if required in other.emits]
            if not any(_run_position(other) < _run_position(entry) for other in deciders):
                late.append(f"{entry.name} requires {required.id}")
    assert late == []


def test_every_stage_registers_probes_that_emit_only_its_checks() -> None:
    """Each of the six stages has registered probes, and every registered probe emits checks of its own stage."""
    assert {entry.stage for entry in registry.REGISTRY} == set(Stage)
    assert all(check.stage is entry.stage for entry in registry.REGISTRY for check in entry.emits)


# -- the catalogue -----------------------------------------------------------------------------------


def test_check_ids_are_unique_and_every_stage_has_checks() -> None:
    """The catalogue has no duplicate ID and covers all six stages, each with a classifier."""
    ids = [check.id for check in probes.ALL_CHECKS]
    assert len(ids) == len(set(ids))
    assert {check.stage for check in probes.ALL_CHECKS} == set(Stage)
    assert set(probes.CLASSIFIERS) == set(Stage)


def test_check_by_id_suggests_close_ids() -> None:
    """An unknown ID names the checks of the same family."""
    assert probes.check_by_id("llm001").id == "LLM001"
    with pytest.raises(KeyError, match="LLM001"):
        probes.check_by_id("LLM999")


@pytest.mark.parametrize("stage", list(Stage))
def test_unexpected_exception_in_any_stage_is_that_stages_900_check(stage: Stage) -> None:
    """An exception no classifier knows becomes the stage's X900 finding, naming the exception."""
    finding = probes.CLASSIFIERS[stage](RuntimeError("surprise"), "somewhere")
    assert finding.stage is stage and finding.id.endswith("900")
    assert "RuntimeError" in finding.message or finding.evidence.get("error_type") == "RuntimeError"


def test_every_check_id_is_asserted_by_some_test() -> None:
    """Each check in the catalogue is named by at least one test (so removing a check fails a test)."""
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    text = "\n".join(path.read_text() for path in tests.rglob("test_*.py") if path.name != "test_core.py")
    untested = [c.id for c in probes.ALL_CHECKS if not c.id.endswith("900") and c.id not in text]
    assert untested == []
