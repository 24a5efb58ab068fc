"""Probe points around a generation flow: the adapter between a flow's hooks and the checks.

:class:`ProbeHooks` implements the flow's hook interface (``harness.flow.hooks.FlowHooks``)
structurally — it imports nothing from the flow. When the flow says an LLM call answered,
it runs the llm checks and then parses the raw answer itself; when the flow says it saved
a row, it reads the row back through its own connection and compares it with what it
parsed. :data:`FLOW_POINTS` lists every point of a complete run, so that the points a
failure kept from running can be reported as blocked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.config import TIMEOUTS, Timeouts
from probes import llm, parse, persist
from probes.core import Check, Recorder, Stage
from probes.llm import LLMExchangeLike

__all__ = ["FLOW_POINTS", "ProbeHooks", "mark_unreached"]

#: Every probe point of a complete flow run, in order, with the checks it runs.
FLOW_POINTS: tuple[tuple[Stage, str, tuple[Check, ...]], ...] = (
    (Stage.LLM, "discovery", (llm.CALL_ANSWERED, *llm.ANSWER_CHECKS)),
    (Stage.PARSE, "discovery", parse.DOCUMENT_CHECKS),
    (Stage.PERSIST, "discovery", persist.DISCOVERY_CHECKS + (persist.PERSIST005,)),
    (Stage.LLM, "examples", (llm.LLM013,)),
    (Stage.LLM, "masterplan", (llm.CALL_ANSWERED, *llm.ANSWER_CHECKS)),
    (Stage.PARSE, "masterplan", parse.DOCUMENT_CHECKS + parse.PLAN_CHECKS),
    (Stage.PERSIST, "masterplan", persist.PLAN_CHECKS + (persist.PERSIST005,)),
)

#: Attributes read from returned objects to prove they work after their session closed.
_DETACHED_ATTRIBUTES = {
    "discovery": ("discovery_id", "domain", "bounded_contexts", "created_at"),
    "masterplan": ("masterplan_id", "project_name", "total_tasks", "status", "created_at"),
}


#: Checks that pass when a step ends without an exception (steps with no other hook).
_STEP_CHECKS: dict[tuple[str, str], tuple[Check, ...]] = {("llm", "examples"): (llm.LLM013,)}


class ProbeHooks:
    """Flow hooks that run the probes at each point and record the outcomes."""

    def __init__(self, recorder: Recorder, database_url: str, *, timeouts: Timeouts = TIMEOUTS) -> None:
        self.recorder = recorder
        self._database_url = database_url
        self._timeouts = timeouts
        self._parsed: dict[str, Any] = {}

    @contextmanager
    def step(self, stage: str, point: str) -> Iterator[None]:
        """Attribute any exception inside to ``stage``; a step with no other hook passes its checks on exit."""
        with self.recorder.point(Stage(stage), point, attributes=_STEP_CHECKS.get((stage, point), ())):
            yield

    def llm_answered(self, point: str, answer: LLMExchangeLike) -> None:
        """Record the exchange, judge it, then parse the answer independently of the flow."""
        self.recorder.observe(f"llm.{point}", llm.exchange_evidence(answer))
        self.recorder.run_checks(
            Stage.LLM, point, [((llm.CALL_ANSWERED, *llm.ANSWER_CHECKS), lambda: llm.check_answer(answer, point))]
        )
        if point == "discovery":
            checks: tuple[Check, ...] = parse.DOCUMENT_CHECKS
            parser = parse.check_discovery_text
        else:
            checks = parse.DOCUMENT_CHECKS + parse.PLAN_CHECKS
            parser = parse.check_masterplan_text

        def run_parse() -> list:
            findings, document = parser(answer.text, point)
            self._parsed[point] = document
            return findings

        self.recorder.run_checks(Stage.PARSE, point, [(checks, run_parse)])

    def saved(self, point: str, table: str, key: uuid.UUID) -> None:
        """Read the saved row back through a new connection and compare it with the parsed answer."""
        self.recorder.observe(f"saved.{point}", {"table": table, "key": str(key)})
        document = self._parsed.get(point)
        if document is None:
            self.recorder.skip(
                persist.PLAN_CHECKS if point == "masterplan" else persist.DISCOVERY_CHECKS,
                point,
                "the answer was not parsed by the probe, so there is nothing to compare with",
            )
            return
        if point == "discovery":
            checks: tuple[Check, ...] = persist.DISCOVERY_CHECKS

            def run() -> list:
                return persist.check_discovery_row(self._database_url, key, document, point, self._timeouts)
        else:
            checks = persist.PLAN_CHECKS

            def run() -> list:
                return persist.check_masterplan_rows(self._database_url, key, document, point, self._timeouts)

        self.recorder.run_checks(Stage.PERSIST, point, [(checks, run)])

    def loaded(self, point: str, obj: object) -> None:
        """Use the returned object the way a caller would, after its session closed."""
        attributes = _DETACHED_ATTRIBUTES.get(point, ())
        self.recorder.run_checks(
            Stage.PERSIST, point, [((persist.PERSIST005,), lambda: persist.check_detached(obj, attributes, point))]
        )

    def progress_unobserved(self, point: str) -> None:
        """No event sink: progress never reaches the user (reported by a later check)."""
        self.recorder.observe("events.sink_missing", True)


def mark_unreached(recorder: Recorder) -> None:
    """Record every flow point that never ran: blocked by the first failure, or skipped."""
    reached = {(o.check.stage, o.point) for o in recorder.report.outcomes}
    first = recorder.report.first_failure
    for stage, point, checks in FLOW_POINTS:
        if (stage, point) in reached:
            continue
        if first is not None:
            where = (
                first.stage.value if first.point in (None, first.stage.value) else f"{first.stage.value}/{first.point}"
            )
            recorder.skip(checks, point, f"by {first.id} at {where}", blocked=True)
        else:
            recorder.skip(checks, point, "not reached")
