"""Probe points of the masterplan flow: one module per stage, each owning its check IDs.

========  ===========================================================
module    what its checks establish
========  ===========================================================
env       required settings present and well-formed
db        database reachable, authenticated, existing, schema present
auth      the request carries a user id and a session id
llm       each LLM call accepted, answered, complete
parse     JSON extracted, contract met, plan coherent
persist   saved rows visible to a new connection, as generated
========  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping

from probes import auth, db, env, llm, parse, persist
from probes.core import Check, Classifier, Stage

__all__ = ["ALL_CHECKS", "CLASSIFIERS", "check_by_id"]

#: Every check the harness can report, in stage order; IDs are never renumbered or reused.
ALL_CHECKS: tuple[Check, ...] = (*env.CHECKS, *db.CHECKS, *auth.CHECKS, *llm.CHECKS, *parse.CHECKS, *persist.CHECKS)

#: How each stage explains an exception raised inside it.
CLASSIFIERS: Mapping[Stage, Classifier] = {
    Stage.ENV: env.classify,
    Stage.DB: db.classify,
    Stage.AUTH: auth.classify,
    Stage.LLM: llm.classify,
    Stage.PARSE: parse.classify,
    Stage.PERSIST: persist.classify,
}


def check_by_id(check_id: str) -> Check:
    """The check with this ID (case-insensitive); ``KeyError`` naming close matches if unknown."""
    wanted = check_id.strip().upper()
    for check in ALL_CHECKS:
        if check.id == wanted:
            return check
    prefix = "".join(ch for ch in wanted if ch.isalpha())
    close = [check.id for check in ALL_CHECKS if check.id.startswith(prefix)][:8]
    raise KeyError(f"unknown check ID {check_id!r}" + (f"; {prefix} checks are: {', '.join(close)}" if close else ""))
