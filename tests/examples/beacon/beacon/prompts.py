"""What beacon asks Claude. Deterministic: the same inputs give the same prompt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["BATCH_SYSTEM", "DISCOVERY_SYSTEM", "SKELETON_SYSTEM", "batch_prompt", "discovery_prompt", "skeleton_prompt"]

DISCOVERY_SYSTEM = (
    "You analyse software project requests with domain-driven design. Reply with a single JSON object: "
    '"domain" (string), and lists of objects with "name" and "description" for "bounded_contexts", "aggregates", '
    '"value_objects", "domain_events" and "services"; optional "assumptions" and "risks" (lists of strings).'
)

SKELETON_SYSTEM = (
    "You plan software projects. Reply with a single JSON object, the plan's skeleton without tasks: "
    '"project_name", "description", "tech_stack" (object), "architecture_style", "total_tasks", '
    '"estimated_cost_usd", "estimated_duration_minutes", and "phases" (each with "phase_number", "name", '
    '"description", "milestones"; each milestone with "milestone_number", "name", "description", "task_count" and '
    '"scope"). total_tasks is the sum of the task counts. Aim for about 120 tasks of 200 to 800 tokens of code each.'
)

BATCH_SYSTEM = (
    "You write the tasks of a project plan whose skeleton is fixed. Reply with a single JSON object "
    '{"tasks": [...]}, exactly the task numbers you are asked for. Each task has "task_number", "title", '
    '"description", "complexity" (low, medium or high), "depends_on" (numbers of earlier tasks), "target_files" '
    'and "estimated_tokens" (200 to 800).'
)


def discovery_prompt(request: str) -> str:
    return f"Project request:\n{request.strip()}"


def skeleton_prompt(request: str, discovery: dict[str, Any], examples: Sequence[str]) -> str:
    parts = [f"Project request:\n{request.strip()}", "Discovery:\n" + json.dumps(discovery, indent=1, sort_keys=True)]
    if examples:
        parts.append("Plans of similar projects, for reference:\n" + "\n".join(f"- {e}" for e in examples))
    parts.append("Write the skeleton.")
    return "\n\n".join(parts)


def batch_prompt(
    request: str,
    skeleton: dict[str, Any],
    assignment: Sequence[tuple[str, int, int]],
    written: Sequence[tuple[int, str]],
) -> str:
    """``assignment``: (milestone, first, last) ranges to write; ``written``: tasks of earlier batches."""
    parts = [f"Project request:\n{request.strip()}", "Skeleton:\n" + json.dumps(skeleton, indent=1, sort_keys=True)]
    if written:
        parts.append("Tasks already written:\n" + "\n".join(f"{number}. {title}" for number, title in written))
    first, last = assignment[0][1], assignment[-1][2]
    lines = "\n".join(f"- {first_n}-{last_n}: {milestone}" for milestone, first_n, last_n in assignment)
    parts.append(f"Write tasks {first} to {last}:\n{lines}")
    return "\n\n".join(parts)
