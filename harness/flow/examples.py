"""Example plan outlines the masterplan generator retrieves by similarity.

Embeddings of the discovery summary and of each outline's description come from one
OpenAI embeddings call; the closest outlines go into the prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["EXAMPLE_PLANS", "ExamplePlan", "closest"]


@dataclass(frozen=True)
class ExamplePlan:
    """A past plan, summarised: what it was for and how it was shaped."""

    name: str
    description: str
    outline: str


EXAMPLE_PLANS: tuple[ExamplePlan, ...] = (
    ExamplePlan(
        "Issue tracker",
        "Projects, issues with states and assignees, comments, notifications, REST API and web UI.",
        "1 Foundation (repo, CI, DB schema) → 2 Core domain (projects, issues, workflow) → "
        "3 Collaboration (comments, mentions, notifications) → 4 Delivery (UI, deployment); 118 tasks.",
    ),
    ExamplePlan(
        "Online store",
        "Catalogue, cart, checkout with payments, orders, inventory and shipping, admin back office.",
        "1 Foundation → 2 Catalogue and inventory → 3 Cart and checkout (payments, taxes) → "
        "4 Orders and fulfilment → 5 Admin and launch; 126 tasks.",
    ),
    ExamplePlan(
        "Appointment booking",
        "Providers with schedules, patients or customers booking slots, reminders, cancellations, billing.",
        "1 Foundation → 2 Scheduling (availability, slots) → 3 Booking and reminders → "
        "4 Billing and reporting → 5 Hardening and launch; 112 tasks.",
    ),
    ExamplePlan(
        "Analytics dashboard",
        "Event ingestion, aggregation jobs, metric definitions, dashboards with charts, sharing and alerts.",
        "1 Ingestion pipeline → 2 Storage and aggregation → 3 Query API → 4 Dashboards and alerts; 104 tasks.",
    ),
)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def closest(query: Sequence[float], candidates: Sequence[Sequence[float]], k: int) -> list[int]:
    """Indexes of the ``k`` candidates most similar to ``query``, best first (ties by index)."""
    scored = sorted(range(len(candidates)), key=lambda i: (-_cosine(query, candidates[i]), i))
    return scored[:k]
