"""The scenarios our own cassettes are recorded from, and the command that records them.

Each scenario scripts what a local stand-in for the Anthropic and OpenAI APIs answers
(see :mod:`tests.support.wire_server`); the real SDKs talk to it over HTTP while
vcrpy records, exactly as ``harness record`` does against the real APIs. Every scenario
states the verdict it is meant to produce; recording fails if the run disagrees, so a
cassette never carries an expectation nobody intended.

Run ``python -m tests.support.scenarios [--force] [NAME ...]`` to (re)make them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.config import DEFAULT_MODELS, Models
from harness.config import RETRIES as DEFAULT_RETRIES
from harness.contract import PlanSkeleton
from harness.flow.batching import plan_batches
from tests.support import content
from tests.support.wire_server import (
    EmbeddingReply,
    ErrorReply,
    MessageReply,
    StreamErrorReply,
    WireScript,
    WireServer,
)

__all__ = [
    "SCENARIOS",
    "Scenario",
    "batch_texts",
    "capped",
    "healthy_script",
    "make_cassettes",
    "skeleton_of",
]

#: Output-token ceiling of every masterplan call in the single-call versus batched comparison.
COMPARISON_MAX_TOKENS = 16000
#: The stand-in's estimate of output tokens: one token per four characters (as its usage counts).
CHARS_PER_TOKEN = 4

_SINGLE_CALL = Models(generation_mode="single", masterplan_max_tokens=COMPARISON_MAX_TOKENS)
_BATCHED = Models(generation_mode="batched", batch_max_tokens=COMPARISON_MAX_TOKENS)


@dataclass(frozen=True)
class Scenario:
    """A scripted conversation with the APIs and the verdict it must produce."""

    name: str
    description: str
    kind: str
    intended: str
    script: Callable[[], WireScript]
    user_id: str = "user-7f3a"
    session_id: str = "sid-2b9c41"
    models: Models = DEFAULT_MODELS


def _discovery(kind: str, style: str = "plain") -> MessageReply:
    return MessageReply(content.render_reply(content.discovery_for(kind), style))


def _wrap(doc: dict, style: str, what: str) -> str:
    """``doc`` as a model would answer with it: bare, fenced, or between paragraphs (no braces in the prose)."""
    body = json.dumps(doc, indent=2, ensure_ascii=False)
    if style == "fenced":
        return f"Here is {what}, as JSON:\n\n```json\n{body}\n```\n\nEvery task number follows on from the last."
    if style == "prose":
        return f"Below is {what}.\n\n{body}\n\nEach task is small enough to implement and review on its own."
    return body


def skeleton_of(plan: dict) -> dict:
    """The skeleton answer of a full plan: its fields, phases and milestones with task counts, no tasks."""
    skeleton = {key: value for key, value in plan.items() if key != "phases"}
    skeleton["phases"] = [
        {
            **{key: value for key, value in phase.items() if key != "milestones"},
            "milestones": [
                {
                    **{key: value for key, value in milestone.items() if key != "tasks"},
                    "task_count": len(milestone["tasks"]),
                    "scope": f"from {milestone['tasks'][0]['title']!r} to {milestone['tasks'][-1]['title']!r}",
                }
                for milestone in phase["milestones"]
            ],
        }
        for phase in plan["phases"]
    ]
    return skeleton


def batch_texts(plan: dict, max_tasks: int = DEFAULT_MODELS.batch_max_tasks, style: str = "plain") -> list[str]:
    """The answers to the batch calls for ``plan``, cut exactly as the flow cuts its skeleton into batches."""
    by_number = {task["task_number"]: task for task in content.iter_tasks(plan)}
    batches = plan_batches(PlanSkeleton.model_validate(skeleton_of(plan)), max_tasks)
    texts = []
    for batch in batches:
        tasks = [by_number[n] for n in range(batch.first, batch.last + 1) if n in by_number]
        texts.append(_wrap({"tasks": tasks}, style, f"batch {batch.number}: tasks {batch.first} to {batch.last}"))
    return texts


def capped(text: str, max_tokens: int) -> MessageReply:
    """What an API with an output ceiling of ``max_tokens`` answers: the text, cut at the ceiling if it is longer."""
    if len(text) // CHARS_PER_TOKEN <= max_tokens:
        return MessageReply(text)
    return MessageReply(text[: max_tokens * CHARS_PER_TOKEN], stop_reason="max_tokens", output_tokens=max_tokens)


def _batched(
    kind: str,
    *,
    discovery_style: str = "plain",
    style: str = "plain",
    plan: dict | None = None,
    skeleton: dict | None = None,
    replace: dict[int, Callable[[str], list]] | None = None,
    openai: list | None = None,
    until: int | None = None,
) -> Callable[[], WireScript]:
    """Discovery, skeleton, then one reply per batch up to batch ``until``; ``replace`` swaps batch N's reply."""

    def script() -> WireScript:
        full = plan if plan is not None else content.masterplan_for(kind)
        outline = skeleton if skeleton is not None else skeleton_of(full)
        replies: list = [_discovery(kind, discovery_style), MessageReply(_wrap(outline, style, "the plan skeleton"))]
        for number, text in enumerate(batch_texts(full, style=style), start=1):
            if until is not None and number > until:
                break  # the flow stops at the failing batch: nothing after it is asked for
            replies += (replace or {}).get(number, lambda text: [MessageReply(text)])(text)
        return WireScript(anthropic=replies, openai=openai if openai is not None else [EmbeddingReply()])

    return script


def healthy_script(kind: str, *, openai: list | None = None) -> WireScript:
    """Everything a healthy batched run of ``kind`` is answered with: discovery, skeleton, every batch, embeddings."""
    return _batched(kind, openai=openai)()


def _single_call(kind: str, reply: Callable[[str], object]) -> Callable[[], WireScript]:
    return lambda: WireScript(
        anthropic=[_discovery(kind), reply(content.render_reply(content.masterplan_for(kind)))],
        openai=[EmbeddingReply()],
    )


def _skeleton_with_wrong_total(kind: str) -> dict:
    outline = skeleton_of(content.masterplan_for(kind))
    outline["total_tasks"] += 7
    return outline


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "healthy-task-manager",
        "A team task manager: discovery, examples, a skeleton, then 109 tasks in 3 batches, each saved as it came.",
        "task_manager",
        "pass",
        _batched("task_manager"),
    ),
    Scenario(
        "healthy-online-shop",
        "An online coffee shop: fenced discovery JSON, skeleton and batches wrapped in prose (117 tasks).",
        "online_shop",
        "pass",
        _batched("online_shop", discovery_style="fenced", style="prose"),
    ),
    Scenario(
        "healthy-clinic-booking",
        "A physiotherapy clinic booking system: prose-wrapped discovery, fenced skeleton and batches (110 tasks).",
        "clinic_booking",
        "pass",
        _batched("clinic_booking", discovery_style="prose", style="fenced"),
    ),
    Scenario(
        "masterplan-max-tokens",
        f"Single-call mode: the whole plan in one call stops at its {COMPARISON_MAX_TOKENS}-token ceiling with its "
        "JSON cut off (the seed's failure). Compare masterplan-max-tokens-batched.",
        "task_manager",
        "llm:LLM001",
        _single_call("task_manager", lambda text: capped(text, COMPARISON_MAX_TOKENS)),
        models=_SINGLE_CALL,
    ),
    Scenario(
        "healthy-single-call",
        "Single-call mode with room to answer: the whole online-shop plan in one streamed call, saved with every "
        "child and dependency in one unit of work (the single-call save path, kept honest).",
        "online_shop",
        "pass",
        _single_call("online_shop", lambda text: MessageReply(text)),
        models=Models(generation_mode="single"),
    ),
    Scenario(
        "masterplan-max-tokens-batched",
        f"The same request with the same {COMPARISON_MAX_TOKENS}-token ceiling per call, in batched mode: every "
        "call fits, the plan is complete.",
        "task_manager",
        "pass",
        _batched(
            "task_manager",
            replace=dict.fromkeys(range(1, 10), lambda text: [capped(text, COMPARISON_MAX_TOKENS)]),
        ),
        models=_BATCHED,
    ),
    Scenario(
        "masterplan-batch-2-max-tokens",
        "Batch 2 stops at max_tokens: batch 1 stays committed, the plan is failed with batch 2 recorded.",
        "online_shop",
        "llm:LLM001",
        _batched(
            "online_shop",
            replace={
                2: lambda text: [
                    MessageReply(content.truncate_text(text, 0.6), stop_reason="max_tokens", output_tokens=16000)
                ]
            },
            until=2,
        ),
    ),
    Scenario(
        "masterplan-batch-3-stream-cut",
        "The batch 3 stream ends after its text with no message_delta or message_stop: no stop_reason.",
        "clinic_booking",
        "llm:LLM002",
        _batched(
            "clinic_booking",
            replace={3: lambda text: [MessageReply(content.truncate_text(text, 0.4), cut_stream=True)]},
        ),
    ),
    Scenario(
        "masterplan-stream-error-event",
        "The batch 1 stream carries an SSE error event (overloaded_error) part-way through; not retried.",
        "clinic_booking",
        "llm:LLM015",
        _batched("clinic_booking", replace={1: lambda text: [StreamErrorReply(after_chars=6000, text=text)]}, until=1),
    ),
    Scenario(
        "masterplan-batch-1-rate-limited",
        "Batch 1 is rate-limited once (429, retry-after 1): the flow waits as asked, retries, and the plan completes.",
        "task_manager",
        "pass",
        _batched(
            "task_manager",
            replace={1: lambda text: [ErrorReply.for_status(429, headers={"retry-after": "1"}), MessageReply(text)]},
        ),
    ),
    Scenario(
        "discovery-missing-fields",
        "The discovery JSON lacks value_objects and domain_events: reported with their field paths.",
        "task_manager",
        "parse:PARSE003",
        lambda: WireScript(
            anthropic=[
                MessageReply(
                    content.render_reply(
                        content.without_fields(content.discovery_for("task_manager"), "value_objects", "domain_events")
                    )
                )
            ]
        ),
    ),
    Scenario(
        "masterplan-dangling-dependency",
        "A task of batch 2 depends on a task number that does not exist.",
        "online_shop",
        "parse:PARSE006",
        lambda: _batched(
            "online_shop", plan=content.with_dangling_dependency(content.masterplan_for("online_shop")), until=2
        )(),
    ),
    Scenario(
        "masterplan-dependency-cycle",
        "Three tasks of one milestone in batch 1 depend on each other in a loop: caught in that batch.",
        "clinic_booking",
        "parse:PARSE007",
        lambda: _batched(
            "clinic_booking", plan=content.with_cycle(content.masterplan_for("clinic_booking")), until=1
        )(),
    ),
    Scenario(
        "masterplan-wrong-total",
        "The skeleton's total_tasks disagrees with its milestones' task counts.",
        "task_manager",
        "parse:PARSE004",
        lambda: WireScript(
            anthropic=[
                _discovery("task_manager"),
                MessageReply(_wrap(_skeleton_with_wrong_total("task_manager"), "plain", "the plan skeleton")),
            ],
            openai=[EmbeddingReply()],
        ),
    ),
    Scenario(
        "discovery-rate-limited",
        "The discovery call is rate-limited with retry-after 30 s, longer than the flow will wait: no retry.",
        "online_shop",
        "llm:LLM006",
        lambda: WireScript(anthropic=[ErrorReply.for_status(429, headers={"retry-after": "30"})]),
    ),
    Scenario(
        "discovery-overloaded",
        "The discovery call meets an overloaded API (529) on all three attempts, with backoff between them.",
        "clinic_booking",
        "llm:LLM007",
        lambda: WireScript(anthropic=[ErrorReply.for_status(529)] * DEFAULT_RETRIES.attempts),
    ),
    Scenario(
        "discovery-bad-key",
        "The API rejects the key (401 authentication_error): not retried.",
        "task_manager",
        "llm:LLM003",
        lambda: WireScript(anthropic=[ErrorReply.for_status(401)]),
    ),
    Scenario(
        "embeddings-failing",
        "The embeddings call fails (500): the plan is generated without examples; a warning, not a failure.",
        "clinic_booking",
        "pass",
        _batched(
            "clinic_booking",
            openai=[ErrorReply(500, "server_error", "The server had an error while processing your request.")],
        ),
    ),
)

#: Keys the SDKs send while recording against the stand-in; redaction must remove them.
RECORDING_ANTHROPIC_KEY = "sk-ant-recording-5f0c1d9e2a7b4c3d"
RECORDING_OPENAI_KEY = "sk-proj-recording-8e2d4a6c0b1f3e5d"


def make_cassettes(out_dir: Path, names: list[str] | None = None, *, force: bool = False) -> list[Path]:
    """Record the named scenarios (all by default) into ``out_dir``; returns the files written."""
    from harness.config import Settings
    from harness.postgres import DatabaseFactory, start_cluster
    from harness.record import record_cassette
    from harness.runner import FlowRequest
    from harness.target import Target, reference_config

    reference = Target(reference_config())

    chosen = [s for s in SCENARIOS if not names or s.name in names]
    unknown = sorted(set(names or ()) - {s.name for s in SCENARIOS})
    if unknown:
        raise KeyError(f"unknown scenario(s): {', '.join(unknown)}")
    written = []
    with start_cluster() as cluster:
        factory = DatabaseFactory(cluster, prepare_template=reference.build_schema)
        for scenario in chosen:
            database_url = factory.new_database()
            try:
                script = scenario.script()
                # One stand-in per API, so each recorded URL maps back to exactly one official host.
                with (
                    WireServer(WireScript(anthropic=script.anthropic)) as anthropic_api,
                    WireServer(WireScript(openai=script.openai)) as openai_api,
                ):
                    settings = Settings(
                        database_url=database_url,
                        anthropic_api_key=RECORDING_ANTHROPIC_KEY,
                        openai_api_key=RECORDING_OPENAI_KEY,
                        anthropic_base_url=anthropic_api.base_url,
                        openai_base_url=openai_api.base_url + "/v1",
                    )
                    recorded = record_cassette(
                        _recording_path(out_dir / f"{scenario.name}.yaml"),
                        name=scenario.name,
                        description=scenario.description,
                        request=FlowRequest(content.request_for(scenario.kind), scenario.user_id, scenario.session_id),
                        settings=settings,
                        made_with="tests.support.wire_server (local stand-in for the Anthropic and OpenAI APIs)",
                        force=force,
                        target=reference,
                        flow_env=_model_env(scenario.models),
                    )
                    left = {
                        api: replies
                        for server in (anthropic_api, openai_api)
                        for api, replies in server.remaining().items()
                        if replies
                    }
            finally:
                factory.drop(database_url)
            verdict = recorded.run.report.verdict
            if verdict != scenario.intended or left:
                recorded.path.unlink(missing_ok=True)
                raise RuntimeError(
                    f"{scenario.name}: produced {verdict} (intended {scenario.intended}); unused replies: {_count(left) or 'none'}"
                )
            written.append(recorded.path)
            print(f"recorded {recorded.path} -> {verdict}")
    return written


def _recording_path(path: Path) -> Path:
    """Where to write ``path``: through a link to the file it names, so a linked cassette stays one file.

    ``cassettes/healthy-task-manager.yaml`` links to the cassette the package ships for
    ``harness diagnose --llm replay`` (``harness/data/diagnose-canary.yaml``); re-recording it
    rewrites that file instead of replacing the link with a copy.
    """
    return path.resolve() if path.is_symlink() else path


def _model_env(models: Models) -> dict[str, str]:
    """The ``MASTERPLAN_*`` settings that make the reference flow use ``models`` (only where they differ)."""
    from dataclasses import fields

    from harness.config import MODELS_ENV_PREFIX

    return {
        MODELS_ENV_PREFIX + item.name.upper(): str(getattr(models, item.name))
        for item in fields(Models)
        if getattr(models, item.name) != getattr(DEFAULT_MODELS, item.name)
    }


def _count(left: dict) -> dict[str, int]:
    return {api: len(replies) for api, replies in left.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the project's cassettes against the local stand-in APIs.")
    parser.add_argument("names", nargs="*", help="scenario names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("cassettes"), help="folder to write to (default: cassettes)")
    parser.add_argument("--force", action="store_true", help="overwrite existing cassettes")
    args = parser.parse_args(argv)
    try:
        make_cassettes(args.out, args.names, force=args.force)
    except (KeyError, FileExistsError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
