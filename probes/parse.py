"""Stage parse: the answer holds JSON, the JSON meets the contract, the plan is coherent.

The probe parses the raw answer itself (with :mod:`harness.contract`), so it judges what
the LLM said independently of what the flow under diagnosis does with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.contract import (
    ATOMIC_TOKEN_RANGE,
    ContractViolation,
    JSONDecodeFailed,
    MasterPlan,
    NoJSONFound,
    PlanProblem,
    ProblemKind,
    Task,
    batch_problems,
    iter_tasks,
    parse_discovery,
    parse_masterplan,
    parse_skeleton,
    parse_task_batch,
    plan_problems,
    skeleton_problems,
)
from probes.core import Check, Finding, Level, Stage

__all__ = [
    "BATCH_CHECKS",
    "CHECKS",
    "DOCUMENT_CHECKS",
    "PLAN_CHECKS",
    "SKELETON_CHECKS",
    "PARSE101",
    "atomicity",
    "check_batch",
    "classify",
    "parse_answer",
    "plan_atomicity",
    "plan_findings",
]

PARSE001 = Check(
    "PARSE001",
    Stage.PARSE,
    Level.ERROR,
    "answer contains JSON",
    "The model answered without a JSON object: make the system prompt demand JSON only, and check the answer "
    "in the evidence.",
)
PARSE002 = Check(
    "PARSE002",
    Stage.PARSE,
    Level.ERROR,
    "JSON decodes",
    "The JSON is malformed at the position in the evidence; if it ends abruptly the answer was truncated "
    "(see the llm stage).",
)
PARSE003 = Check(
    "PARSE003",
    Stage.PARSE,
    Level.ERROR,
    "required fields present and typed",
    "The fields in the evidence are missing or mistyped: tighten the prompt's schema, or validate and retry.",
)
PARSE004 = Check(
    "PARSE004",
    Stage.PARSE,
    Level.ERROR,
    "declared task count matches the tasks",
    "total_tasks disagrees with the tasks listed: compute totals from the tasks rather than trusting the model.",
)
PARSE005 = Check(
    "PARSE005",
    Stage.PARSE,
    Level.ERROR,
    "task numbers unique",
    "Two tasks share a number, so dependencies are ambiguous: renumber, or generate in batches with fixed ranges.",
)
PARSE006 = Check(
    "PARSE006",
    Stage.PARSE,
    Level.ERROR,
    "every dependency exists",
    "A task depends on a task number that is not in the plan: drop or repair the dependency before saving.",
)
PARSE007 = Check(
    "PARSE007",
    Stage.PARSE,
    Level.ERROR,
    "dependencies form no cycle",
    "The tasks named in the evidence depend on each other in a loop: break the cycle; no order can execute them.",
)
PARSE008 = Check(
    "PARSE008",
    Stage.PARSE,
    Level.ERROR,
    "no empty phase or milestone",
    "A phase has no milestones or a milestone has no tasks: ask for them again or remove the container.",
)
PARSE009 = Check(
    "PARSE009",
    Stage.PARSE,
    Level.WARNING,
    "tasks are atomic (200-800 tokens)",
    "Tasks outside the atomic range are too big to execute in one step or too small to be worth one: split or merge.",
)
PARSE010 = Check(
    "PARSE010",
    Stage.PARSE,
    Level.ERROR,
    "batch holds exactly the tasks asked for",
    "A batch skipped or invented task numbers: numbering must continue right after the previous batch; "
    "ask for the batch again with its task range stated.",
)
PARSE101 = Check(
    "PARSE101",
    Stage.PARSE,
    Level.ERROR,
    "application code handled the answer",
    "The LLM answered and your code failed while handling the answer, before anything was saved: fix the line "
    "named in the evidence (the answer it was handling is in the llm stage's evidence).",
)
PARSE900 = Check(
    "PARSE900",
    Stage.PARSE,
    Level.ERROR,
    "answer parsed as expected",
    "An unexpected error while parsing; the evidence names the exception.",
)

DOCUMENT_CHECKS = (PARSE001, PARSE002, PARSE003)
PLAN_CHECKS = (PARSE004, PARSE005, PARSE006, PARSE007, PARSE008, PARSE009)
#: Checks of a plan skeleton (batched generation).
SKELETON_CHECKS = (PARSE004, PARSE008)
#: Checks of one batch of tasks, judged with the batches before it.
BATCH_CHECKS = (PARSE010, PARSE005, PARSE006, PARSE007, PARSE009)
CHECKS = DOCUMENT_CHECKS + PLAN_CHECKS + (PARSE010, PARSE101, PARSE900)

_PROBLEM_CHECKS = {
    ProblemKind.TOTAL_MISMATCH: PARSE004,
    ProblemKind.DUPLICATE_TASK_NUMBER: PARSE005,
    ProblemKind.DANGLING_DEPENDENCY: PARSE006,
    ProblemKind.DEPENDENCY_CYCLE: PARSE007,
    ProblemKind.EMPTY_CONTAINER: PARSE008,
    ProblemKind.NOT_ATOMIC: PARSE009,
    ProblemKind.BATCH_RANGE: PARSE010,
}


def _contract_finding(exc: Exception, point: str) -> Finding:
    if isinstance(exc, NoJSONFound):
        return PARSE001.finding(
            f"The {point} answer contains no JSON object.", point=point, text_chars=exc.text_chars, head=exc.head
        )
    if isinstance(exc, JSONDecodeFailed):
        return PARSE002.finding(
            f"The {point} JSON does not decode: {exc.reason} at line {exc.line} column {exc.column}.",
            point=point,
            line=exc.line,
            column=exc.column,
            offset=exc.offset,
            context=exc.context,
            text_chars=exc.text_chars,
        )
    if isinstance(exc, ContractViolation):
        return PARSE003.finding(
            f"The {point} JSON does not meet the contract: {len(exc.errors)} field problem(s), "
            f"first at {exc.errors[0]['path']}.",
            point=point,
            fields=exc.errors[:20],
        )
    raise exc


#: The contract parser of each kind of answer.
_PARSERS = {
    "discovery": parse_discovery,
    "skeleton": parse_skeleton,
    "batch": lambda text: parse_task_batch(text).tasks,
    "masterplan": parse_masterplan,
}


def parse_answer(kind: str, text: str, point: str) -> tuple[list[Finding], Any]:
    """Extract and validate an answer of ``kind`` against the contract: findings, and the document when it parsed."""
    try:
        return [], _PARSERS[kind](text)
    except (NoJSONFound, JSONDecodeFailed, ContractViolation) as exc:
        return [_contract_finding(exc, point)], None


def check_batch(
    tasks: Sequence[Task], point: str, earlier: Sequence[Task], total: int | None
) -> list[Finding]:
    """One batch of tasks judged with the batches before it: numbering continues right after them."""
    first = max((task.task_number for task in earlier), default=0) + 1
    return plan_findings(batch_problems(earlier, tasks, first=first, total=total), point)


def atomicity(tasks: Sequence[Task], token_range: tuple[int, int] = ATOMIC_TOKEN_RANGE) -> dict[str, Any]:
    """The distribution of estimated tokens per task against the atomic range: quartiles, counts, outliers."""
    low, high = token_range
    sizes = sorted(task.estimated_tokens for task in tasks if task.estimated_tokens is not None)
    outliers = [
        {"task": task.task_number, "estimated_tokens": task.estimated_tokens}
        for task in tasks
        if task.estimated_tokens is not None and not low <= task.estimated_tokens <= high
    ]

    def quantile(q: float) -> int | None:
        return sizes[min(len(sizes) - 1, int(q * len(sizes)))] if sizes else None

    return {
        "range": [low, high],
        "tasks": len(tasks),
        "estimated": len(sizes),
        "within": len(sizes) - len(outliers),
        "below": sum(1 for size in sizes if size < low),
        "above": sum(1 for size in sizes if size > high),
        "min": sizes[0] if sizes else None,
        "p25": quantile(0.25),
        "median": quantile(0.5),
        "p75": quantile(0.75),
        "max": sizes[-1] if sizes else None,
        "outliers": outliers[:20],
    }


def plan_atomicity(plan: MasterPlan) -> dict[str, Any]:
    """:func:`atomicity` of every task of a plan."""
    return atomicity([task for _, _, task in iter_tasks(plan)])


def plan_findings(problems: Sequence[PlanProblem], point: str) -> list[Finding]:
    """One finding per problem with a plan."""
    return [_PROBLEM_CHECKS[p.kind].finding(p.message + ".", point=point, **p.evidence) for p in problems]


def classify(exc: BaseException, point: str) -> Finding:
    """Explain an exception the flow raised while parsing or validating."""
    if isinstance(exc, (NoJSONFound, JSONDecodeFailed, ContractViolation)):
        return _contract_finding(exc, point)
    problems: Any = getattr(exc, "problems", None)
    if problems and all(isinstance(p, PlanProblem) for p in problems):
        return plan_findings(problems, point)[0]
    return PARSE900.finding(f"{type(exc).__name__}: {exc}", point=point, error_type=type(exc).__name__)


# -- probes ----------------------------------------------------------------------------------

from probes.llm import LLM001, LLM002, LLM100  # noqa: E402
from probes.registry import Scope, probe  # noqa: E402

#: A truncated or failed answer is judged at the llm stage; parsing it would only repeat that.
_ANSWERED = (LLM100, LLM001, LLM002)


def _not_a_contract_document(ctx: Any, answer: Any) -> str | None:
    if answer.view.kind == "unknown":
        return "the answer is not a discovery or masterplan document (no contract to judge it by)"
    return None


@probe(
    Stage.PARSE,
    scope=Scope.ANSWER,
    emits=DOCUMENT_CHECKS,
    requires=_ANSWERED,
    applies=_not_a_contract_document,
)
def document(ctx: Any, answer: Any) -> list[Finding]:
    """JSON found and decoded, and the contract's fields present and typed (each gates the next)."""
    text = answer.view.exchange.text or ""
    findings, parsed = parse_answer(answer.view.kind, text, answer.view.point)
    answer.document = parsed
    if parsed is not None:
        from harness.contract import extract_json

        answer.raw = extract_json(text)
    return findings


@probe(Stage.PARSE, scope=Scope.ANSWER, emits=SKELETON_CHECKS, requires=(PARSE003,), kinds=("skeleton",))
def skeleton(ctx: Any, answer: Any) -> list[Finding]:
    """A skeleton's declared total agrees with its milestones; no phase or milestone is empty."""
    if answer.document is None:
        return []
    ctx.state.setdefault("parse", {"skeleton": None, "tasks": []})["skeleton"] = answer.document
    return plan_findings(skeleton_problems(answer.document), answer.view.point)


@probe(
    Stage.PARSE,
    scope=Scope.ANSWER,
    emits=BATCH_CHECKS,
    requires=(PARSE003,),
    independent=True,
    kinds=("batch",),
)
def batch(ctx: Any, answer: Any) -> list[Finding]:
    """A batch holds the next task numbers, unique, with dependencies that exist and form no cycle."""
    if answer.document is None:
        return []
    state = ctx.state.setdefault("parse", {"skeleton": None, "tasks": []})
    skeleton_doc = state["skeleton"]
    total = skeleton_doc.total_tasks if skeleton_doc is not None else None
    findings = check_batch(answer.document, answer.view.point, state["tasks"], total)
    state["tasks"].extend(answer.document)
    return findings


@probe(Stage.PARSE, scope=Scope.PLAN, emits=PLAN_CHECKS, independent=True)
def whole_plan(ctx: Any, plan: Any) -> list[Finding]:
    """The whole plan: counts agree, numbers unique, dependencies exist and form no cycle, tasks atomic."""
    ctx.observe(f"atomicity.{plan.point}", plan_atomicity(plan.plan))
    return plan_findings(plan_problems(plan.plan), plan.point)


def _failure_not_ours(ctx: Any, ended: Any) -> str | None:
    failure = ctx.failure
    if failure is not None and failure.stage is Stage.PARSE and failure.follows is not None:
        return f"the flow's {failure.error.type} followed {failure.follows}"
    return None


@probe(Stage.PARSE, scope=Scope.ENDED, emits=(PARSE101,), applies=_failure_not_ours)
def code_handled_answer(ctx: Any, ended: Any) -> list[Finding]:
    """The application's code did not raise while handling an answer, before saving it."""
    from probes.llm import answer_summary

    failure = ctx.failure
    if failure is None or failure.stage is not Stage.PARSE:
        return []
    where = f" at {failure.error.location}" if failure.error.location else ""
    answered = (
        f"The LLM answered ({answer_summary(failure.last_answer.exchange)}), then your code failed"
        if failure.last_answer is not None
        else "Your code failed while handling the answer"
    )
    return [
        PARSE101.finding(
            f"{answered}{where}: {failure.error.type}: {failure.error.message}",
            point=failure.point,
            error=failure.error.to_dict(),
            location=str(failure.error.location) if failure.error.location else None,
            answer_point=failure.last_answer.point if failure.last_answer is not None else None,
        )
    ]
