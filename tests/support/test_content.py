"""Cassette content follows the JSON contract, reads like a real plan, and its mutators inject exactly one fault."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support.content import (
    PROJECTS,
    discovery_for,
    iter_tasks,
    masterplan_for,
    render_reply,
    request_for,
    truncate_text,
    with_cycle,
    with_dangling_dependency,
    with_duplicate_task_number,
    with_wrong_total,
    without_fields,
)

KINDS = sorted(PROJECTS)
DISCOVERY_LISTS = ("bounded_contexts", "aggregates", "value_objects", "domain_events", "services")
PLAN_FIELDS = (
    "project_name", "description", "tech_stack", "architecture_style", "total_tasks",
    "estimated_cost_usd", "estimated_duration_minutes", "phases",
)  # fmt: skip
TASK_FIELDS = ("task_number", "title", "description", "complexity", "depends_on", "target_files", "estimated_tokens")


def milestone_of(plan: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """Task number → (phase number, milestone number)."""
    return {
        task["task_number"]: (phase["phase_number"], milestone["milestone_number"])
        for phase in plan["phases"]
        for milestone in phase["milestones"]
        for task in milestone["tasks"]
    }


def find_cycle(plan: dict[str, Any]) -> list[int] | None:
    """A dependency cycle of the plan, if there is one (dangling numbers are ignored)."""
    graph = {task["task_number"]: task["depends_on"] for task in iter_tasks(plan)}
    state: dict[int, int] = {}
    stack: list[int] = []

    def visit(node: int) -> list[int] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :]
            if nxt in graph and nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


def extract(text: str, style: str) -> str:
    """The JSON part of a rendered reply, found the way a tolerant extractor would."""
    if style == "fenced":
        match = re.search(r"```json\n(.*?)\n```", text, re.DOTALL)
        assert match
        return match.group(1)
    return text[text.index("{") : text.rindex("}") + 1]


# --------------------------------------------------------------------------- projects


def test_there_are_at_least_three_kinds() -> None:
    """The task manager, online shop and clinic booking kinds all exist with a request sentence."""
    assert {"task_manager", "online_shop", "clinic_booking"} <= set(PROJECTS)
    for kind in KINDS:
        assert len(request_for(kind).split()) > 15 and request_for(kind).endswith(".")


@pytest.mark.parametrize("kind", KINDS)
def test_discovery_follows_the_contract(kind: str) -> None:
    """A discovery has a domain, the five named lists, and assumptions and risks as strings."""
    doc = discovery_for(kind)
    assert isinstance(doc["domain"], str) and doc["domain"]
    for key in DISCOVERY_LISTS:
        assert len(doc[key]) >= 3, key
        assert all(item["name"] and item["description"] for item in doc[key]), key
    contexts = {item["name"] for item in doc["bounded_contexts"]}
    assert all(agg["bounded_context"] in contexts and agg["entities"] for agg in doc["aggregates"])
    aggregates = {agg["name"] for agg in doc["aggregates"]}
    assert all(event["aggregate"] in aggregates and event["trigger"] for event in doc["domain_events"])
    assert all(isinstance(item, str) for item in doc["assumptions"] + doc["risks"])


@pytest.mark.parametrize("kind", KINDS)
def test_masterplan_follows_the_contract(kind: str) -> None:
    """A masterplan has every top-level field with the right types and every task every field."""
    plan = masterplan_for(kind)
    assert list(plan) == list(PLAN_FIELDS)
    assert set(plan["tech_stack"]) == {"backend", "frontend", "database", "infrastructure", "testing"}
    assert isinstance(plan["estimated_cost_usd"], float) and plan["estimated_cost_usd"] > 0
    assert isinstance(plan["estimated_duration_minutes"], int) and plan["estimated_duration_minutes"] > 0
    assert 3 <= len(plan["phases"]) <= 5
    for phase_number, phase in enumerate(plan["phases"], start=1):
        assert phase["phase_number"] == phase_number and phase["name"] and phase["description"]
        assert 2 <= len(phase["milestones"]) <= 4
        for milestone_number, milestone in enumerate(phase["milestones"], start=1):
            assert milestone["milestone_number"] == milestone_number and milestone["name"] and milestone["tasks"]
    for task in iter_tasks(plan):
        assert tuple(task) == TASK_FIELDS
        assert task["complexity"] in {"low", "medium", "high"}
        assert task["target_files"] and all(path and not path.startswith("/") for path in task["target_files"])


@pytest.mark.parametrize("kind", KINDS)
def test_masterplan_semantics(kind: str) -> None:
    """Numbers run 1..N without gaps, total matches, dependencies point backwards, no cycle, atomic sizes."""
    plan = masterplan_for(kind)
    tasks = list(iter_tasks(plan))
    numbers = [task["task_number"] for task in tasks]
    assert 100 <= len(tasks) <= 130
    assert numbers == list(range(1, len(tasks) + 1))
    assert plan["total_tasks"] == len(tasks)
    for task in tasks:
        assert all(1 <= dep < task["task_number"] for dep in task["depends_on"]), task["task_number"]
        assert task["depends_on"] == sorted(set(task["depends_on"]))
        assert 200 <= task["estimated_tokens"] <= 800
    assert find_cycle(plan) is None
    assert len({task["title"] for task in tasks}) == len(tasks)


@pytest.mark.parametrize("kind", KINDS)
def test_dependencies_cross_milestones_and_phases(kind: str) -> None:
    """Some dependencies reach into another milestone, and some into another phase."""
    plan = masterplan_for(kind)
    where = milestone_of(plan)
    pairs = [(where[task["task_number"]], where[dep]) for task in iter_tasks(plan) for dep in task["depends_on"]]
    assert any(mine != theirs for mine, theirs in pairs)
    assert any(mine[0] != theirs[0] for mine, theirs in pairs)


def test_projects_differ_and_builds_are_deterministic() -> None:
    """Each kind has its own plan; building twice gives equal, independent copies."""
    plans = [masterplan_for(kind) for kind in KINDS]
    assert len({plan["project_name"] for plan in plans}) == len(KINDS)
    assert len({plan["tech_stack"]["backend"] for plan in plans}) == len(KINDS)
    again = masterplan_for(KINDS[0])
    assert again == plans[0]
    again["phases"].clear()
    assert masterplan_for(KINDS[0]) == plans[0]


def test_unknown_kind_names_the_known_ones() -> None:
    """Asking for an unknown kind raises KeyError listing the kinds that exist."""
    with pytest.raises(KeyError, match="task_manager"):
        masterplan_for("spaceship")


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("style", ["plain", "fenced", "prose"])
@pytest.mark.parametrize("builder", [discovery_for, masterplan_for], ids=["discovery", "masterplan"])
def test_render_round_trips(style: str, builder: Any) -> None:
    """Each reply style contains the document, recoverable with json.loads of the extracted part."""
    doc = builder("online_shop")
    text = render_reply(doc, style)  # type: ignore[arg-type]
    assert json.loads(extract(text, style)) == doc
    if style == "plain":
        assert text.startswith("{")
    else:
        assert not text.startswith("{") and not text.rstrip().endswith("}")
    if style == "fenced":
        assert "```json" in text
    if style == "prose":
        assert "```" not in text and text.count("\n\n") >= 3


def test_render_rejects_unknown_style() -> None:
    """An unknown style is a ValueError."""
    with pytest.raises(ValueError):
        render_reply({"domain": "x"}, "yaml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- mutators


def test_without_fields_removes_top_level_and_nested_paths() -> None:
    """Dotted paths with indices remove exactly those fields from a copy."""
    plan = masterplan_for("task_manager")
    broken = without_fields(plan, "total_tasks", "phases[0].milestones[1].tasks[0].title", "phases.1.name")
    assert "total_tasks" not in broken and "total_tasks" in plan
    assert "title" not in broken["phases"][0]["milestones"][1]["tasks"][0]
    assert "name" not in broken["phases"][1]
    assert sum("title" not in task for task in iter_tasks(broken)) == 1


def test_without_fields_wildcards_and_missing_paths() -> None:
    """A [*] path removes the field everywhere; a path matching nothing raises KeyError."""
    doc = discovery_for("clinic_booking")
    broken = without_fields(doc, "aggregates[*].name")
    assert all("name" not in agg for agg in broken["aggregates"]) and doc["aggregates"][0]["name"]
    with pytest.raises(KeyError):
        without_fields(doc, "no_such_field")
    with pytest.raises(KeyError):
        without_fields(doc, "aggregates[99].name")


def test_with_dangling_dependency() -> None:
    """Exactly one dependency names a task that does not exist; nothing else changes."""
    plan = masterplan_for("online_shop")
    broken = with_dangling_dependency(plan)
    numbers = {task["task_number"] for task in iter_tasks(broken)}
    dangling = [(t["task_number"], d) for t in iter_tasks(broken) for d in t["depends_on"] if d not in numbers]
    assert len(dangling) == 1
    assert broken["total_tasks"] == plan["total_tasks"] and find_cycle(broken) is None
    assert find_cycle(plan) is None and all(
        d in numbers for t in iter_tasks(plan) for d in t["depends_on"]
    )  # original untouched


def test_with_cycle() -> None:
    """A three-task cycle appears and every dependency still resolves."""
    broken = with_cycle(masterplan_for("clinic_booking"))
    cycle = find_cycle(broken)
    assert cycle is not None and len(cycle) == 3
    numbers = {task["task_number"] for task in iter_tasks(broken)}
    assert all(d in numbers for t in iter_tasks(broken) for d in t["depends_on"])


def test_with_wrong_total() -> None:
    """total_tasks disagrees with the task count by the given delta."""
    plan = masterplan_for("task_manager")
    assert with_wrong_total(plan)["total_tasks"] == plan["total_tasks"] + 7
    assert with_wrong_total(plan, -12)["total_tasks"] == plan["total_tasks"] - 12
    with pytest.raises(ValueError):
        with_wrong_total(plan, 0)


def test_with_duplicate_task_number() -> None:
    """One task number appears twice, while the count and every dependency stay valid."""
    plan = masterplan_for("task_manager")
    broken = with_duplicate_task_number(plan)
    numbers = [task["task_number"] for task in iter_tasks(broken)]
    assert len(numbers) - len(set(numbers)) == 1
    assert broken["total_tasks"] == len(numbers)
    present = set(numbers)
    assert all(d in present for t in iter_tasks(broken) for d in t["depends_on"])


def test_truncate_text_cuts_mid_json() -> None:
    """A truncated reply keeps the given fraction and no longer parses."""
    text = render_reply(masterplan_for("online_shop"))
    cut = truncate_text(text, 0.6)
    assert text.startswith(cut) and abs(len(cut) - 0.6 * len(text)) <= 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut)
    with pytest.raises(ValueError):
        truncate_text(text, 1.0)
