"""Stage parse: the probes' own reading of an answer, independent of what the application did with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.contract import ContractError, parse_masterplan, parse_task_batch, plan_problems, skeleton_problems
from harness.flow.masterplan import PlanRejected
from harness.observe.code import AppCode, exception_info
from harness.observe.timeline import LLMExchange, Timeline
from probes import CLASSIFIERS, parse
from probes.context import Answer, ExchangeView, FlowContext, FlowFailure, PlanView
from probes.core import Finding, Outcome, Recorder, Stage
from probes.registry import REGISTRY
from tests.support import content
from tests.support.scenarios import batch_texts, skeleton_of

KIND = "online_shop"
PLAN = content.masterplan_for(KIND)


def _masterplan(text: str, point: str = "masterplan") -> tuple[list[Finding], Any]:
    """A single-call answer as the parse probes judge it: the document's checks, then the whole plan's."""
    findings, plan = parse.parse_answer("masterplan", text, point)
    if plan is not None:
        findings += parse.plan_findings(plan_problems(plan), point)
    return findings, plan


def _plan_ids(doc: dict[str, Any]) -> list[str]:
    return [finding.id for finding in _masterplan(json.dumps(doc))[0]]


@pytest.mark.parametrize("style", ["plain", "fenced", "prose"])
def test_realistic_plan_and_discovery_pass_in_every_style(style: str) -> None:
    """Bare, fenced and prose-wrapped answers of a realistic discovery, plan, skeleton and batches all pass."""
    findings, plan = _masterplan(content.render_reply(PLAN, style))
    assert findings == [] and plan is not None and plan.total_tasks == len(list(content.iter_tasks(PLAN)))
    findings, discovery = parse.parse_answer("discovery", content.render_reply(content.discovery_for(KIND), style), "d")
    assert findings == [] and discovery is not None and discovery.domain == content.discovery_for(KIND)["domain"]
    findings, skeleton = parse.parse_answer("skeleton", content.render_reply(skeleton_of(PLAN), style), "s")
    assert findings == [] and skeleton_problems(skeleton) == []
    earlier: list[Any] = []
    for number, text in enumerate(batch_texts(PLAN, style=style), start=1):
        findings, tasks = parse.parse_answer("batch", text, f"masterplan.batch-{number}")
        assert findings == [] and tasks
        assert parse.check_batch(tasks, f"masterplan.batch-{number}", earlier, skeleton.total_tasks) == []
        earlier += tasks
    assert len(earlier) == skeleton.total_tasks


def test_no_json_is_parse001() -> None:
    """An answer without an object is PARSE001 with the start of the text as evidence."""
    (finding,), document = parse.parse_answer("discovery", "I'm sorry, I can't help with that.", "discovery")
    assert document is None
    assert (finding.id, finding.point) == ("PARSE001", "discovery") and finding.evidence["head"].startswith("I'm sorry")


def test_cut_json_is_parse002_with_position_and_context() -> None:
    """Truncated JSON is PARSE002 with line, column and a context snippet."""
    text = content.truncate_text(content.render_reply(PLAN, "fenced"), 0.3)
    (finding,), _ = _masterplan(text)
    assert finding.id == "PARSE002"
    assert finding.evidence["line"] > 1 and finding.evidence["column"] >= 1 and finding.evidence["context"]


def test_missing_fields_are_parse003_with_paths() -> None:
    """Missing contract fields are PARSE003 naming each field path."""
    doc = content.without_fields(PLAN, "tech_stack", "phases[0].milestones[0].tasks[0].title")
    (finding,), _ = _masterplan(json.dumps(doc))
    paths = {field["path"] for field in finding.evidence["fields"]}
    assert finding.id == "PARSE003" and {"tech_stack", "phases.0.milestones.0.tasks.0.title"} <= paths


@pytest.mark.parametrize(
    ("mutate", "check"),
    [
        (content.with_wrong_total, "PARSE004"),
        (content.with_duplicate_task_number, "PARSE005"),
        (content.with_dangling_dependency, "PARSE006"),
        (content.with_cycle, "PARSE007"),
    ],
)
def test_each_plan_fault_has_its_check(mutate, check: str) -> None:
    """Each mutation of a realistic plan is reported by exactly its own check."""
    ids = _plan_ids(mutate(PLAN))
    assert check in ids
    assert set(ids) <= {check, "PARSE004"}  # a duplicate number may also change the count


def test_empty_milestone_is_parse008() -> None:
    """A milestone without tasks is PARSE008 naming it."""
    doc = json.loads(json.dumps(PLAN))
    moved = doc["phases"][0]["milestones"][0]["tasks"]
    doc["phases"][0]["milestones"][0]["tasks"] = []
    doc["phases"][0]["milestones"][1]["tasks"] = moved + doc["phases"][0]["milestones"][1]["tasks"]
    assert _plan_ids(doc) == ["PARSE008"]


def test_oversized_tasks_are_a_parse009_warning_with_outliers() -> None:
    """Tasks outside 200-800 tokens are a warning listing the outliers."""
    doc = json.loads(json.dumps(PLAN))
    doc["phases"][1]["milestones"][0]["tasks"][0]["estimated_tokens"] = 4000
    (finding,), _ = _masterplan(json.dumps(doc))
    assert finding.id == "PARSE009" and finding.level.name == "WARNING"
    assert finding.evidence["outliers"][0]["estimated_tokens"] == 4000


def test_the_atomicity_of_a_plan_is_summarised_against_the_range() -> None:
    """The task-size distribution shows the range, quartiles and how many tasks fall outside it."""
    doc = json.loads(json.dumps(PLAN))
    doc["phases"][0]["milestones"][0]["tasks"][0]["estimated_tokens"] = 90
    summary = parse.plan_atomicity(parse_masterplan(json.dumps(doc)))
    assert summary["range"] == [200, 800] and summary["tasks"] == len(list(content.iter_tasks(PLAN)))
    assert (summary["below"], summary["above"], summary["min"]) == (1, 0, 90)
    assert summary["min"] <= summary["p25"] <= summary["median"] <= summary["p75"] <= summary["max"] <= 800


def _batches() -> list[list[Any]]:
    return [parse_task_batch(text).tasks for text in batch_texts(PLAN)]


def test_batch_that_skips_numbers_is_parse010() -> None:
    """A batch whose numbering does not continue right after the earlier batches is PARSE010 at its point."""
    tasks = list(content.iter_tasks(PLAN))
    earlier = parse_task_batch(json.dumps({"tasks": tasks[:50]})).tasks
    skipped = [dict(task, task_number=task["task_number"] + 5) for task in tasks[50:60]]
    findings, batch = parse.parse_answer("batch", json.dumps({"tasks": skipped}), "masterplan.batch-2")
    findings += parse.check_batch(batch, "masterplan.batch-2", earlier, len(tasks))
    (finding,) = [f for f in findings if f.id == "PARSE010"]
    assert finding.evidence["first"] == 51 and finding.evidence["missing"][:5] == [51, 52, 53, 54, 55]
    assert all(f.point == "masterplan.batch-2" for f in findings)


def test_a_batch_is_judged_with_the_batches_before_it() -> None:
    """A dependency on an earlier batch's task is fine; on a task no batch holds it is PARSE006; a reused number PARSE005."""
    first, second = _batches()[:2]
    assert parse.check_batch(second, "masterplan.batch-2", first, None) == []
    dangling = [second[0].model_copy(update={"depends_on": [999]}), *second[1:]]
    assert [f.id for f in parse.check_batch(dangling, "masterplan.batch-2", first, None)] == ["PARSE006"]
    reused = [second[0].model_copy(update={"task_number": first[0].task_number}), *second[1:]]
    ids = [f.id for f in parse.check_batch(reused, "masterplan.batch-2", first, None)]
    assert "PARSE005" in ids


def test_the_flows_own_exceptions_are_explained_by_the_parse_checks() -> None:
    """A contract error or a rejected plan raised by the application is its parse check; anything else PARSE900."""
    with pytest.raises(ContractError) as caught:
        parse_masterplan("no json here")
    assert parse.classify(caught.value, "masterplan").id == "PARSE001"
    rejected = PlanRejected(plan_problems(parse_masterplan(json.dumps(content.with_cycle(PLAN)))))
    assert parse.classify(rejected, "masterplan").id == "PARSE007"
    assert parse.classify(KeyError("phases"), "masterplan").id == "PARSE900"


# -- the registered probes, as the judge runs them -----------------------------------------------------


def _exchange(text: str, *, stop_reason: str = "end_turn", output_tokens: int = 1234) -> LLMExchange:
    """An answered Messages exchange carrying ``text`` (the judge's input; what the watcher records)."""
    return LLMExchange(
        provider="anthropic",
        api="messages",
        method="POST",
        url="https://api.anthropic.com/v1/messages",
        request={"model": "claude-sonnet-4-6", "max_tokens": 16000},
        request_digest="0" * 16,
        model="claude-sonnet-4-6",
        max_tokens=16000,
        streamed=True,
        status=200,
        text=text,
        stop_reason=stop_reason,
        usage={"output_tokens": output_tokens},
        body_is_json=True,
        complete=True,
    )


def _probe(name: str) -> Any:
    return next(entry for entry in REGISTRY if entry.name == name)


def _context() -> FlowContext:
    return FlowContext(timeline=Timeline(), target=None, request=None, reader=None)


def _judge_answers(answers: list[tuple[str, str, str]], ctx: FlowContext | None = None) -> Recorder:
    """Exchange and answer probes over answers ``(kind, point, text)``, in order, as the judge walks them."""
    ctx = ctx or _context()
    recorder = Recorder(CLASSIFIERS)
    views = [ExchangeView(_exchange(text), point, kind) for kind, point, text in answers]
    for view in views:
        recorder.run_probe(_probe("probes.llm.call_answered"), view.point, ctx, view)
    for view in views:
        answer = Answer(view)
        for name in ("probes.parse.document", "probes.parse.skeleton", "probes.parse.batch"):
            entry = _probe(name)
            if entry.wants(view.kind):
                recorder.run_probe(entry, view.point, ctx, answer)
    return recorder


def _at(recorder: Recorder, point: str) -> dict[str, tuple[Outcome, str | None]]:
    return {o.check.id: (o.outcome, o.reason) for o in recorder.report.outcomes if o.point == point}


def test_an_answer_without_json_fails_parse001_and_leaves_the_rest_undecided() -> None:
    """The document probe decides in order: no JSON fails PARSE001, and decoding and fields are blocked, not passed."""
    recorder = _judge_answers([("discovery", "discovery", "Sorry, I can only answer in prose today.")])
    outcomes = _at(recorder, "discovery")
    assert outcomes["PARSE001"] == (Outcome.FAILED, None)
    assert outcomes["PARSE002"] == outcomes["PARSE003"] == (Outcome.BLOCKED, "by PARSE001")


def test_a_truncated_answer_is_judged_at_the_llm_stage_not_parsed() -> None:
    """An answer cut at max_tokens fails LLM001; the parse checks of that answer are blocked by it."""
    recorder = Recorder(CLASSIFIERS)
    text = content.truncate_text(content.render_reply(PLAN), 0.5)
    view = ExchangeView(_exchange(text, stop_reason="max_tokens"), "masterplan", "masterplan")
    recorder.run_probe(_probe("probes.llm.call_answered"), "masterplan", _context(), view)
    recorder.run_probe(_probe("probes.parse.document"), "masterplan", _context(), Answer(view))
    outcomes = _at(recorder, "masterplan")
    assert outcomes["LLM001"] == (Outcome.FAILED, None)
    assert {outcomes[check] for check in ("PARSE001", "PARSE002", "PARSE003")} == {(Outcome.BLOCKED, "by LLM001")}
    assert recorder.report.verdict == "llm:LLM001"


def test_a_batched_plan_is_judged_batch_by_batch_with_its_skeleton() -> None:
    """Each batch is judged with the skeleton and the batches before it; one that repeats numbers fails at its own point."""
    texts = batch_texts(PLAN)
    repeated = json.loads(texts[1])
    repeated["tasks"][0]["task_number"] = repeated["tasks"][1]["task_number"]
    answers = [
        ("skeleton", "masterplan.skeleton", json.dumps(skeleton_of(PLAN))),
        ("batch", "masterplan.batch-1", texts[0]),
        ("batch", "masterplan.batch-2", json.dumps(repeated)),
        *(("batch", f"masterplan.batch-{n}", text) for n, text in enumerate(texts[2:], start=3)),
    ]
    ctx = _context()
    recorder = _judge_answers(answers, ctx)
    assert {o for o, _ in _at(recorder, "masterplan.skeleton").values()} == {Outcome.PASSED}
    assert {o for o, _ in _at(recorder, "masterplan.batch-1").values()} == {Outcome.PASSED}
    second = _at(recorder, "masterplan.batch-2")
    assert second["PARSE005"] == (Outcome.FAILED, None) and second["PARSE010"] == (Outcome.FAILED, None)
    assert recorder.report.verdict == "parse:PARSE010"
    last = f"masterplan.batch-{len(texts)}"  # judged after every earlier batch: its numbers and dependencies follow
    assert len(texts) >= 3 and {o for o, _ in _at(recorder, last).values()} == {Outcome.PASSED}
    assert ctx.state["parse"]["skeleton"].total_tasks == len(list(content.iter_tasks(PLAN)))


def test_the_whole_plan_probe_judges_every_plan_check_on_its_own() -> None:
    """A cycle in a whole plan fails PARSE007 while the plan's other checks pass; the atomicity summary is kept."""
    plan = parse_masterplan(json.dumps(content.with_cycle(PLAN)))
    recorder = Recorder(CLASSIFIERS)
    recorder.run_probe(
        _probe("probes.parse.whole_plan"), "masterplan", _context(), PlanView(plan, "masterplan", 9, False)
    )
    outcomes = _at(recorder, "masterplan")
    assert outcomes.pop("PARSE007") == (Outcome.FAILED, None)
    assert set(outcomes.values()) == {(Outcome.PASSED, None)} and len(outcomes) == 5


# -- the application's code failing on an answer (PARSE101) --------------------------------------------


def _failure(follows: str | None = None) -> FlowFailure:
    try:
        json.loads("{'single': 'quotes'}")
    except ValueError as exc:
        error = exception_info(exc, AppCode([Path(__file__).parent]))
    view = ExchangeView(_exchange('{"domain": "x"}', output_tokens=321), "discovery", "discovery")
    return FlowFailure(Stage.PARSE, "after_answer", error, "discovery", last_answer=view, follows=follows)


def test_code_that_failed_on_an_answer_is_parse101_naming_the_answer_and_the_line() -> None:
    """The app's own parsing raising after a good answer is PARSE101 with the answer's summary and the app's line."""
    ctx = _context()
    ctx.failure = _failure()
    (finding,) = parse.code_handled_answer(ctx, None)
    assert (finding.id, finding.point) == ("PARSE101", "discovery")
    assert finding.message.startswith("The LLM answered (end_turn, 321 output tokens), then your code failed at ")
    assert finding.evidence["location"].startswith("probes/test_parse.py:") and "JSONDecodeError" in finding.message
    assert finding.evidence["answer_point"] == "discovery"


def test_a_parse_failure_that_follows_an_earlier_finding_is_not_a_finding_of_its_own() -> None:
    """When the answer was already judged bad, the app's failure on it is not applicable, naming what it follows."""
    ctx = _context()
    ctx.failure = _failure(follows="PARSE003 at parse/discovery")
    recorder = Recorder(CLASSIFIERS)
    recorder.run_probe(_probe("probes.parse.code_handled_answer"), "flow", ctx, None)
    (outcome,) = recorder.report.outcomes
    assert (outcome.check.id, outcome.outcome) == ("PARSE101", Outcome.NOT_APPLICABLE)
    assert outcome.reason == "the flow's JSONDecodeError followed PARSE003 at parse/discovery"
