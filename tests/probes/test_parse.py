"""Stage parse: the probe's own reading of an answer, independent of the flow."""

from __future__ import annotations

import json

import pytest

from harness.recording import content
from probes import parse

PLAN = content.masterplan_for("online_shop")


def _plan_ids(doc: dict) -> list[str]:
    findings, _ = parse.check_masterplan_text(json.dumps(doc))
    return [finding.id for finding in findings]


def test_realistic_plan_and_discovery_pass_in_every_style() -> None:
    """Bare, fenced and prose-wrapped answers of a realistic plan all pass."""
    for style in ("plain", "fenced", "prose"):
        findings, plan = parse.check_masterplan_text(content.render_reply(PLAN, style))
        assert findings == [] and plan is not None
        findings, discovery = parse.check_discovery_text(
            content.render_reply(content.discovery_for("online_shop"), style)
        )
        assert findings == [] and discovery is not None


def test_no_json_is_parse001() -> None:
    """An answer without an object is PARSE001 with the start of the text as evidence."""
    (finding,), _ = parse.check_discovery_text("I'm sorry, I can't help with that.")
    assert finding.id == "PARSE001" and finding.evidence["head"].startswith("I'm sorry")


def test_cut_json_is_parse002_with_position_and_context() -> None:
    """Truncated JSON is PARSE002 with line, column and a context snippet."""
    text = content.truncate_text(content.render_reply(PLAN, "fenced"), 0.3)
    (finding,), _ = parse.check_masterplan_text(text)
    assert finding.id == "PARSE002"
    assert finding.evidence["line"] > 1 and finding.evidence["column"] >= 1 and finding.evidence["context"]


def test_missing_fields_are_parse003_with_paths() -> None:
    """Missing contract fields are PARSE003 naming each field path."""
    doc = content.without_fields(PLAN, "tech_stack", "phases[0].milestones[0].tasks[0].title")
    (finding,), _ = parse.check_masterplan_text(json.dumps(doc))
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
    (finding,), _ = parse.check_masterplan_text(json.dumps(doc))
    assert finding.id == "PARSE009" and finding.level.name == "WARNING"
    assert finding.evidence["outliers"][0]["estimated_tokens"] == 4000


def test_batch_that_skips_numbers_is_parse010() -> None:
    """A batch whose numbering does not continue right after the earlier batches is PARSE010."""
    from harness.contract import parse_task_batch

    tasks = list(content.iter_tasks(PLAN))
    earlier = parse_task_batch(json.dumps({"tasks": tasks[:50]})).tasks
    skipped = [dict(task, task_number=task["task_number"] + 5) for task in tasks[50:60]]
    findings, _ = parse.check_batch_text(json.dumps({"tasks": skipped}), "masterplan.batch-2", earlier, len(tasks))
    assert "PARSE010" in [finding.id for finding in findings]
    assert all(finding.point == "masterplan.batch-2" for finding in findings)
