"""A probe that cannot judge says why by raising: not applicable, or skipped — never passed, never a crash."""

from __future__ import annotations

import pytest

from probes.core import Check, Level, NotApplicable, Outcome, ProbeSkipped, Recorder, Stage
from probes.registry import Probe, Scope

A = Check("TST101", Stage.DB, Level.ERROR, "a holds", "fix a")
B = Check("TST102", Stage.DB, Level.ERROR, "b holds", "fix b")
CRASH = Check("TST900", Stage.DB, Level.ERROR, "no crash", "report it")


def _raising(exc: Exception) -> Probe:
    def function(ctx: object) -> list:
        raise exc

    return Probe("test.raising", Stage.DB, Scope.PREFLIGHT, (A, B), (), function)


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [(NotApplicable("nothing to judge"), Outcome.NOT_APPLICABLE), (ProbeSkipped("no means to judge"), Outcome.SKIPPED)],
)
def test_a_probe_that_cannot_judge_records_why(exc: Exception, outcome: Outcome) -> None:
    """Every check the probe emits gets that outcome and the exception's reason; no finding is made."""
    recorder = Recorder({Stage.DB: lambda error, point: CRASH.finding(str(error))})
    assert recorder.run_probe(_raising(exc), "db", None) == []
    assert [(o.check.id, o.outcome, o.reason) for o in recorder.finish().outcomes] == [
        ("TST101", outcome, exc.reason),
        ("TST102", outcome, exc.reason),
    ]
