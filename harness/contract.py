"""The JSON contract the LLM is asked for, and how an answer is turned into it.

Three steps, each with its own error so a caller can say exactly what went wrong:

1. :func:`extract_json` finds the JSON in a reply (bare, fenced, or wrapped in prose)
   and decodes it — :class:`NoJSONFound` or :class:`JSONDecodeFailed` (line, column,
   context);
2. :func:`parse_discovery` / :func:`parse_masterplan` validate it against the pydantic
   models below — :class:`ContractViolation` with field paths;
3. :func:`plan_problems` lists what is wrong with a valid plan as a whole (counts,
   duplicate numbers, dangling dependencies, cycles, empty containers, task sizes).

Both the flow and the parse probe use this module: the contract is decided here only.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ATOMIC_TOKEN_RANGE",
    "ContractError",
    "ContractViolation",
    "Discovery",
    "JSONDecodeFailed",
    "MasterPlan",
    "Milestone",
    "MilestoneSlot",
    "NoJSONFound",
    "Phase",
    "PlanProblem",
    "PlanSkeleton",
    "ProblemKind",
    "SkeletonMilestone",
    "SkeletonPhase",
    "Task",
    "TaskBatch",
    "assemble_plan",
    "batch_problems",
    "extract_json",
    "iter_tasks",
    "parse_discovery",
    "parse_masterplan",
    "parse_skeleton",
    "parse_task_batch",
    "plan_problems",
    "skeleton_problems",
    "skeleton_slots",
]

#: Estimated output tokens a task must stay within to count as atomic (the seed's 200–800).
ATOMIC_TOKEN_RANGE = (200, 800)
_CONTEXT_CHARS = 40


class ContractError(ValueError):
    """An LLM answer does not meet the contract."""


class NoJSONFound(ContractError):
    """The answer holds no JSON object at all."""

    def __init__(self, text: str) -> None:
        super().__init__("no JSON object found in the answer")
        self.text_chars = len(text)
        self.head = text[: _CONTEXT_CHARS * 2]


class JSONDecodeFailed(ContractError):
    """The JSON in the answer does not decode; position is in the whole answer."""

    def __init__(self, reason: str, *, line: int, column: int, offset: int, context: str, text_chars: int) -> None:
        super().__init__(f"JSON does not decode: {reason} at line {line} column {column}")
        self.reason = reason
        self.line = line
        self.column = column
        self.offset = offset
        self.context = context
        self.text_chars = text_chars


class ContractViolation(ContractError):
    """The JSON decodes but misses or mistypes fields; ``errors`` name each field path."""

    def __init__(self, document: str, errors: list[dict[str, str]]) -> None:
        paths = ", ".join(error["path"] for error in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{document} does not meet the contract at: {paths}{more}")
        self.document = document
        self.errors = errors


# -- models -----------------------------------------------------------------------------------


class _Open(BaseModel):
    """Extra keys the LLM adds are kept, never an error."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Named(_Open):
    """An item of a discovery list: at least a non-empty name."""

    name: str = Field(min_length=1)
    description: str = ""


class Discovery(_Open):
    """A domain-driven discovery document."""

    domain: str = Field(min_length=1)
    bounded_contexts: list[Named]
    aggregates: list[Named]
    value_objects: list[Named]
    domain_events: list[Named]
    services: list[Named]
    assumptions: list[str] = Field(default_factory=list)
    risks: list[str] = Field(default_factory=list)


class Complexity(str, enum.Enum):
    """How hard a task is."""

    #: A few lines in one file.
    LOW = "low"
    #: One unit of behaviour, possibly across two files.
    MEDIUM = "medium"
    #: Needs design thought; still one task.
    HIGH = "high"


class Task(_Open):
    """One atomic unit of work."""

    task_number: int = Field(ge=1)
    title: str = Field(min_length=1)
    description: str = ""
    complexity: Complexity = Complexity.MEDIUM
    depends_on: list[int] = Field(default_factory=list)
    target_files: list[str] = Field(default_factory=list)
    estimated_tokens: int | None = Field(default=None, ge=0)

    @field_validator("complexity", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class Milestone(_Open):
    """A group of tasks inside a phase."""

    milestone_number: int | None = None
    name: str = Field(min_length=1)
    description: str = ""
    tasks: list[Task]


class Phase(_Open):
    """A group of milestones."""

    phase_number: int | None = None
    name: str = Field(min_length=1)
    description: str = ""
    milestones: list[Milestone]


class MasterPlan(_Open):
    """A masterplan: phases → milestones → tasks."""

    project_name: str = Field(min_length=1)
    description: str = ""
    tech_stack: dict[str, Any]
    architecture_style: str | None = None
    total_tasks: int = Field(ge=0)
    estimated_cost_usd: float | None = None
    estimated_duration_minutes: int | None = None
    phases: list[Phase]


def iter_tasks(plan: MasterPlan) -> Iterator[tuple[Phase, Milestone, Task]]:
    """Every task with its phase and milestone, in plan order."""
    for phase in plan.phases:
        for milestone in phase.milestones:
            for task in milestone.tasks:
                yield phase, milestone, task


# -- extraction -------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n")


def _json_candidate(text: str) -> tuple[str, int] | None:
    """The part of ``text`` that should be JSON, and where it starts."""
    fence = _FENCE.search(text)
    if fence is not None:
        start = fence.end()
        end = text.find("```", start)
        body = text[start:] if end < 0 else text[start:end]
        if body.lstrip().startswith(("{", "[")):
            return body, start
    start = text.find("{")
    if start < 0:
        return None
    end = text.rfind("}")
    return (text[start : end + 1], start) if end > start else (text[start:], start)


def extract_json(text: str) -> Any:
    """The JSON value in an LLM answer: bare, inside a fenced block, or wrapped in prose."""
    found = _json_candidate(text)
    if found is None:
        raise NoJSONFound(text)
    candidate, start = found
    try:
        return json.loads(candidate)
    except json.JSONDecodeError as exc:
        offset = start + exc.pos
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        context = text[max(0, offset - _CONTEXT_CHARS) : offset + _CONTEXT_CHARS]
        raise JSONDecodeFailed(
            exc.msg, line=line, column=column, offset=offset, context=context, text_chars=len(text)
        ) from None


def _violation(document: str, exc: ValidationError) -> ContractViolation:
    errors = [
        {
            "path": ".".join(str(part) for part in error["loc"]) or "(root)",
            "problem": error["msg"],
        }
        for error in exc.errors()
    ]
    return ContractViolation(document, errors)


def parse_discovery(text: str) -> Discovery:
    """Extract and validate a discovery document from an LLM answer."""
    data = extract_json(text)
    try:
        return Discovery.model_validate(data)
    except ValidationError as exc:
        raise _violation("discovery", exc) from None


def parse_masterplan(text: str) -> MasterPlan:
    """Extract and validate a masterplan from an LLM answer."""
    data = extract_json(text)
    try:
        return MasterPlan.model_validate(data)
    except ValidationError as exc:
        raise _violation("masterplan", exc) from None


# -- plan semantics ---------------------------------------------------------------------------


class ProblemKind(str, enum.Enum):
    """What can be wrong with a plan that passed validation."""

    #: ``total_tasks`` disagrees with the tasks actually listed.
    TOTAL_MISMATCH = "total_mismatch"
    #: Two tasks share a task number.
    DUPLICATE_TASK_NUMBER = "duplicate_task_number"
    #: A task depends on a task number that does not exist.
    DANGLING_DEPENDENCY = "dangling_dependency"
    #: Tasks depend on each other in a loop.
    DEPENDENCY_CYCLE = "dependency_cycle"
    #: A phase without milestones or a milestone without tasks.
    EMPTY_CONTAINER = "empty_container"
    #: A task's estimated tokens fall outside the atomic range.
    NOT_ATOMIC = "not_atomic"
    #: A batch of tasks misses task numbers it was asked for, or holds numbers it was not.
    BATCH_RANGE = "batch_range"


#: Problems that make a plan unusable; the rest are warnings.
BLOCKING_PROBLEMS = frozenset(
    {
        ProblemKind.TOTAL_MISMATCH,
        ProblemKind.DUPLICATE_TASK_NUMBER,
        ProblemKind.DANGLING_DEPENDENCY,
        ProblemKind.DEPENDENCY_CYCLE,
        ProblemKind.EMPTY_CONTAINER,
        ProblemKind.BATCH_RANGE,
    }
)


@dataclass(frozen=True)
class PlanProblem:
    """One thing wrong with a plan, with the evidence that shows it."""

    kind: ProblemKind
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        return self.kind in BLOCKING_PROBLEMS


def plan_problems(plan: MasterPlan, *, token_range: tuple[int, int] = ATOMIC_TOKEN_RANGE) -> list[PlanProblem]:
    """Everything wrong with ``plan`` as a whole; empty when the plan is coherent."""
    problems: list[PlanProblem] = []
    tasks = [task for _, _, task in iter_tasks(plan)]

    if plan.total_tasks != len(tasks):
        problems.append(
            PlanProblem(
                ProblemKind.TOTAL_MISMATCH,
                f"the plan declares {plan.total_tasks} tasks but lists {len(tasks)}",
                {"declared": plan.total_tasks, "counted": len(tasks)},
            )
        )

    seen: dict[int, int] = {}
    for task in tasks:
        seen[task.task_number] = seen.get(task.task_number, 0) + 1
    duplicates = sorted(number for number, count in seen.items() if count > 1)
    if duplicates:
        problems.append(
            PlanProblem(
                ProblemKind.DUPLICATE_TASK_NUMBER,
                f"{len(duplicates)} task number(s) are used more than once",
                {"task_numbers": duplicates[:20]},
            )
        )

    dangling = [
        {"task": task.task_number, "depends_on": dep} for task in tasks for dep in task.depends_on if dep not in seen
    ]
    if dangling:
        problems.append(
            PlanProblem(
                ProblemKind.DANGLING_DEPENDENCY,
                f"{len(dangling)} dependency(ies) point to tasks that do not exist",
                {"dependencies": dangling[:20]},
            )
        )

    # With duplicate numbers the graph is ambiguous (which task does "depends on 7" mean?): no cycle verdict.
    if not duplicates:
        problems.extend(_cycle_problems({t.task_number: [d for d in t.depends_on if d in seen] for t in tasks}))

    empty = [f"phase {phase.name!r}" for phase in plan.phases if not phase.milestones]
    empty += [
        f"milestone {milestone.name!r} of phase {phase.name!r}"
        for phase in plan.phases
        for milestone in phase.milestones
        if not milestone.tasks
    ]
    if not plan.phases:
        empty.insert(0, "the plan (no phases)")
    if empty:
        problems.append(
            PlanProblem(
                ProblemKind.EMPTY_CONTAINER, f"{len(empty)} empty container(s): {empty[0]}", {"empty": empty[:20]}
            )
        )

    problems.extend(_atomicity_problems(tasks, token_range))
    return problems


def _cycle_problems(graph: dict[int, list[int]]) -> list[PlanProblem]:
    cycle = _find_cycle(graph)
    if not cycle:
        return []
    path = " -> ".join(str(number) for number in cycle)
    return [
        PlanProblem(ProblemKind.DEPENDENCY_CYCLE, f"tasks depend on each other in a cycle: {path}", {"cycle": cycle})
    ]


def _atomicity_problems(tasks: Sequence[Task], token_range: tuple[int, int]) -> list[PlanProblem]:
    low, high = token_range
    outliers = [
        {"task": task.task_number, "estimated_tokens": task.estimated_tokens}
        for task in tasks
        if task.estimated_tokens is not None and not low <= task.estimated_tokens <= high
    ]
    if not outliers:
        return []
    return [
        PlanProblem(
            ProblemKind.NOT_ATOMIC,
            f"{len(outliers)} of {len(tasks)} tasks fall outside {low}-{high} estimated tokens",
            {"outliers": outliers[:20], "range": [low, high]},
        )
    ]


def _find_cycle(graph: dict[int, list[int]]) -> list[int] | None:
    """One dependency cycle as a closed path (first node repeated at the end), or ``None``."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for root in graph:
        if colour[root] != white:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(root, iter(graph[root]))]
        path = [root]
        colour[root] = grey
        while stack:
            node, children = stack[-1]
            advanced = False
            for child in children:
                if colour.get(child, black) == grey:
                    return path[path.index(child) :] + [child]
                if colour.get(child) == white:
                    colour[child] = grey
                    stack.append((child, iter(graph[child])))
                    path.append(child)
                    advanced = True
                    break
            if not advanced:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


# -- batched generation: a skeleton first, then tasks in batches --------------------------------


class SkeletonMilestone(_Open):
    """A milestone of a plan skeleton: what it covers and how many tasks it will get."""

    milestone_number: int | None = None
    name: str = Field(min_length=1)
    description: str = ""
    task_count: int = Field(ge=1)
    scope: str = ""


class SkeletonPhase(_Open):
    """A phase of a plan skeleton."""

    phase_number: int | None = None
    name: str = Field(min_length=1)
    description: str = ""
    milestones: list[SkeletonMilestone]


class PlanSkeleton(_Open):
    """A masterplan without its tasks: plan fields, phases and milestones with their task counts."""

    project_name: str = Field(min_length=1)
    description: str = ""
    tech_stack: dict[str, Any] = Field(default_factory=dict)
    architecture_style: str | None = None
    total_tasks: int = Field(ge=0)
    estimated_cost_usd: float | None = None
    estimated_duration_minutes: int | None = None
    phases: list[SkeletonPhase]


class TaskBatch(_Open):
    """One batch of tasks, numbered continuously after the batches before it."""

    tasks: list[Task]


@dataclass(frozen=True)
class MilestoneSlot:
    """The task numbers ``first``..``last`` a milestone of a skeleton owns (indexes are 0-based)."""

    phase_index: int
    milestone_index: int
    first: int
    last: int


def parse_skeleton(text: str) -> PlanSkeleton:
    """Extract and validate a plan skeleton from an LLM answer."""
    data = extract_json(text)
    try:
        return PlanSkeleton.model_validate(data)
    except ValidationError as exc:
        raise _violation("skeleton", exc) from None


def parse_task_batch(text: str) -> TaskBatch:
    """Extract and validate a batch of tasks from an LLM answer (``{"tasks": [...]}`` or a bare list)."""
    data = extract_json(text)
    if isinstance(data, list):
        data = {"tasks": data}
    try:
        return TaskBatch.model_validate(data)
    except ValidationError as exc:
        raise _violation("task batch", exc) from None


def skeleton_slots(skeleton: PlanSkeleton) -> list[MilestoneSlot]:
    """Each milestone's range of task numbers: numbering is continuous from 1, in plan order."""
    slots = []
    next_number = 1
    for phase_index, phase in enumerate(skeleton.phases):
        for milestone_index, milestone in enumerate(phase.milestones):
            last = next_number + milestone.task_count - 1
            slots.append(MilestoneSlot(phase_index, milestone_index, next_number, last))
            next_number = last + 1
    return slots


def skeleton_problems(skeleton: PlanSkeleton) -> list[PlanProblem]:
    """What is wrong with a skeleton: a total that disagrees with the milestones' counts, empty phases."""
    problems = []
    counted = sum(m.task_count for phase in skeleton.phases for m in phase.milestones)
    if skeleton.total_tasks != counted:
        problems.append(
            PlanProblem(
                ProblemKind.TOTAL_MISMATCH,
                f"the skeleton declares {skeleton.total_tasks} tasks but its milestones add up to {counted}",
                {"declared": skeleton.total_tasks, "counted": counted},
            )
        )
    empty = [f"phase {phase.name!r}" for phase in skeleton.phases if not phase.milestones]
    if not skeleton.phases:
        empty.insert(0, "the skeleton (no phases)")
    if empty:
        problems.append(
            PlanProblem(
                ProblemKind.EMPTY_CONTAINER, f"{len(empty)} empty container(s): {empty[0]}", {"empty": empty[:20]}
            )
        )
    return problems


def assemble_plan(skeleton: PlanSkeleton, tasks: Iterable[Task]) -> MasterPlan:
    """The whole plan: the skeleton's phases and milestones with each task in the milestone owning its number.

    A task whose number no milestone owns goes to the last milestone, so it is counted
    (and reported by :func:`plan_problems`), never dropped.
    """
    slots = skeleton_slots(skeleton)
    buckets: dict[tuple[int, int], list[Task]] = {(s.phase_index, s.milestone_index): [] for s in slots}
    for task in sorted(tasks, key=lambda t: t.task_number):
        slot = next((s for s in slots if s.first <= task.task_number <= s.last), slots[-1] if slots else None)
        if slot is not None:
            buckets[(slot.phase_index, slot.milestone_index)].append(task)
    phases = []
    for phase_index, phase in enumerate(skeleton.phases):
        milestones = [
            Milestone(
                milestone_number=milestone.milestone_number,
                name=milestone.name,
                description=milestone.description,
                tasks=buckets.get((phase_index, milestone_index), []),
            )
            for milestone_index, milestone in enumerate(phase.milestones)
        ]
        phases.append(
            Phase(
                phase_number=phase.phase_number, name=phase.name, description=phase.description, milestones=milestones
            )
        )
    return MasterPlan(
        project_name=skeleton.project_name,
        description=skeleton.description,
        tech_stack=dict(skeleton.tech_stack),
        architecture_style=skeleton.architecture_style,
        total_tasks=skeleton.total_tasks,
        estimated_cost_usd=skeleton.estimated_cost_usd,
        estimated_duration_minutes=skeleton.estimated_duration_minutes,
        phases=phases,
    )


def batch_problems(
    earlier: Sequence[Task],
    batch: Sequence[Task],
    *,
    first: int,
    last: int | None = None,
    total: int | None = None,
    token_range: tuple[int, int] = ATOMIC_TOKEN_RANGE,
) -> list[PlanProblem]:
    """What is wrong with one batch, judged together with the batches committed before it.

    The batch must hold exactly the task numbers ``first``..``last`` (when ``last`` is not
    given: as many as it lists, never past ``total``); numbers must not repeat earlier
    ones; every dependency must name a task of this or an earlier batch; no cycle.
    """
    problems: list[PlanProblem] = []
    numbers = [task.task_number for task in batch]
    if last is None:
        last = first + len(batch) - 1
        if total is not None:
            last = min(last, total)
    wanted = set(range(first, last + 1))
    missing = sorted(wanted - set(numbers))
    unexpected = sorted(set(numbers) - wanted)
    if missing or unexpected:
        problems.append(
            PlanProblem(
                ProblemKind.BATCH_RANGE,
                f"the batch for tasks {first}-{last} misses {len(missing)} and adds {len(unexpected)} task number(s)",
                {"first": first, "last": last, "missing": missing[:20], "unexpected": unexpected[:20]},
            )
        )
    earlier_numbers = {task.task_number for task in earlier}
    counts: dict[int, int] = {}
    for number in numbers:
        counts[number] = counts.get(number, 0) + 1
    duplicates = sorted(n for n, count in counts.items() if count > 1 or n in earlier_numbers)
    if duplicates:
        problems.append(
            PlanProblem(
                ProblemKind.DUPLICATE_TASK_NUMBER,
                f"{len(duplicates)} task number(s) are used more than once",
                {"task_numbers": duplicates[:20]},
            )
        )
    known = earlier_numbers | set(numbers)
    dangling = [{"task": t.task_number, "depends_on": d} for t in batch for d in t.depends_on if d not in known]
    if dangling:
        problems.append(
            PlanProblem(
                ProblemKind.DANGLING_DEPENDENCY,
                f"{len(dangling)} dependency(ies) point to tasks that do not exist in this or an earlier batch",
                {"dependencies": dangling[:20]},
            )
        )
    graph = {t.task_number: [d for d in t.depends_on if d in known] for t in [*earlier, *batch]}
    problems.extend(_cycle_problems(graph))
    problems.extend(_atomicity_problems(batch, token_range))
    return problems
