"""System prompts and prompt builders for discovery and masterplan generation."""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "DISCOVERY_SYSTEM_PROMPT",
    "MASTERPLAN_SYSTEM_PROMPT",
    "build_discovery_prompt",
    "build_masterplan_prompt",
]

DISCOVERY_SYSTEM_PROMPT = """You are an expert in domain-driven design. Analyse the user's project request and \
answer with a JSON object with these keys: "domain" (string), "bounded_contexts", "aggregates", "value_objects", \
"domain_events", "services" (lists of objects with at least "name" and "description"), and optionally \
"assumptions" and "risks" (lists of strings). Answer with the JSON only."""

MASTERPLAN_SYSTEM_PROMPT = """You are a principal engineer. From a domain discovery, write the complete \
implementation masterplan as one JSON object: "project_name", "description", "tech_stack" (object), \
"architecture_style", "total_tasks", "estimated_cost_usd", "estimated_duration_minutes" and "phases": each phase has \
"phase_number", "name", "description", "milestones"; each milestone has "milestone_number", "name", "description", \
"tasks"; each task has "task_number" (unique in the plan), "title", "description", "complexity" (low, medium or \
high), "depends_on" (task numbers), "target_files" and "estimated_tokens". Tasks must be ultra-atomic: 200 to 800 \
tokens of code each. Plan about 120 tasks. Answer with the JSON only."""


def build_discovery_prompt(user_request: str) -> str:
    return f"Project request from the user:\n\n{user_request.strip()}\n\nWrite the discovery document."


def build_masterplan_prompt(user_request: str, discovery: dict[str, Any]) -> str:
    document = json.dumps(discovery, indent=2, sort_keys=True, ensure_ascii=False)
    return (
        f"Project request from the user:\n\n{user_request.strip()}\n\n"
        f"Domain discovery:\n\n{document}\n\nWrite the masterplan."
    )
