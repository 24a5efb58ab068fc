"""Outlines of plans that went well, offered to the model as references."""

from __future__ import annotations

__all__ = ["EXAMPLE_OUTLINES"]

EXAMPLE_OUTLINES: tuple[str, ...] = (
    (
        "Event ticketing platform: foundation (repo, CI, auth), catalogue of events and venues, seat reservation with "
        "expiring holds, payments and refunds, organiser dashboard, load testing before launch. 96 tasks."
    ),
    (
        "Subscription box shop: accounts and addresses, product catalogue with variants, recurring billing through a "
        "payment provider, fulfilment exports, customer self-service portal, analytics. 118 tasks."
    ),
    (
        "Field service scheduling: technicians and skills, job intake, route-aware scheduling, mobile job sheets with "
        "offline sync, invoicing, customer notifications by SMS and email. 124 tasks."
    ),
    (
        "Internal knowledge base: spaces and permissions, markdown editor with revisions, full-text search, "
        "single sign-on, audit log, export and retention policies. 88 tasks."
    ),
    (
        "Restaurant table booking: venues and floor plans, availability engine, booking widget, deposits, waitlist, "
        "reminders and no-show handling, staff console. 102 tasks."
    ),
)
