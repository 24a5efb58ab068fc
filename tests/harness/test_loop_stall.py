"""A flow that blocks its own event loop with a synchronous LLM call is told so (LLM017), with the line."""

from __future__ import annotations

import os
from typing import Any

import anthropic
import pytest

from harness.runner import FlowRequest, RunOptions, run_flow
from harness.target import Target
from probes.core import Level, Outcome
from tests.support.wire_server import Delayed, MessageReply, WireScript

#: How long the stand-in takes to answer: longer than the default 1 s threshold.
SLOW_S = 1.4


async def flow_with_a_sync_call_in_async_code(request: str, user_id: str | None, session_id: str | None) -> str:
    """A shim in the shape of the measured application: a sync SDK client called inside async code."""
    client = anthropic.Anthropic(max_retries=0, timeout=10)
    message = client.messages.create(  # the line LLM017 must name
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": request}]
    )
    client.close()
    return message.content[0].text


async def flow_with_an_async_call(request: str, user_id: str | None, session_id: str | None) -> str:
    """The same call through the async client: the loop keeps running while it waits."""
    client = anthropic.AsyncAnthropic(max_retries=0, timeout=10)
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": request}]
    )
    await client.close()
    return message.content[0].text


def _run(stand_in_apis: Any, flow: Any, database_url: str) -> Any:
    script = WireScript(anthropic=[Delayed(MessageReply('{"note": "slow"}'), SLOW_S)])
    settings = stand_in_apis(script, database_url)
    return run_flow(settings, FlowRequest("plan a bakery CRM", "u-1", "s-1"), target=Target.with_flow(flow), options=RunOptions())


@pytest.mark.slow
def test_sync_call_in_async_code_is_llm017_naming_the_line(stand_in_apis: Any, flow_database_url: str) -> None:
    """The loop stood still while the sync call waited: LLM017, a warning, naming the call's line and how long."""
    report = _run(stand_in_apis, flow_with_a_sync_call_in_async_code, flow_database_url).report
    (stalled,) = [o for o in report.outcomes if o.check.id == "LLM017"]
    assert stalled.outcome is Outcome.WARNED
    finding = stalled.findings[0]
    assert finding.level is Level.WARNING and finding.evidence["stalled_s"] >= 1.0
    line = next(n for n, text in enumerate(open(__file__), 1) if "the line LLM017 must name" in text)
    assert finding.evidence["blocking"] == f"{os.path.basename(os.path.dirname(__file__))}/{os.path.basename(__file__)}:{line}"
    assert "a synchronous anthropic call" in finding.message


@pytest.mark.slow
def test_async_call_leaves_the_loop_running(stand_in_apis: Any, flow_database_url: str) -> None:
    """The async client waits without blocking: LLM017 passes."""
    report = _run(stand_in_apis, flow_with_an_async_call, flow_database_url).report
    assert [o.outcome for o in report.outcomes if o.check.id == "LLM017"] == [Outcome.PASSED]
