"""The JSON contract: extraction, validation and plan semantics."""

from __future__ import annotations

import json

import pytest

from harness.contract import (
    ContractViolation,
    JSONDecodeFailed,
    NoJSONFound,
    ProblemKind,
    extract_json,
    parse_discovery,
    parse_masterplan,
    plan_problems,
)


def _plan(tasks: list[dict], total: int | None = None) -> dict:
    return {
        "project_name": "Tasky",
        "tech_stack": {"backend": "fastapi"},
        "total_tasks": len(tasks) if total is None else total,
        "phases": [{"name": "Build", "milestones": [{"name": "Core", "tasks": tasks}]}],
    }


def _task(number: int, deps: list[int] = (), tokens: int = 400) -> dict:
    return {"task_number": number, "title": f"Task {number}", "depends_on": list(deps), "estimated_tokens": tokens}


def test_bare_fenced_and_prose_wrapped_json_all_extract() -> None:
    """The same object comes out of bare JSON, a fenced block, and prose around it."""
    doc = {"a": [1, 2, {"b": "c}"}]}
    text = json.dumps(doc)
    assert extract_json(text) == doc
    assert extract_json(f"Here you go:\n```json\n{text}\n```\nAnything else?") == doc
    assert extract_json(f"Sure! The plan is {text} and that is all.") == doc


def test_truncated_json_reports_line_column_and_context() -> None:
    """A cut-off answer fails with the position in the whole answer and the text around it."""
    text = 'Intro line\n```json\n{"project_name": "x",\n "phases": [{"name": "P'
    with pytest.raises(JSONDecodeFailed) as caught:
        extract_json(text)
    assert caught.value.line == 4
    assert caught.value.column > 1
    assert '"name": "P' in caught.value.context


def test_answer_without_json_is_reported_as_such() -> None:
    """Prose with no object at all is NoJSONFound, not a decode error."""
    with pytest.raises(NoJSONFound):
        extract_json("I cannot help with that request.")


def test_missing_discovery_fields_are_named_by_path() -> None:
    """Validation errors name every missing field path."""
    with pytest.raises(ContractViolation) as caught:
        parse_discovery(json.dumps({"domain": "Shop", "aggregates": [{"name": ""}]}))
    paths = {error["path"] for error in caught.value.errors}
    assert {"bounded_contexts", "value_objects", "domain_events", "services", "aggregates.0.name"} <= paths


def test_coherent_plan_has_no_problems() -> None:
    """A plan with continuous numbers and backward dependencies is clean."""
    plan = parse_masterplan(json.dumps(_plan([_task(1), _task(2, [1]), _task(3, [1, 2])])))
    assert plan_problems(plan) == []


@pytest.mark.parametrize(
    ("tasks", "total", "kind"),
    [
        ([_task(1), _task(2)], 3, ProblemKind.TOTAL_MISMATCH),
        ([_task(1), _task(1)], None, ProblemKind.DUPLICATE_TASK_NUMBER),
        ([_task(1), _task(2, [9])], None, ProblemKind.DANGLING_DEPENDENCY),
        ([_task(1, [3]), _task(2, [1]), _task(3, [2])], None, ProblemKind.DEPENDENCY_CYCLE),
        ([_task(1), _task(2, tokens=5000)], None, ProblemKind.NOT_ATOMIC),
    ],
)
def test_each_plan_problem_is_detected(tasks: list[dict], total: int | None, kind: ProblemKind) -> None:
    """Each kind of incoherence is reported as its own problem."""
    problems = plan_problems(parse_masterplan(json.dumps(_plan(tasks, total))))
    assert kind in {problem.kind for problem in problems}


def test_cycle_is_named_as_a_closed_path() -> None:
    """The cycle evidence lists the tasks in order, first repeated at the end."""
    plan = parse_masterplan(json.dumps(_plan([_task(1, [3]), _task(2, [1]), _task(3, [2])])))
    (problem,) = [p for p in plan_problems(plan) if p.kind is ProblemKind.DEPENDENCY_CYCLE]
    cycle = problem.evidence["cycle"]
    assert cycle[0] == cycle[-1] and set(cycle) == {1, 2, 3}


def test_empty_milestone_is_a_blocking_problem() -> None:
    """A milestone with no tasks blocks the plan."""
    doc = _plan([_task(1)])
    doc["phases"][0]["milestones"].append({"name": "Empty", "tasks": []})
    problems = plan_problems(parse_masterplan(json.dumps(doc)))
    assert [p.kind for p in problems if p.blocking] == [ProblemKind.EMPTY_CONTAINER]
