"""The LLM traffic watcher with the first SDK generations (anthropic 0.x / openai 1.x on httpx 0.2x).

Skipped unless such an SDK is installed. CI runs it in the lowest-versions venv (.ci/run); locally:
``python3 -m venv .venv-lowest && . .venv-lowest/bin/activate && pip install -c constraints/lowest.txt -e ".[test]"``
and ``pytest tests/harness/observe/test_http_old_sdks.py``.
"""

from __future__ import annotations

import asyncio

import pytest

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
if int(anthropic.__version__.split(".")[0]) >= 1:
    pytest.skip("needs anthropic 0.x (built on httpx, not httpx2)", allow_module_level=True)

from harness.observe.http import HttpWatch
from harness.observe.timeline import LLMExchange, Timeline
from tests.support.wire_server import (
    EmbeddingReply,
    ErrorReply,
    MessageReply,
    StreamErrorReply,
    WireScript,
    WireServer,
)

FAKE_ANTHROPIC_KEY = "sk-ant-test-3b8f0e1d7c6a5b4e"
FAKE_OPENAI_KEY = "sk-proj-test-9a8b7c6d5e4f3a2b"
MESSAGES = [{"role": "user", "content": "Plan a bookshop"}]
PLAN = '{"project_name": "Bookshop", "phases": [' + ", ".join(f'{{"n": {i}}}' for i in range(60)) + "]}"


def test_anthropic_0x_sync_async_streamed_and_failing_calls_are_recorded() -> None:
    """Sync and async, plain and streamed, rate-limited, stream-error and cut calls of anthropic 0.x are on record."""
    script = WireScript(
        anthropic=[
            MessageReply(PLAN, input_tokens=7, output_tokens=70),
            MessageReply(PLAN, chunk_chars=9),
            MessageReply("async plain", input_tokens=5, output_tokens=2),
            MessageReply("async", chunk_chars=2),
            ErrorReply.for_status(429),
            StreamErrorReply(after_chars=30),
            MessageReply(PLAN, cut_stream=True),
        ],
        openai=[EmbeddingReply(dimensions=8)],
    )
    timeline = Timeline()
    with WireServer(script) as server, HttpWatch(timeline):
        client = anthropic.Anthropic(api_key=FAKE_ANTHROPIC_KEY, base_url=server.base_url, max_retries=0, timeout=10)
        client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
        with client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            assert stream.get_final_text() == PLAN

        async def streamed_async() -> None:
            async_client = anthropic.AsyncAnthropic(
                api_key=FAKE_ANTHROPIC_KEY, base_url=server.base_url, max_retries=0, timeout=10
            )
            await async_client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
            async for _event in await async_client.messages.create(
                model="m", max_tokens=10, messages=MESSAGES, stream=True
            ):
                pass

        asyncio.run(streamed_async())
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(model="m", max_tokens=10, messages=MESSAGES)
        with pytest.raises(anthropic.APIError):
            for _event in client.messages.create(model="m", max_tokens=10, messages=MESSAGES, stream=True):
                pass
        with client.messages.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            stream.get_final_text()
        embedder = openai.OpenAI(api_key=FAKE_OPENAI_KEY, base_url=server.base_url + "/v1", max_retries=0, timeout=10)
        embedder.embeddings.create(model="text-embedding-3-small", input=["a", "b"])

    plain, streamed, async_plain, in_loop, limited, failed, cut, embedded = timeline.of(LLMExchange)
    assert (plain.transport, plain.text, plain.usage["output_tokens"], plain.complete) == ("httpx/sync", PLAN, 70, True)
    assert (streamed.text, streamed.complete, streamed.stop_reason) == (PLAN, True, "end_turn")
    assert (async_plain.transport, async_plain.text, async_plain.stop_reason, async_plain.streamed) == (
        "httpx/async",
        "async plain",
        "end_turn",
        False,
    )
    assert (async_plain.usage["input_tokens"], async_plain.usage["output_tokens"]) == (5, 2)
    assert (in_loop.transport, in_loop.text, in_loop.complete) == ("httpx/async", "async", True)
    assert (limited.status, limited.headers["retry-after"], limited.api_error_type) == (429, "1", "rate_limit_error")
    assert failed.stream_error and failed.api_error_type == "overloaded_error"
    assert (cut.complete, cut.stop_reason, cut.text) == (False, None, PLAN)
    assert (embedded.provider, embedded.vectors) == ("openai", 2)
    for exchange in timeline.of(LLMExchange):
        assert FAKE_ANTHROPIC_KEY not in repr(exchange) and FAKE_OPENAI_KEY not in repr(exchange)
