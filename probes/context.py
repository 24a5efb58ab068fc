"""What probes are given: the run's inputs before the flow, and the timeline after it.

Probes read these; only the runner builds them. Kept apart from :mod:`probes.core` so a
stage module can name the context it takes without importing the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "ExchangeView", "FlowContext", "FlowFailure", "PlanView", "PreflightContext"]


@dataclass
class PreflightContext:
    """Inputs of the env, db and auth probes of one run."""

    #: :class:`harness.config.Settings` of the run.
    settings: Any
    #: The :class:`harness.target.Target` under diagnosis.
    target: Any
    #: :class:`probes.auth.Identity` the request carries.
    identity: Any
    #: Why the bearer token did not verify, when one was given and failed.
    token_error: str | None = None
    #: A bearer token was given at all.
    token_given: bool = False
    #: The run's LLM mode (``off``, ``ping``, ``full``, ``replay``): which settings the run uses.
    llm: str = "full"
    #: Keeps a fact for the report (``observe("db.server", {...})``).
    observe: Callable[[str, Any], None] = lambda key, value: None
    #: Disposable databases for checks that need an empty one (``(new, drop)``), or ``None``.
    disposable: tuple[Callable[[], str], Callable[[str], None]] | None = None
    #: State the db probes share (the probe connection, opened by the connect probe).
    db: dict[str, Any] = field(default_factory=dict)
    #: The template the database is an untouched clone of (built by the target's ``build_schema`` and cloned
    #: for this run), or ``None``: the schema checks judged on one clone of a template are inherited by the
    #: others, and DB012 needs no trial run of its own (the template's build was one).
    template: str | None = None


@dataclass
class ExchangeView:
    """One LLM exchange as the judges see it: where in the flow it belongs."""

    #: :class:`harness.observe.timeline.LLMExchange`.
    exchange: Any
    #: Its point: ``discovery``, ``masterplan.skeleton``, ``masterplan.batch-2``, ``masterplan``, ``examples``...
    point: str
    #: ``discovery``, ``skeleton``, ``batch``, ``masterplan``, ``embeddings`` or ``unknown``.
    kind: str
    #: Failed attempts of the same request sent before this one (retries that this one made good).
    earlier_attempts: tuple[Any, ...] = ()


@dataclass
class Answer:
    """An answer the harness parses itself: the exchange it came from, and what parsing found."""

    view: ExchangeView
    #: The parsed document (a contract model) once the parse probes ran, else ``None``.
    document: Any = None
    #: The decoded JSON (kept raw: the application may store it as it came).
    raw: Any = None


@dataclass
class PlanView:
    """A whole plan: parsed in one answer, or assembled from a skeleton and its batches."""

    #: :class:`harness.contract.MasterPlan`.
    plan: Any
    point: str
    #: ``seq`` of the last answer it was built from.
    seq: int
    assembled: bool


@dataclass
class FlowFailure:
    """The flow's exception, explained: the stage whose code raised it, and what came before."""

    #: :class:`probes.core.Stage` the failure belongs to.
    stage: Any
    #: ``before_llm``, ``wrapper``, ``after_answer``, ``saving``, ``database``, ``detached``, ``llm_call`` or ``auth``.
    kind: str
    #: :class:`harness.observe.timeline.ExceptionInfo` of the flow's exception.
    error: Any
    point: str
    #: The last LLM exchange that answered before the failure, if any.
    last_answer: Any = None
    #: The point call the exception passed through, innermost (when points are configured).
    point_call: Any = None
    #: An earlier failing outcome this failure follows from (then it is not a finding of its own).
    follows: Any = None


@dataclass
class FlowContext:
    """Inputs of the llm, parse and persist probes after the flow ran."""

    #: :class:`harness.observe.timeline.Timeline` of the run.
    timeline: Any
    target: Any
    #: The request the flow ran: ``request``, ``user_id``, ``session_id``.
    request: Any
    #: :class:`probes.persist.Readback` over the harness's own connection (``None`` without a database).
    reader: Any
    observe: Callable[[str, Any], None] = lambda key, value: None
    exchanges: list[ExchangeView] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    plans: list[PlanView] = field(default_factory=list)
    failure: FlowFailure | None = None
    #: Timeouts of the run (:class:`harness.config.Timeouts`).
    timeouts: Any = None
    #: What probes of one run hand on to later ones: the parsed skeleton and tasks, rows read back, documents matched.
    state: dict[str, Any] = field(default_factory=dict)
