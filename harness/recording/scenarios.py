"""The scenarios our own cassettes are recorded from, and the command that records them.

Each scenario scripts what a local stand-in for the Anthropic and OpenAI APIs answers
(see :mod:`harness.recording.wire_server`); the real SDKs talk to it over HTTP while
vcrpy records, exactly as ``harness record`` does against the real APIs. Every scenario
states the verdict it is meant to produce; recording fails if the run disagrees, so a
cassette never carries an expectation nobody intended.

Run ``python -m harness.recording.scenarios [--force] [NAME ...]`` to (re)make them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.recording import content
from harness.recording.wire_server import (
    EmbeddingReply,
    ErrorReply,
    MessageReply,
    StreamErrorReply,
    WireScript,
    WireServer,
)

__all__ = ["SCENARIOS", "Scenario", "make_cassettes"]

#: What a recorded masterplan's token ceiling looks like in the truncated scenarios.
TRUNCATED_OUTPUT_TOKENS = 32000


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


def _discovery(kind: str, style: str = "plain") -> MessageReply:
    return MessageReply(content.render_reply(content.discovery_for(kind), style))


def _plan_text(kind: str, style: str = "plain", plan: dict | None = None) -> str:
    return content.render_reply(plan if plan is not None else content.masterplan_for(kind), style)


def _healthy(kind: str, discovery_style: str = "plain", plan_style: str = "plain") -> Callable[[], WireScript]:
    return lambda: WireScript(
        anthropic=[_discovery(kind, discovery_style), MessageReply(_plan_text(kind, plan_style))],
        openai=[EmbeddingReply()],
    )


def _plan_reply(kind: str, reply: Callable[[str], object]) -> Callable[[], WireScript]:
    return lambda: WireScript(anthropic=[_discovery(kind), reply(_plan_text(kind))], openai=[EmbeddingReply()])


def _mutated_plan(kind: str, mutate: Callable[[dict], dict]) -> Callable[[], WireScript]:
    return lambda: WireScript(
        anthropic=[_discovery(kind), MessageReply(_plan_text(kind, plan=mutate(content.masterplan_for(kind))))],
        openai=[EmbeddingReply()],
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "healthy-task-manager",
        "A team task manager: discovery, examples, a 109-task plan streamed, saved and read back.",
        "task_manager",
        "pass",
        _healthy("task_manager"),
    ),
    Scenario(
        "healthy-online-shop",
        "An online coffee shop: fenced discovery JSON, a 117-task plan wrapped in prose.",
        "online_shop",
        "pass",
        _healthy("online_shop", discovery_style="fenced", plan_style="prose"),
    ),
    Scenario(
        "healthy-clinic-booking",
        "A physiotherapy clinic booking system: prose-wrapped discovery, fenced 110-task plan.",
        "clinic_booking",
        "pass",
        _healthy("clinic_booking", discovery_style="prose", plan_style="fenced"),
    ),
    Scenario(
        "masterplan-max-tokens",
        "The masterplan stream stops at max_tokens with its JSON cut off mid-plan (the seed's suspected failure).",
        "task_manager",
        "llm:LLM001",
        _plan_reply(
            "task_manager",
            lambda text: MessageReply(
                content.truncate_text(text, 0.55), stop_reason="max_tokens", output_tokens=TRUNCATED_OUTPUT_TOKENS
            ),
        ),
    ),
    Scenario(
        "masterplan-stream-cut",
        "The masterplan stream ends after its text with no message_delta or message_stop: no stop_reason.",
        "online_shop",
        "llm:LLM002",
        _plan_reply("online_shop", lambda text: MessageReply(content.truncate_text(text, 0.4), cut_stream=True)),
    ),
    Scenario(
        "masterplan-stream-error-event",
        "The masterplan stream carries an SSE error event (overloaded_error) part-way through.",
        "clinic_booking",
        "llm:LLM015",
        _plan_reply("clinic_booking", lambda text: StreamErrorReply(after_chars=6000, text=text)),
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
        "One task depends on a task number that does not exist.",
        "online_shop",
        "parse:PARSE006",
        _mutated_plan("online_shop", content.with_dangling_dependency),
    ),
    Scenario(
        "masterplan-dependency-cycle",
        "Three tasks depend on each other in a loop.",
        "clinic_booking",
        "parse:PARSE007",
        _mutated_plan("clinic_booking", content.with_cycle),
    ),
    Scenario(
        "masterplan-wrong-total",
        "total_tasks declares more tasks than the plan lists.",
        "task_manager",
        "parse:PARSE004",
        _mutated_plan("task_manager", content.with_wrong_total),
    ),
    Scenario(
        "discovery-rate-limited",
        "The discovery call is rate-limited (429 with retry-after); the SDK is told not to retry.",
        "online_shop",
        "llm:LLM006",
        lambda: WireScript(anthropic=[ErrorReply.for_status(429, headers={"retry-after": "30"})]),
    ),
    Scenario(
        "discovery-overloaded",
        "The discovery call meets an overloaded API (529).",
        "clinic_booking",
        "llm:LLM007",
        lambda: WireScript(anthropic=[ErrorReply.for_status(529)]),
    ),
    Scenario(
        "discovery-bad-key",
        "The API rejects the key (401 authentication_error).",
        "task_manager",
        "llm:LLM003",
        lambda: WireScript(anthropic=[ErrorReply.for_status(401)]),
    ),
    Scenario(
        "embeddings-failing",
        "The embeddings call fails (500): the plan is generated without examples; a warning, not a failure.",
        "clinic_booking",
        "pass",
        lambda: WireScript(
            anthropic=[_discovery("clinic_booking"), MessageReply(_plan_text("clinic_booking"))],
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
    from harness.flow.database import migrate
    from harness.postgres import DatabaseFactory, start_cluster
    from harness.record import record_cassette
    from harness.runner import FlowRequest

    chosen = [s for s in SCENARIOS if not names or s.name in names]
    unknown = sorted(set(names or ()) - {s.name for s in SCENARIOS})
    if unknown:
        raise KeyError(f"unknown scenario(s): {', '.join(unknown)}")
    written = []
    with start_cluster() as cluster:
        factory = DatabaseFactory(cluster, prepare_template=migrate)
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
                        out_dir / f"{scenario.name}.yaml",
                        name=scenario.name,
                        description=scenario.description,
                        request=FlowRequest(content.request_for(scenario.kind), scenario.user_id, scenario.session_id),
                        settings=settings,
                        made_with="harness.recording.wire_server (local stand-in for the Anthropic and OpenAI APIs)",
                        force=force,
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
                    f"{scenario.name}: produced {verdict} (intended {scenario.intended}); unused replies: {left or 'none'}"
                )
            written.append(recorded.path)
            print(f"recorded {recorded.path} -> {verdict}")
    return written


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
