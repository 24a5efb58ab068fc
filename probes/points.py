"""Probe points around a generation flow: the adapter between a flow's hooks and the checks.

:class:`ProbeHooks` implements the flow's hook interface (``harness.flow.hooks.FlowHooks``)
structurally — it imports nothing from the flow. When the flow says an LLM call answered,
it runs the llm checks and then parses the raw answer itself; when the flow says it saved
a row, it reads the row back through its own connection and compares it with what it
parsed. :data:`FLOW_POINTS` lists every point of a complete run, so that the points a
failure kept from running can be reported as blocked.

A batched plan has a point per call: ``masterplan.skeleton`` and ``masterplan.batch-N``
(each with llm, parse and persist checks; a batch is parsed together with the batches
before it), then ``masterplan`` for the whole plan, assembled by the probe from what it
parsed itself. Every attempt of a retried call is kept in the observations
(``attempts``), with totals per stage and per point (``usage``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.config import TIMEOUTS, Timeouts
from probes import auth, llm, parse, persist
from probes.core import Check, Recorder, Stage
from probes.llm import LLMExchangeLike

__all__ = ["FLOW_POINTS", "SINGLE_CALL_POINTS", "ProbeHooks", "mark_unreached"]

#: The chat command's own point: the identity is checked and the event sink looked for.
CHAT_POINT = "chat"

_DISCOVERY_POINTS: tuple[tuple[Stage, str, tuple[Check, ...]], ...] = (
    (Stage.AUTH, CHAT_POINT, (auth.AUTH004,)),
    (Stage.LLM, "discovery", (llm.CALL_ANSWERED, *llm.ANSWER_CHECKS)),
    (Stage.PARSE, "discovery", parse.DOCUMENT_CHECKS),
    (Stage.PERSIST, "discovery", persist.DISCOVERY_CHECKS + (persist.PERSIST005,)),
    (Stage.LLM, "examples", (llm.LLM013,)),
)
#: The prefix of every batched-generation point (``masterplan.skeleton``, ``masterplan.batch-2``).
BATCH_POINT_PREFIX = "masterplan."
SKELETON_POINT = "masterplan.skeleton"

#: Every probe point of a complete batched run (the default), in order, with the checks it runs.
#: Batch points (``masterplan.batch-N``) come between the skeleton and the whole plan; how many
#: there are is only known once the skeleton is in.
FLOW_POINTS: tuple[tuple[Stage, str, tuple[Check, ...]], ...] = (
    *_DISCOVERY_POINTS,
    (Stage.LLM, SKELETON_POINT, (llm.CALL_ANSWERED, *llm.ANSWER_CHECKS)),
    (Stage.PARSE, SKELETON_POINT, parse.DOCUMENT_CHECKS + parse.SKELETON_CHECKS),
    (Stage.PERSIST, SKELETON_POINT, persist.SKELETON_CHECKS),
    (Stage.PARSE, "masterplan", parse.PLAN_CHECKS),
    (Stage.PERSIST, "masterplan", persist.PLAN_CHECKS + (persist.PERSIST005,)),
)
#: Every probe point of a complete single-call run.
SINGLE_CALL_POINTS: tuple[tuple[Stage, str, tuple[Check, ...]], ...] = (
    *_DISCOVERY_POINTS,
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
        #: The probes' own connection for every readback of this run (never the flow's).
        self._reader = persist.Readback(database_url, timeouts)
        self._timeouts = timeouts
        self._parsed: dict[str, Any] = {}
        #: Tasks of the batches saved so far, in order (batched generation).
        self._tasks: list[Any] = []
        #: The point whose auth step passed (the command started), and whether it had no event sink.
        self._command_point: str | None = None
        self._sink_missing = False

    @contextmanager
    def step(self, stage: str, point: str) -> Iterator[None]:
        """Attribute any exception inside to ``stage``; a step with no other hook passes its checks on exit."""
        with self.recorder.point(Stage(stage), point, attributes=_STEP_CHECKS.get((stage, point), ())):
            yield
        if stage == Stage.AUTH.value:
            self._command_point = point

    def llm_answered(self, point: str, answer: LLMExchangeLike) -> None:
        """Record the exchange, judge it, then parse the answer independently of the flow."""
        self.recorder.observe(f"llm.{point}", llm.exchange_evidence(answer))
        self.recorder.run_checks(
            Stage.LLM,
            point,
            [((llm.CALL_ANSWERED, *llm.ANSWER_CHECKS), lambda: llm.check_answer(answer, point))],
            gates=0,  # a truncated answer was still an answer
        )
        if point == "discovery":
            checks: tuple[Check, ...] = parse.DOCUMENT_CHECKS
            parser: Any = parse.check_discovery_text
        elif point == SKELETON_POINT:
            checks = parse.DOCUMENT_CHECKS + parse.SKELETON_CHECKS
            parser = parse.check_skeleton_text
        elif point.startswith(BATCH_POINT_PREFIX):
            checks = parse.DOCUMENT_CHECKS + parse.BATCH_CHECKS
            skeleton = self._parsed.get(SKELETON_POINT)
            total = skeleton.total_tasks if skeleton is not None else None

            def parser(text: str, point: str) -> tuple[list, Any]:
                return parse.check_batch_text(text, point, self._tasks, total)
        else:
            checks = parse.DOCUMENT_CHECKS + parse.PLAN_CHECKS
            parser = parse.check_masterplan_text

        def run_parse() -> list:
            findings, document = parser(answer.text, point)
            self._parsed[point] = document
            if point == "masterplan" and document is not None:
                self.recorder.observe("atomicity.masterplan", parse.plan_atomicity(document))
            return findings

        # JSON found, decoded, contract met: each gates the next; the plan checks are judged side by side.
        self.recorder.run_checks(Stage.PARSE, point, [(checks, run_parse)], gates=len(parse.DOCUMENT_CHECKS))

    def saved(self, point: str, table: str, key: uuid.UUID) -> None:
        """Read the saved row back through a new connection and compare it with the parsed answer."""
        self.recorder.observe(f"saved.{point}", {"table": table, "key": str(key)})
        if point == "masterplan" and SKELETON_POINT in self._parsed:
            self._judge_assembled_plan()
        document = self._parsed.get(point)
        if point == "discovery":
            checks: tuple[Check, ...] = persist.DISCOVERY_CHECKS

            def run() -> list:
                return persist.check_discovery_row(self._reader, key, document, point, self._timeouts)
        elif point == SKELETON_POINT:
            checks = persist.SKELETON_CHECKS

            def run() -> list:
                return persist.check_skeleton_rows(self._reader, key, document, point, self._timeouts)
        elif point.startswith(BATCH_POINT_PREFIX):
            checks = persist.BATCH_CHECKS

            def run() -> list:
                return persist.check_batch_rows(self._reader, key, document, point, self._timeouts)
        else:
            checks = persist.PLAN_CHECKS

            def run() -> list:
                return persist.check_masterplan_rows(self._reader, key, document, point, self._timeouts)

        if document is None:
            self.recorder.skip(
                checks, point, "the answer was not parsed by the probe, so there is nothing to compare with"
            )
            return
        # No row (PERSIST001) leaves everything else undecided; the other comparisons are side by side.
        self.recorder.run_checks(Stage.PERSIST, point, [(checks, run)], gates=1)
        if point.startswith(BATCH_POINT_PREFIX) and point != SKELETON_POINT:
            self._tasks.extend(document)

    def attempted(self, point: str, attempt: Any) -> None:
        """Keep one attempt of a retried call, and add its wait and usage to the totals per stage and point."""
        record = attempt.to_dict() if hasattr(attempt, "to_dict") else dict(attempt)
        self.recorder.observations.setdefault("attempts", []).append(record)
        usage = self.recorder.observations.setdefault("usage", {"by_stage": {}, "by_point": {}})
        for group, name in (("by_stage", record["stage"]), ("by_point", point)):
            totals = usage[group].setdefault(
                name,
                {"attempts": 0, "retries": 0, "wait_s": 0.0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0},
            )
            totals["attempts"] += 1
            totals["retries"] += record["outcome"] == "retry"
            totals["wait_s"] = round(totals["wait_s"] + record["wait_s"], 3)
            totals["input_tokens"] += record["input_tokens"] or 0
            totals["output_tokens"] += record["output_tokens"] or 0
            totals["cost_usd"] = round(totals["cost_usd"] + (record["cost_usd"] or 0.0), 6)

    def _judge_assembled_plan(self) -> None:
        """The whole batched plan, as the probe assembled it from its own parses, judged like a single-call plan."""
        from harness.contract import assemble_plan

        skeleton = self._parsed[SKELETON_POINT]
        plan = assemble_plan(skeleton, self._tasks)
        self._parsed["masterplan"] = plan
        self.recorder.observe("atomicity.masterplan", parse.plan_atomicity(plan))
        self.recorder.run_checks(
            Stage.PARSE,
            "masterplan",
            [(parse.PLAN_CHECKS, lambda: parse.plan_findings(parse.plan_problems(plan), "masterplan"))],
        )

    def loaded(self, point: str, obj: object) -> None:
        """Use the returned object the way a caller would, after its session closed."""
        attributes = _DETACHED_ATTRIBUTES.get(point, ())
        self.recorder.run_checks(
            Stage.PERSIST, point, [((persist.PERSIST005,), lambda: persist.check_detached(obj, attributes, point))]
        )

    def progress_unobserved(self, point: str) -> None:
        """No event sink: progress never reaches the user (AUTH004, a warning)."""
        self.recorder.observe("events.sink_missing", True)
        self._sink_missing = True
        finding = auth.AUTH004.finding(
            "The command has no event sink: progress events are never emitted to the session.",
            point=point,
            events_emitted=0,
        )
        self.recorder.record_findings((auth.AUTH004,), point, [finding])

    def judge_progress(self) -> None:
        """Once the command has ended: a command that started with an event sink passes AUTH004."""
        if self._command_point is not None and not self._sink_missing:
            self.recorder.record_findings((auth.AUTH004,), self._command_point, [])

    def close(self) -> None:
        """Release the readback connection (the run is over)."""
        self._reader.close()


def mark_unreached(recorder: Recorder) -> None:
    """Record every flow point that never ran: blocked by the first failure, or skipped."""
    reached = {(o.check.stage, o.point) for o in recorder.report.outcomes}
    single = (Stage.LLM, "masterplan") in reached
    first = recorder.report.first_failure
    for stage, point, checks in SINGLE_CALL_POINTS if single else FLOW_POINTS:
        if (stage, point) in reached:
            continue
        if first is not None:
            where = (
                first.stage.value if first.point in (None, first.stage.value) else f"{first.stage.value}/{first.point}"
            )
            recorder.skip(checks, point, f"by {first.id} at {where}", blocked=True)
        else:
            recorder.skip(checks, point, "not reached")
