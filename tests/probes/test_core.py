"""The probe core: outcomes, attribution of exceptions to stages, blocking and verdicts."""

from __future__ import annotations

import pytest

import probes
from probes.core import Check, Level, Outcome, Recorder, Stage, StageFailed

A = Check("TST001", Stage.PARSE, Level.ERROR, "a holds", "fix a")
B = Check("TST002", Stage.PARSE, Level.WARNING, "b holds", "fix b")
C = Check("TST003", Stage.PARSE, Level.ERROR, "c holds", "fix c")


def _recorder(**kwargs) -> Recorder:
    return Recorder({Stage.PARSE: lambda exc, point: C.finding(f"boom: {exc}")}, **kwargs)


def test_declared_checks_without_findings_pass() -> None:
    """A check function that finds nothing passes every check it declares."""
    recorder = _recorder()
    recorder.run_checks(Stage.PARSE, "p", [((A, B), lambda: [])])
    assert [(o.check.id, o.outcome) for o in recorder.report.outcomes] == [
        ("TST001", Outcome.PASSED),
        ("TST002", Outcome.PASSED),
    ]
    assert recorder.report.verdict == "pass"


def test_warning_does_not_fail_or_stop_the_run() -> None:
    """A finding below the fail level is a warning, and the flow goes on."""
    recorder = _recorder()
    recorder.run_checks(Stage.PARSE, "p", [((A, B), lambda: [B.finding("meh")])])
    assert recorder.report.count(Outcome.WARNED) == 1
    assert recorder.report.verdict == "pass"


def test_failure_raises_stage_failed_and_blocks_undecided_siblings() -> None:
    """A failing check stops the flow; siblings it prevented from deciding are blocked, not passed."""
    recorder = _recorder()
    with pytest.raises(StageFailed) as caught:
        recorder.run_checks(Stage.PARSE, "p", [((A, B), lambda: [A.finding("bad", detail=1)])])
    assert caught.value.finding.id == "TST001"
    outcomes = {o.check.id: o.outcome for o in recorder.report.outcomes}
    assert outcomes == {"TST001": Outcome.FAILED, "TST002": Outcome.BLOCKED}
    assert recorder.report.verdict == "parse:TST001"


def test_exception_inside_a_point_is_attributed_to_its_stage() -> None:
    """An exception raised in a probe point becomes that stage's finding, with the point named."""
    recorder = _recorder()
    with pytest.raises(StageFailed), recorder.point(Stage.PARSE, "masterplan"):
        raise ValueError("nope")
    first = recorder.report.first_failure
    assert (first.id, first.point, first.stage) == ("TST003", "masterplan", Stage.PARSE)


def test_fail_level_warning_turns_warnings_into_failures() -> None:
    """With fail level warning, a warning decides the verdict."""
    recorder = _recorder(fail_level=Level.WARNING)
    with pytest.raises(StageFailed):
        recorder.run_checks(Stage.PARSE, "p", [((B,), lambda: [B.finding("meh")])])
    assert recorder.report.verdict == "parse:TST002"


def test_evidence_is_redacted_when_the_finding_is_made() -> None:
    """A secret in evidence never reaches the report."""
    finding = A.finding("x", url="postgresql://u:topsecret99@h/db")
    assert "topsecret99" not in str(finding.to_dict())


def test_check_ids_are_unique_and_every_stage_has_checks() -> None:
    """The catalogue has no duplicate ID and covers all six stages."""
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


def test_hung_check_becomes_a_finding_instead_of_a_hang() -> None:
    """A check function that does not return within its timeout is a finding of its stage."""
    import threading

    release = threading.Event()
    recorder = _recorder()
    with pytest.raises(StageFailed) as caught:
        recorder.run_checks(Stage.PARSE, "p", [((A,), lambda: release.wait(5) and [])], timeout=0.05)
    release.set()
    assert caught.value.finding.id == "TST003" and "did not finish" in caught.value.finding.message


def test_every_check_id_is_asserted_by_some_test() -> None:
    """Each check in the catalogue is named by at least one test (so removing a check fails a test)."""
    from pathlib import Path

    tests = Path(__file__).resolve().parents[1]
    text = "\n".join(path.read_text() for path in tests.rglob("test_*.py") if path.name != "test_core.py")
    untested = [c.id for c in probes.ALL_CHECKS if not c.id.endswith("900") and c.id not in text]
    assert untested == []


def test_independent_checks_pass_beside_a_failure() -> None:
    """With no gates, a failing check leaves its siblings' own verdicts standing."""
    recorder = _recorder()
    with pytest.raises(StageFailed):
        recorder.run_checks(Stage.PARSE, "p", [((A, B, C), lambda: [C.finding("bad")])], gates=0)
    assert {o.check.id: o.outcome for o in recorder.report.outcomes} == {
        "TST001": Outcome.PASSED,
        "TST002": Outcome.PASSED,
        "TST003": Outcome.FAILED,
    }


def test_a_failing_gate_blocks_only_the_checks_after_it() -> None:
    """A gate that fails leaves earlier checks passed and later ones undecided (blocked)."""
    recorder = _recorder()
    with pytest.raises(StageFailed):
        recorder.run_checks(Stage.PARSE, "p", [((A, C, B), lambda: [C.finding("bad")])], gates=2)
    outcomes = {o.check.id: (o.outcome, o.reason) for o in recorder.report.outcomes}
    assert outcomes["TST001"] == (Outcome.PASSED, None)
    assert outcomes["TST003"][0] is Outcome.FAILED
    assert outcomes["TST002"] == (Outcome.BLOCKED, "by TST003")


def test_an_undeclared_failure_leaves_every_declared_check_undecided() -> None:
    """A crash (classified into a check the function did not declare) blocks all it declared."""
    recorder = _recorder()

    def crash() -> list:
        raise ValueError("boom")

    with pytest.raises(StageFailed):
        recorder.run_checks(Stage.PARSE, "p", [((A, B), crash)], gates=0)
    outcomes = {o.check.id: o.outcome for o in recorder.report.outcomes}
    assert outcomes == {"TST001": Outcome.BLOCKED, "TST002": Outcome.BLOCKED, "TST003": Outcome.FAILED}
