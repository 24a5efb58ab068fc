"""The prompts the flow sends. Deterministic: the same input always gives the same request
body, which is what lets a recorded cassette match on the body."""

from __future__ import annotations

import json
from collections.abc import Sequence

from harness.contract import ATOMIC_TOKEN_RANGE, Discovery

__all__ = ["DISCOVERY_SYSTEM", "MASTERPLAN_SYSTEM", "discovery_prompt", "discovery_summary", "masterplan_prompt"]

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
