"""Judging a flow run from its timeline: which events the probes see, in which order, at which point.

The watchers recorded what the application did; this module turns the timeline into the
items each probe scope is given (:mod:`probes.registry`) and walks the registry over them:

1. every LLM exchange, named by what it answered (``discovery``, ``masterplan.skeleton``,
   ``masterplan.batch-2``, ``masterplan``; ``examples`` for embeddings) — a failed attempt
   that the same request sent again made good is kept as an attempt, not judged a failure;
2. the application's LLM wrappers (``llm`` points), each after the answers it received;
3. every answer the harness parses itself, and the whole plan (one answer, or a skeleton
   and its batches assembled);
4. what the flow wrote (read back through the harness's own connection), the objects its
   ``load`` points returned, and how the flow ended — an exception is attributed to the
   stage whose code raised it.

Every outcome carries the ``seq`` of the event it judges, so the report's first failure is
the earliest failing event. A probe that never had anything to judge is recorded as not
applicable, saying so: no check is silently absent from a report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.observe.timeline import (
    FlowEnded,
    LLMExchange,
    LoopStalled,
    PointCalled,
    RowsWritten,
    Timeline,
    UnitClosed,
    UnitCommitted,
    UnitOpened,
    UnitRolledBack,
    UntrackedWrite,
)
from probes import persist
from probes.context import Answer, ExchangeView, FlowContext, FlowFailure, PlanView
from probes.core import Outcome, Recorder, Stage
from probes.registry import Probe, Scope, probes_for

__all__ = ["FLOW_STAGES", "judge_flow", "name_exchanges"]

#: Stages whose checks judge the flow's run.
FLOW_STAGES = (Stage.LLM, Stage.PARSE, Stage.PERSIST)
#: Scopes judged after the flow, in the order the judging walks them.
_FLOW_SCOPES = (
    Scope.EXCHANGE,
    Scope.EMBEDDING,
    Scope.WRAPPER,
    Scope.STALL,
    Scope.ANSWER,
    Scope.PLAN,
    Scope.COMMIT,
    Scope.DOCUMENT,
    Scope.UNIT,
    Scope.WRITES,
    Scope.LOAD,
    Scope.ENDED,
)
_GENERATION_APIS = frozenset({"messages", "chat", "responses"})


# -- naming exchanges ------------------------------------------------------------------------


def answer_kind(text: str | None) -> str | None:
    """Which contract document an answer (or the part of it that arrived) is, by its keys."""
    if not text:
        return None
    from harness.contract import ContractError, extract_json

    try:
        data = extract_json(text)
    except ContractError:
        data = None
    if isinstance(data, dict):
        if "bounded_contexts" in data or ("domain" in data and "aggregates" in data):
            return "discovery"
        if "phases" in data:
            phases = data.get("phases") or []
            milestones = [m for p in phases if isinstance(p, dict) for m in p.get("milestones") or [] if isinstance(m, dict)]
            return "masterplan" if any("tasks" in m for m in milestones) else "skeleton"
        if "tasks" in data:
            return "batch"
        return "unknown"
    # Not decodable (cut, malformed): the keys that did arrive still say what it was meant to be.
    if '"bounded_contexts"' in text:
        return "discovery"
    if '"phases"' in text:
        return "masterplan" if '"task_number"' in text else "skeleton"
    if '"task_number"' in text or '"tasks"' in text:
        return "batch"
    return None


def _failed(exchange: LLMExchange) -> bool:
    return not exchange.answered or exchange.body_is_json is False


def name_exchanges(exchanges: Iterable[LLMExchange]) -> list[ExchangeView]:
    """Each exchange with its point and kind; failed attempts a later identical request made good are folded in."""
    exchanges = list(exchanges)
    later_twin: dict[int, LLMExchange] = {}
    for index, exchange in enumerate(exchanges):
        for other in exchanges[index + 1 :]:
            if other.request_digest == exchange.request_digest:
                later_twin[exchange.seq] = other
                break

    views: list[ExchangeView] = []
    pending_attempts: dict[str, list[LLMExchange]] = {}
    kinds: dict[str, str] = {}
    seen: dict[str, int] = {"discovery": 0, "skeleton": 0, "batch": 0, "masterplan": 0}
    batch_points: dict[str, str] = {}
    unknown = 0
    for exchange in exchanges:
        twin = later_twin.get(exchange.seq)
        if twin is not None and _failed(exchange):
            # A retry of the same request follows: this attempt is judged with it, not on its own.
            pending_attempts.setdefault(exchange.request_digest, []).append(exchange)
            continue
        if exchange.api == "embeddings":
            views.append(ExchangeView(exchange, "examples", "embeddings", tuple(pending_attempts.pop(exchange.request_digest, []))))
            continue
        kind = kinds.get(exchange.request_digest) or answer_kind(exchange.text)
        if kind is None:
            kind = _next_kind(seen)
        kinds[exchange.request_digest] = kind
        if kind == "discovery":
            point = "discovery"
        elif kind == "skeleton":
            point = "masterplan.skeleton"
        elif kind == "batch":
            point = batch_points.get(exchange.request_digest) or f"masterplan.batch-{seen['batch'] + 1}"
            batch_points[exchange.request_digest] = point
        elif kind == "masterplan":
            point = "masterplan"
        else:
            unknown += 1
            point = f"llm.call-{unknown}"
        if kind in seen and exchange.answered:
            seen[kind] += 1
        views.append(ExchangeView(exchange, point, kind, tuple(pending_attempts.pop(exchange.request_digest, []))))
    return views


def _next_kind(seen: dict[str, int]) -> str:
    """What a call whose answer says nothing was most likely asking for, from what came before it."""
    if not seen["discovery"]:
        return "discovery"
    if seen["skeleton"]:
        return "batch"
    return "masterplan"


# -- the flow's exception --------------------------------------------------------------------


def _chain(exc: BaseException | None) -> list[BaseException]:
    found: list[BaseException] = []
    while exc is not None and all(exc is not other for other in found):
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _is_llm_error(exc: BaseException) -> bool:
    top = type(exc).__module__.split(".")[0]
    return top in ("anthropic", "openai", "httpx", "httpx2", "httpcore", "httpcore2", "vcr") or (
        type(exc).__name__ == "CannotOverwriteExistingCassetteException"
    )


def _is_db_error(exc: BaseException) -> bool:
    from probes.dberrors import describe_db_error

    top = type(exc).__module__.split(".")[0]
    return top in ("psycopg", "psycopg2", "asyncpg") or (top == "sqlalchemy" and describe_db_error(exc) is not None)


def explain_failure(ctx: FlowContext, recorder: Recorder) -> FlowFailure | None:
    """Attribute the flow's exception to the stage whose code raised it (``None``: the flow returned)."""
    ended = ctx.timeline.ended()
    if ended is None or ended.error is None:
        return None
    error = ended.error
    chain = _chain(error.exception)
    generation = [view for view in ctx.exchanges if view.kind != "embeddings"]
    last_answer = next((view for view in reversed(generation) if view.exchange.answered), None)
    follows = recorder.report.first_failure
    follows_text = f"{follows.id} at {follows.stage.value}/{follows.point}" if follows is not None else None

    if any(_is_llm_error(exc) for exc in chain):
        point = generation[-1].point if generation else "discovery"
        return FlowFailure(Stage.LLM, "llm_call", error, point, last_answer, follows=follows_text)
    if any(type(exc).__name__ == "DetachedInstanceError" for exc in chain):
        return FlowFailure(Stage.PERSIST, "detached", error, _doc_point(last_answer), last_answer, follows=follows_text)
    if any(_is_db_error(exc) for exc in chain):
        return FlowFailure(Stage.PERSIST, "database", error, _doc_point(last_answer), last_answer, follows=follows_text)

    # The application's own code raised: where it was says which stage it belongs to.
    call = _innermost_failed_call(ctx.timeline, chain)
    if call is not None:
        if call.stage == "llm":
            sent = [view for view in generation if view.exchange.seq > call.seq and view.exchange.at <= (call.ended_at or ended.at)]
            kind, stage = ("wrapper", Stage.LLM) if sent else ("before_llm", Stage.LLM)
            point = sent[-1].point if sent else _upcoming_point(generation)
        elif call.stage == "parse":
            kind, stage, point = "after_answer", Stage.PARSE, _doc_point(last_answer)
        else:
            kind, stage, point = "saving", Stage.PERSIST, _doc_point(last_answer)
        return FlowFailure(stage, kind, error, point, last_answer, call, follows=follows_text)

    last = _last_activity(ctx.timeline, ended)
    if isinstance(last, (RowsWritten, UnitRolledBack, UntrackedWrite)):
        return FlowFailure(Stage.PERSIST, "saving", error, _doc_point(last_answer), last_answer, follows=follows_text)
    if isinstance(last, LLMExchange) and last.answered and last.api in _GENERATION_APIS:
        return FlowFailure(Stage.PARSE, "after_answer", error, _doc_point(last_answer), last_answer, follows=follows_text)
    return FlowFailure(Stage.LLM, "before_llm", error, _upcoming_point(generation), last_answer, follows=follows_text)


def _doc_point(view: ExchangeView | None) -> str:
    return view.point if view is not None else "flow"


def _upcoming_point(generation: list[ExchangeView]) -> str:
    if not any(view.kind == "discovery" and view.exchange.answered for view in generation):
        return "discovery"
    return "masterplan"


def _innermost_failed_call(timeline: Timeline, chain: list[BaseException]) -> PointCalled | None:
    """The deepest point call the flow's exception (or one it chains to) passed through."""
    failed = [
        call
        for call in timeline.of(PointCalled)
        if call.error is not None and any(call.error.exception is exc for exc in chain)
    ]
    return max(failed, key=lambda call: call.seq) if failed else None


def _last_activity(timeline: Timeline, ended: FlowEnded) -> Any:
    """The last LLM exchange or database write before the flow failed.

    Units merely opened and read-only commits do not count, nor units that store the flow's own
    error: the application recording its failure (a plan marked failed) did so after it failed.
    """
    recording = _units_recording(timeline, ended)
    for event in reversed(list(timeline)):
        if event.seq >= ended.seq or getattr(event, "unit", None) in recording:
            continue
        if isinstance(event, (LLMExchange, RowsWritten, UnitRolledBack, UntrackedWrite)):
            return event
        if isinstance(event, UnitCommitted) and event.writes:
            return None  # a save finished; whatever failed came after it, before the next call
    return None


def _units_recording(timeline: Timeline, ended: FlowEnded) -> set[str]:
    """Units that wrote the text of the flow's exception (``Type: message``), so were written after it was raised."""
    error = ended.error.exception if ended.error is not None else None
    texts = [f"{type(exc).__name__}: {exc}"[:120] for exc in _chain(error)]
    if not texts:
        return set()
    return {
        event.unit
        for event in timeline.of(RowsWritten)
        for write in event.writes
        if any(isinstance(value, str) and any(text in value for text in texts) for value in write.values.values())
    }


# -- walking the registry --------------------------------------------------------------------


def _items(ctx: FlowContext, scope: Scope) -> list[tuple[str, int, str | None, tuple[Any, ...]]]:
    """(point, seq, kind, args) of everything ``scope``'s probes judge, in run order."""
    timeline = ctx.timeline
    if scope is Scope.EXCHANGE:
        return [(v.point, v.exchange.seq, v.kind, (v,)) for v in ctx.exchanges if v.kind != "embeddings"]
    if scope is Scope.EMBEDDING:
        return [(v.point, v.exchange.seq, v.kind, (v,)) for v in ctx.exchanges if v.kind == "embeddings"]
    if scope is Scope.WRAPPER:
        items = []
        for call in timeline.of(PointCalled):
            if call.stage != "llm":
                continue
            end = call.ended_at if call.ended_at is not None else float("inf")
            inside = [
                v for v in ctx.exchanges if v.kind != "embeddings" and v.exchange.seq > call.seq and v.exchange.at <= end
            ]
            answered = [v for v in inside if v.exchange.answered]
            view = answered[-1] if answered else None
            if view is None:
                continue  # nothing answered inside this call: nothing it could have lost
            items.append((view.point, view.exchange.seq, view.kind, ((call, view),)))
        return items
    if scope is Scope.STALL:
        return [("flow", stall.seq, None, (stall,)) for stall in timeline.of(LoopStalled)]
    if scope is Scope.ANSWER:
        return [(a.view.point, a.view.exchange.seq, a.view.kind, (a,)) for a in ctx.answers]
    if scope is Scope.PLAN:
        return [(plan.point, plan.seq, "masterplan", (plan,)) for plan in ctx.plans]
    if scope is Scope.COMMIT:
        state = persist.prepare(ctx)
        # Read-only sessions commit nothing; only commits that wrote, or committed again, are judged.
        return [
            (persist.commit_point(state, c.writes), c.seq, None, (c,))
            for c in timeline.of(UnitCommitted)
            if c.writes or c.number > 1
        ]
    if scope is Scope.DOCUMENT:
        state = persist.prepare(ctx)
        return [(d.point, _document_seq(ctx, state, d), d.kind, (d,)) for d in state.documents]
    if scope is Scope.UNIT:
        state = persist.prepare(ctx)
        return [
            (persist.commit_point(state, u.uncommitted), u.seq, None, (u,)) for u in timeline.of(UnitClosed) if u.uncommitted
        ]
    if scope is Scope.WRITES:
        ended = timeline.ended()
        return [("persist", ended.seq if ended else len(timeline), None, ())]
    if scope is Scope.LOAD:
        return [(_load_point(ctx, call), call.seq, None, (call,)) for call in timeline.of(PointCalled) if call.stage == "load"]
    if scope is Scope.ENDED:
        ended = timeline.ended()
        return [("flow", ended.seq, None, (ended,))] if ended is not None else []
    raise ValueError(f"no items for scope {scope}")


def _document_seq(ctx: FlowContext, state: Any, document: Any) -> int:
    """Where a document's findings belong in the run: the first commit after its answer that wrote its rows."""
    if document.ref is None:
        return document.answered_seq
    refs = {ref for ref, point in state.points.items() if point == document.point or ref == document.ref}
    for commit in ctx.timeline.of(UnitCommitted):
        if commit.seq > document.answered_seq and any(
            w.key is not None and persist.RowRef(w.table, tuple(w.key)) in refs for w in commit.writes
        ):
            return commit.seq
    return document.answered_seq


def _load_point(ctx: FlowContext, call: PointCalled) -> str:
    before = [v for v in ctx.exchanges if v.exchange.seq < call.seq and v.kind != "embeddings" and v.exchange.answered]
    return "discovery" if before and before[-1].kind == "discovery" else ("masterplan" if before else "load")


def _answers(ctx: FlowContext) -> list[Answer]:
    """Answers the harness parses: generation calls that answered (truncated ones too: the probes block them)."""
    return [
        Answer(view)
        for view in ctx.exchanges
        if view.kind != "embeddings" and view.exchange.status is not None and view.exchange.text is not None
    ]


def _plans(ctx: FlowContext) -> list[PlanView]:
    """The whole plans: single-call answers, and a skeleton with all its batches, assembled."""
    from harness.contract import assemble_plan

    plans = [
        PlanView(answer.document, answer.view.point, answer.view.exchange.seq, False)
        for answer in ctx.answers
        if answer.view.kind == "masterplan" and answer.document is not None
    ]
    state = ctx.state.get("parse") or {}
    skeleton, tasks = state.get("skeleton"), state.get("tasks") or []
    batches = [a for a in ctx.answers if a.view.kind == "batch" and a.document is not None]
    if skeleton is not None and tasks and len(tasks) == skeleton.total_tasks:
        plans.append(PlanView(assemble_plan(skeleton, tasks), "masterplan", batches[-1].view.exchange.seq, True))
    return plans


def _run_scope(recorder: Recorder, ctx: FlowContext, scope: Scope, timeout: float | None) -> None:
    ran: set[str] = set()
    items = _items(ctx, scope)
    for stage in Stage:
        for entry in probes_for(stage, scope):
            for point, seq, kind, args in items:
                if not entry.wants(kind):
                    continue
                ran.add(entry.name)
                recorder.run_probe(entry, point, ctx, *args, seq=seq, timeout=timeout)
    _account_for_idle(recorder, [p for s in Stage for p in probes_for(s, scope) if p.name not in ran], scope, ctx)


_NOTHING_TO_JUDGE = {
    Scope.EXCHANGE: "the flow made no generation call",
    Scope.EMBEDDING: "the flow made no embeddings call",
    Scope.WRAPPER: "no llm point answered (none configured, or no call returned an answer)",
    Scope.ANSWER: "no answer of this kind to parse",
    Scope.PLAN: "no whole plan arrived (single-call answer, or a skeleton with all its batches)",
    Scope.LOAD: "no load point was called (none configured, or the flow did not reach one)",
    Scope.COMMIT: "the flow committed nothing",
    Scope.DOCUMENT: "no document was parsed, so there is none to look for among the saved rows",
    Scope.UNIT: "",
    Scope.STALL: "",
    Scope.ENDED: "the flow did not come back",
    Scope.WRITES: "nothing to judge",
}


#: Scopes whose items are only the suspicious ones: no item means nothing was wrong.
_IDLE_MEANS_PASSED = frozenset({Scope.UNIT, Scope.STALL})


def _account_for_idle(recorder: Recorder, idle: list[Probe], scope: Scope, ctx: FlowContext) -> None:
    """Probes that had nothing to judge are shown as such — unless they are blocked by an earlier failure."""
    first = recorder.report.first_failure
    for entry in idle:
        outcome = recorder.requirement_problem(entry.requires, entry.stage.value)
        if outcome is not None:
            recorder.skip(entry.emits, entry.stage.value, outcome[1], blocked=outcome[0] is Outcome.BLOCKED, seq=10**9)
        elif first is not None and first.stage.order < entry.stage.order:
            where = first.stage.value if first.point in (None, first.stage.value) else f"{first.stage.value}/{first.point}"
            recorder.skip(entry.emits, entry.stage.value, f"by {first.id} at {where}", blocked=True, seq=10**9)
        elif scope in _IDLE_MEANS_PASSED and entry.not_applicable(ctx) is None:
            recorder.record(entry.emits, entry.stage.value, [], seq=10**9)
        elif scope in _IDLE_MEANS_PASSED:
            recorder.not_applicable(entry.emits, entry.stage.value, entry.not_applicable(ctx) or "", seq=10**9)
        else:
            recorder.not_applicable(entry.emits, entry.stage.value, _NOTHING_TO_JUDGE[scope], seq=10**9)


def judge_flow(recorder: Recorder, ctx: FlowContext, *, timeout: float | None = None) -> None:
    """Walk every flow-stage probe of the registry over the timeline; outcomes go to ``recorder``."""
    ctx.exchanges = name_exchanges(ctx.timeline.of(LLMExchange))
    ctx.observe("llm.calls", [_exchange_record(view) for view in ctx.exchanges])
    units = ctx.timeline.of(UnitOpened)
    ctx.observe("db.units", len(units))
    for scope in _FLOW_SCOPES:
        if scope is Scope.ANSWER:
            ctx.answers = _answers(ctx)
        elif scope is Scope.PLAN:
            ctx.plans = _plans(ctx)
        elif scope is Scope.ENDED:
            ctx.failure = explain_failure(ctx, recorder)
            if ctx.failure is not None:
                ctx.observe("flow.error", {"stage": ctx.failure.stage.value, "kind": ctx.failure.kind, **ctx.failure.error.to_dict()})
        _run_scope(recorder, ctx, scope, timeout)


def _exchange_record(view: ExchangeView) -> dict[str, Any]:
    from probes.llm import exchange_evidence

    return {
        "point": view.point,
        "kind": view.kind,
        "attempts": len(view.earlier_attempts) + 1,
        **exchange_evidence(view.exchange),
    }
