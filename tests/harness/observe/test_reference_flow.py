"""The watchers around the reference flow called through the target seam: real SDKs, real PostgreSQL, no hooks."""

from __future__ import annotations

import json
from dataclasses import fields

import anthropic  # imported before the run: see the note below
import openai
import pytest

from harness.observe.http import HttpWatch
from harness.observe.loop import LoopWatch
from harness.observe.timeline import LLMExchange, LoopStalled, Timeline
from harness.sdk import transport_of
from harness.target import Target, environment, reference_config
from tests.support import content
from tests.support.scenarios import batch_texts, skeleton_of
from tests.support.wire_server import EmbeddingReply, MessageReply, WireScript

# The flow imports the SDKs inside its async code (harness/flow/llm.py, build_clients); the first
# `import openai` in a process holds the loop for 2-4 s on these machines, which this watcher
# reports as a stall at that line. Importing them here keeps this test about a warmed-up run.
KIND = "task_manager"


@pytest.mark.slow
def test_every_llm_call_of_the_reference_flow_is_recorded_at_its_line(stand_in_apis, flow_database_url) -> None:
    """A healthy batched run gives one complete exchange per LLM call, each at the flow's own line, and no loop stall."""
    plan = content.masterplan_for(KIND)
    batches = batch_texts(plan)
    script = WireScript(
        anthropic=[
            MessageReply(content.render_reply(content.discovery_for(KIND), "fenced")),
            MessageReply(json.dumps(skeleton_of(plan))),
            *(MessageReply(text) for text in batches),
        ],
        openai=[EmbeddingReply()],
    )
    settings = stand_in_apis(script, flow_database_url)
    target = Target(reference_config())
    environ = {name: getattr(settings, field) for field, name in settings.ENV_NAMES.items()}
    timeline = Timeline()
    with environment(environ), HttpWatch(timeline, target.code), LoopWatch(timeline, target.code):
        result = target.call(content.request_for(KIND), "user-1", "sid-1")

    assert result.masterplan_id is not None
    exchanges = timeline.of(LLMExchange)
    assert [exchange.api for exchange in exchanges].count("messages") == 2 + len(batches)
    assert [exchange.api for exchange in exchanges].count("embeddings") >= 1
    assert all(exchange.answered and exchange.complete and exchange.watch_error is None for exchange in exchanges)
    tasks = "".join(exchange.text or "" for exchange in exchanges if exchange.api == "messages").count('"task_number"')
    assert tasks >= len(list(content.iter_tasks(plan)))
    for exchange in exchanges:
        assert exchange.caller is not None and exchange.caller.file.startswith("harness/flow/"), exchange.caller
        sdk = anthropic if exchange.provider == "anthropic" else openai  # httpx2 from anthropic 1 / openai 3 on
        assert exchange.transport == f"{transport_of(sdk)}/async" and not exchange.blocking_loop
        shown = repr(exchange) + str({f.name: getattr(exchange, f.name) for f in fields(exchange)})
        assert settings.anthropic_api_key not in shown and settings.openai_api_key not in shown
    assert timeline.of(LoopStalled) == []
