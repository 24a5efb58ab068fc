"""Property-based tests: extraction, parsing and validation turn any input into a finding or a document, never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.contract import (
    ContractError,
    assemble_plan,
    extract_json,
    parse_discovery,
    parse_masterplan,
    parse_skeleton,
    parse_task_batch,
    plan_problems,
    skeleton_problems,
)
from probes import parse
from tests.support import content
from tests.support.scenarios import batch_texts, skeleton_of

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KIND = "task_manager"

#: Any JSON value, nested a little.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
#: Realistic answers: the discovery, the single-call plan, the skeleton and a batch, plain and fenced.
_PLAN = content.masterplan_for(KIND)
REALISTIC = [
    content.render_reply(content.discovery_for(KIND), "fenced"),
    content.render_reply(_PLAN),
    json.dumps(skeleton_of(_PLAN)),
    batch_texts(_PLAN)[0],
]


def _read(kind: str, text: str, point: str) -> tuple[list, object]:
    """An answer as the parse probes read it: its document's checks, then what they judge of the parsed document."""
    findings, document = parse.parse_answer(kind, text, point)
    if kind == "masterplan" and document is not None:
        findings += parse.plan_findings(plan_problems(document), point)
    elif kind == "skeleton" and document is not None:
        findings += parse.plan_findings(skeleton_problems(document), point)
    elif kind == "batch" and document is not None:
        findings += parse.check_batch(document, point, [], None)
    return findings, document


CHECKERS = [
    lambda text: _read("discovery", text, "discovery"),
    lambda text: _read("masterplan", text, "masterplan"),
    lambda text: _read("skeleton", text, "masterplan.skeleton"),
    lambda text: _read("batch", text, "masterplan.batch-1"),
]
PARSERS = [extract_json, parse_discovery, parse_masterplan, parse_skeleton, parse_task_batch]


def _finding_or_document(text: str) -> None:
    """Every checker returns findings or a document (or both), and every contract parser raises only ContractError."""
    for check in CHECKERS:
        findings, document = check(text)
        assert findings or document is not None
        assert all(f.stage.value == "parse" for f in findings)
    for parser in PARSERS:
        try:
            parser(text)
        except ContractError:
            pass


@BOUNDED
@given(st.text(max_size=400))
def test_any_string_is_a_finding_or_a_document(text: str) -> None:
    """Any string at all, fed to every parser and check, never raises anything but a contract error."""
    _finding_or_document(text)


@BOUNDED
@given(JSON_VALUES, st.sampled_from(["{}", "```json\n{}\n```", "Here it is: {} — done."]))
def test_any_json_value_is_a_finding_or_a_document(value: object, frame: str) -> None:
    """Any JSON value, bare, fenced or in prose, is a finding or a document."""
    _finding_or_document(frame.replace("{}", json.dumps(value)))


@BOUNDED
@given(st.sampled_from(REALISTIC), st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_any_truncation_of_a_realistic_answer_is_a_finding(answer: str, fraction: float) -> None:
    """An answer cut anywhere (as max_tokens cuts it) is a finding or a document, never a crash."""
    _finding_or_document(answer[: int(len(answer) * fraction)])


@BOUNDED
@given(st.sampled_from(REALISTIC), st.data())
def test_any_single_character_damage_is_a_finding_or_a_document(answer: str, data: st.DataObject) -> None:
    """One character replaced anywhere in a realistic answer never crashes a parser."""
    index = data.draw(st.integers(min_value=0, max_value=len(answer) - 1))
    char = data.draw(st.sampled_from(list('{}[]",:0 \\x')))
    _finding_or_document(answer[:index] + char + answer[index + 1 :])


def _mutated_plan(data: st.DataObject) -> dict:
    """The realistic plan with a few task fields replaced by arbitrary JSON values."""
    plan = json.loads(json.dumps(_PLAN))
    tasks = [task for phase in plan["phases"] for milestone in phase["milestones"] for task in milestone["tasks"]]
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        task = data.draw(st.sampled_from(tasks))
        key = data.draw(st.sampled_from(sorted(task)))
        task[key] = data.draw(JSON_VALUES | st.integers(min_value=-3, max_value=len(tasks) + 3))
    return plan


@BOUNDED
@given(st.data())
def test_plan_problems_never_crash_on_a_plan_that_validated(data: st.DataObject) -> None:
    """Whatever a validated plan contains (cycles, gaps, self-links), plan_problems returns problems, not errors."""
    text = json.dumps(_mutated_plan(data))
    try:
        plan = parse_masterplan(text)
    except ContractError:
        return
    problems = plan_problems(plan)
    assert all(problem.kind for problem in problems)
    findings, document = _read("masterplan", text, "masterplan")
    assert document is not None and len(findings) == len(problems)


@pytest.mark.parametrize(
    ("answer", "kind", "point"),
    [
        (REALISTIC[0], "discovery", "discovery"),
        (REALISTIC[1], "masterplan", "masterplan"),
        (REALISTIC[2], "skeleton", "masterplan.skeleton"),
        (REALISTIC[3], "batch", "masterplan.batch-1"),
    ],
    ids=["discovery", "plan", "skeleton", "batch"],
)
def test_realistic_answers_parse_cleanly(answer: str, kind: str, point: str) -> None:
    """The undamaged answers the properties start from are clean documents of their kind (so the properties test damage)."""
    findings, document = _read(kind, answer, point)
    assert findings == [] and document is not None
    assert _read(kind, "", point)[0][0].id == "PARSE001"  # the simplest damage: nothing at all


def test_the_realistic_skeleton_and_all_its_batches_assemble_into_a_clean_plan() -> None:
    """The skeleton with every batch answer assembles into the realistic plan, with no problem at all."""
    skeleton = parse_skeleton(REALISTIC[2])
    tasks = [task for text in batch_texts(_PLAN) for task in parse_task_batch(text).tasks]
    plan = assemble_plan(skeleton, tasks)
    assert skeleton_problems(skeleton) == [] and plan_problems(plan) == []
    assert plan.total_tasks == len(tasks) == len(list(content.iter_tasks(_PLAN)))
