"""The check registry: every probe declared once, with what it emits and what it requires.

As Django's ``core/checks``: a probe is a plain function returning findings, registered with
a decorator beside the checks it emits::

    @probe(Stage.DB, emits=(DB006,), requires=(DB004,))
    def columns(ctx: DBContext) -> list[Finding]:
        ...

The runner walks :data:`REGISTRY` instead of hand-written lists: for each stage and *scope*
(what a probe is given — the run's settings, one LLM exchange, one parsed answer, ...) it runs
the probes registered there, in registration order. A probe whose required check failed (or
was itself blocked) at the same point — or, failing that, anywhere earlier in the run — is
*blocked* by it; one whose requirement was skipped is skipped too; ``applies`` may say why a
probe does not apply (*not applicable*, shown as such, never as passed).

A probe that emits several checks decides them in order: when one fails, the checks it
emits after that one are left undecided (blocked by it) — unless it is ``independent``, in
which case each check is judged on its own (the env settings). Adding a check touches its
stage's module (and the docs); nothing else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from probes.core import Check, Finding, Stage

__all__ = ["REGISTRY", "Probe", "Scope", "needs_of", "probe", "probes_for"]


class Scope(str, enum.Enum):
    """What a probe function is given, and so how often it runs."""

    #: Once per run, before the flow: env, db, auth (``fn(ctx)``).
    PREFLIGHT = "preflight"
    #: Each generation call the application made (``fn(ctx, view)``, an :class:`ExchangeView`).
    EXCHANGE = "exchange"
    #: Each embeddings call (``fn(ctx, view)``).
    EMBEDDING = "embedding"
    #: Each call of an ``llm`` point, the application's own LLM wrapper (``fn(ctx, call)``).
    WRAPPER = "wrapper"
    #: Each time the flow's event loop stood still (``fn(ctx, stall)``, a :class:`LoopStalled`).
    STALL = "stall"
    #: Each answer the harness parsed itself (``fn(ctx, answer)``).
    ANSWER = "answer"
    #: Each whole plan, single-call or assembled from its batches (``fn(ctx, plan)``).
    PLAN = "plan"
    #: Each commit of a unit of work (``fn(ctx, commit)``, a :class:`UnitCommitted`).
    COMMIT = "commit"
    #: Each document the LLM produced, with the saved rows that hold it (``fn(ctx, document)``).
    DOCUMENT = "document"
    #: Each unit of work that ended, or was left open, with rows never committed (``fn(ctx, unit)``).
    UNIT = "unit"
    #: Once per run, after the flow, over everything it wrote (``fn(ctx)``).
    WRITES = "writes"
    #: Each call of a ``load`` point (``fn(ctx, call)``).
    LOAD = "load"
    #: Once, when the flow came back (``fn(ctx, ended)``).
    ENDED = "ended"


@dataclass(frozen=True)
class Probe:
    """One registered probe function."""

    name: str
    stage: Stage
    scope: Scope
    #: The checks this function decides, in the order it decides them.
    emits: tuple[Check, ...]
    #: Checks that must not have failed for this probe to run.
    requires: tuple[Check, ...]
    function: Callable[..., Sequence[Finding]]
    #: Each emitted check is judged on its own: one failing leaves the others decided.
    independent: bool = False
    #: ``fn(ctx, *item) -> reason`` when the probe does not apply here, ``None`` when it does.
    applies: Callable[..., str | None] | None = None
    #: Kinds of item the probe is for (``"discovery"``, ``"batch"``...); others never see it. ``None``: all.
    kinds: frozenset[str] | None = None
    #: This probe's own bound in seconds, when the run's probe timeout is too short for it (a migration trial).
    timeout: float | None = None
    #: What it needs from the target's table (``metadata``, ``migrations``, ``points.llm``...); without it,
    #: it does not apply to that target.
    needs: tuple[str, ...] = ()
    #: The point a pre-flight probe's checks are recorded at when not the stage's own (one setting of several).
    point: str | None = None

    def missing_for(self, config: Any) -> list[str]:
        """The target table entries this probe needs and ``config`` lacks."""
        missing = []
        for need in self.needs:
            stage = need.partition(".")[2]
            present = bool(config.points.get(stage)) if need.startswith("points.") else getattr(config, need) is not None
            if not present:
                missing.append(need)
        return missing

    def wants(self, kind: str | None) -> bool:
        """This probe judges items of ``kind``."""
        return self.kinds is None or kind in self.kinds

    def run(self, ctx: Any, *item: Any) -> list[Finding]:
        return list(self.function(ctx, *item))

    def not_applicable(self, ctx: Any, *item: Any) -> str | None:
        return self.applies(ctx, *item) if self.applies is not None else None


#: Every probe, in registration order (stage modules register at import).
REGISTRY: list[Probe] = []


def probe(
    stage: Stage,
    *,
    emits: Sequence[Check],
    scope: Scope = Scope.PREFLIGHT,
    requires: Sequence[Check] = (),
    independent: bool = False,
    applies: Callable[..., str | None] | None = None,
    kinds: Sequence[str] | None = None,
    timeout: float | None = None,
    needs: Sequence[str] = (),
    point: str | None = None,
) -> Callable[[Callable[..., Sequence[Finding]]], Callable[..., Sequence[Finding]]]:
    """Register the decorated function as a probe of ``stage``; returns the function unchanged."""
    wrong = [check.id for check in emits if check.stage is not stage]
    if wrong:
        raise ValueError(f"a {stage.value} probe cannot emit {', '.join(wrong)} (another stage's checks)")

    def register(function: Callable[..., Sequence[Finding]]) -> Callable[..., Sequence[Finding]]:
        name = f"{function.__module__}.{function.__qualname__}"
        if any(existing.name == name for existing in REGISTRY):
            raise ValueError(f"probe {name} is registered twice")
        REGISTRY.append(
            Probe(
                name,
                stage,
                scope,
                tuple(emits),
                tuple(requires),
                function,
                independent,
                applies,
                frozenset(kinds) if kinds is not None else None,
                timeout,
                tuple(needs),
                point,
            )
        )
        return function

    return register


def probes_for(stage: Stage, scope: Scope) -> list[Probe]:
    """The probes of one stage and scope, in registration order."""
    import probes  # noqa: F401  (every stage module registers its probes when imported)

    return [entry for entry in REGISTRY if entry.stage is stage and entry.scope is scope]


def needs_of(check_id: str) -> tuple[str, ...]:
    """What the probes that decide ``check_id`` need from a target's table (empty: nothing special)."""
    import probes  # noqa: F401

    found: list[str] = []
    for entry in REGISTRY:
        if any(check.id == check_id for check in entry.emits):
            found += [need for need in entry.needs if need not in found]
    return tuple(found)
