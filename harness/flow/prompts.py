"""The prompts the flow sends. Deterministic: the same input always gives the same request
body, which is what lets a recorded cassette match on the body."""

from __future__ import annotations

import json
from collections.abc import Sequence

from harness.contract import ATOMIC_TOKEN_RANGE, Discovery

__all__ = [
    "BATCH_SYSTEM",
    "DISCOVERY_SYSTEM",
    "MASTERPLAN_SYSTEM",
    "SKELETON_SYSTEM",
    "batch_prompt",
    "discovery_prompt",
    "discovery_summary",
    "masterplan_prompt",
    "skeleton_prompt",
]

DISCOVERY_SYSTEM = """You are a domain-driven design analyst. Read the user's project request and answer with one JSON object, nothing else, with these keys:
- "domain": the business domain in a few words;
- "bounded_contexts", "aggregates", "value_objects", "domain_events", "services": lists of objects, each with at least "name" and "description";
- optionally "assumptions" and "risks": lists of strings."""

MASTERPLAN_SYSTEM = f"""You are a senior engineer planning the implementation of a project from its domain discovery. Answer with one JSON object, nothing else, with these keys:
"project_name", "description", "tech_stack" (object), "architecture_style", "total_tasks" (the number of tasks you list), "estimated_cost_usd", "estimated_duration_minutes", and "phases": a list of phases, each with "phase_number", "name", "description" and "milestones"; each milestone has "milestone_number", "name", "description" and "tasks". Each task has "task_number" (unique across the whole plan, starting at 1), "title", "description", "complexity" ("low", "medium" or "high"), "depends_on" (task numbers of earlier tasks), "target_files" and "estimated_tokens".
Every task must be atomic: between {ATOMIC_TOKEN_RANGE[0]} and {ATOMIC_TOKEN_RANGE[1]} estimated output tokens of code. Aim for about 120 tasks."""


def discovery_prompt(user_request: str) -> str:
    """The user turn of the discovery call."""
    return f"Project request:\n{user_request.strip()}"


def discovery_summary(discovery: Discovery) -> str:
    """A short text describing a discovery, for example retrieval."""
    contexts = ", ".join(context.name for context in discovery.bounded_contexts)
    aggregates = ", ".join(aggregate.name for aggregate in discovery.aggregates)
    return f"{discovery.domain}. Bounded contexts: {contexts}. Aggregates: {aggregates}."


def masterplan_prompt(user_request: str, discovery: Discovery, examples: Sequence[str]) -> str:
    """The user turn of the masterplan call: the request, the discovery, similar example plans."""
    parts = [
        f"Project request:\n{user_request.strip()}",
        "Discovery:\n" + json.dumps(discovery.model_dump(mode="json"), indent=1, sort_keys=True),
    ]
    if examples:
        parts.append("Outlines of similar plans, for reference only:\n" + "\n\n".join(examples))
    parts.append("Write the masterplan now.")
    return "\n\n".join(parts)


SKELETON_SYSTEM = f"""You are a senior engineer planning the implementation of a project from its domain discovery. The plan is written in two steps; this is the first: its skeleton, without tasks. Answer with one JSON object, nothing else, with these keys:
"project_name", "description", "tech_stack" (object), "architecture_style", "total_tasks" (the sum of the milestones' task counts), "estimated_cost_usd", "estimated_duration_minutes", and "phases": a list of phases, each with "phase_number", "name", "description" and "milestones"; each milestone has "milestone_number", "name", "description", "task_count" (how many tasks it will get) and "scope" (one sentence on what its tasks cover).
Every task will be atomic: between {ATOMIC_TOKEN_RANGE[0]} and {ATOMIC_TOKEN_RANGE[1]} estimated output tokens of code. Aim for about 120 tasks in total."""

BATCH_SYSTEM = f"""You are a senior engineer writing the tasks of an implementation plan whose skeleton is fixed. Write exactly the tasks you are asked for, numbered exactly as asked. Answer with one JSON object, nothing else: {{"tasks": [...]}}. Each task has "task_number", "title", "description", "complexity" ("low", "medium" or "high"), "depends_on" (numbers of tasks that come before it: from earlier batches or earlier in this one), "target_files" and "estimated_tokens".
Every task must be atomic: between {ATOMIC_TOKEN_RANGE[0]} and {ATOMIC_TOKEN_RANGE[1]} estimated output tokens of code."""


def skeleton_prompt(user_request: str, discovery: Discovery, examples: Sequence[str]) -> str:
    """The user turn of the skeleton call: the same material as a single-call plan."""
    return masterplan_prompt(user_request, discovery, examples).removesuffix("Write the masterplan now.") + (
        "Write the skeleton of the masterplan now."
    )


def batch_prompt(
    user_request: str,
    discovery: Discovery,
    skeleton: dict,
    earlier_titles: Sequence[tuple[int, str]],
    assignment: Sequence[tuple[str, str, int, int]],
    batch_number: int,
    batch_total: int,
) -> str:
    """The user turn of one batch call: the plan so far and the task numbers this batch must fill.

    ``assignment`` lists ``(milestone label, scope, first task number, last task number)``.
    """
    outline = json.dumps(skeleton, indent=1, sort_keys=True)
    parts = [
        f"Project request:\n{user_request.strip()}",
        "Discovery:\n" + json.dumps(discovery.model_dump(mode="json"), indent=1, sort_keys=True),
        "Plan skeleton:\n" + outline,
    ]
    if earlier_titles:
        parts.append("Tasks already written:\n" + "\n".join(f"{n}. {title}" for n, title in earlier_titles))
    lines = [
        f"- tasks {first}-{last}: {label} ({scope})" if scope else f"- tasks {first}-{last}: {label}"
        for label, scope, first, last in assignment
    ]
    first, last = assignment[0][2], assignment[-1][3]
    parts.append(f"Batch {batch_number} of {batch_total}: write tasks {first} to {last}.\n" + "\n".join(lines))
    return "\n\n".join(parts)
