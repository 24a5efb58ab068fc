"""What differs between SDK generations (harness/sdk.py), checked on whichever generation is installed.

CI runs this module in two environments: the newest SDKs (anthropic 2.x and openai 3.x on httpx2)
and the lowest supported ones (constraints/lowest.txt: anthropic 0.30 and openai 1.0 on httpx 0.24).
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import struct
from dataclasses import replace

import anthropic
import openai
import pytest

from harness import sdk
from harness.config import TIMEOUTS, Settings
from harness.faults import embedding_for
from harness.flow.llm import build_clients, create_message, embed, stream_message
from harness.observe.http import HttpWatch
from harness.observe.timeline import LLMExchange, Timeline
from tests.support.wire_server import Delayed, EmbeddingReply, MessageReply, WireScript, WireServer

FAKE_ANTHROPIC_KEY = "sk-ant-test-3b8f0e1d7c6a5b4e"
FAKE_OPENAI_KEY = "sk-proj-test-9a8b7c6d5e4f3a2b"
PLAN = '{"project_name": "Bookshop", "phases": [' + ", ".join(f'{{"n": {i}}}' for i in range(40)) + "]}"


def test_the_reference_flows_calls_work_on_the_installed_generation_through_its_own_transport() -> None:
    """Plain and streamed messages and embeddings answer through each SDK's own HTTP library, async."""
    script = WireScript(
        anthropic=[MessageReply("plain", output_tokens=3), MessageReply(PLAN, chunk_chars=50)],
        openai=[EmbeddingReply(dimensions=8)],
    )
    timeline = Timeline()
    with WireServer(script) as server, HttpWatch(timeline):
        settings = Settings(
            anthropic_api_key=FAKE_ANTHROPIC_KEY,
            openai_api_key=FAKE_OPENAI_KEY,
            anthropic_base_url=server.base_url,
            openai_base_url=server.base_url + "/v1",
        )

        async def calls() -> tuple:
            clients = build_clients(settings)
            try:
                plain = await create_message(clients, model="m", system="s", prompt="p", max_tokens=10)
                streamed = await stream_message(clients, model="m", system="s", prompt="p", max_tokens=10)
                vectors = await embed(clients, model="text-embedding-3-small", texts=["a", "b"])
            finally:
                await clients.anthropic.close()
                await clients.openai.close()
            return plain, streamed, vectors

        plain, streamed, vectors = asyncio.run(calls())

    assert (plain.text, plain.stop_reason, plain.output_tokens) == ("plain", "end_turn", 3)
    assert (streamed.text, streamed.stop_reason, streamed.streamed) == (PLAN, "end_turn", True)
    assert vectors == [embedding_for("a", 8), embedding_for("b", 8)]
    exchanges = timeline.of(LLMExchange)
    assert [exchange.transport for exchange in exchanges] == [
        f"{sdk.transport_of(anthropic)}/async",
        f"{sdk.transport_of(anthropic)}/async",
        f"{sdk.transport_of(openai)}/async",
    ]
    # Every openai generation sends this same body, so a cassette recorded under one replays under all.
    assert exchanges[2].request == {
        "input": ["a", "b"],
        "model": "text-embedding-3-small",
        "encoding_format": "base64",
    }


def test_a_plain_call_of_the_reference_flow_keeps_to_its_timeout_in_every_generation() -> None:
    """create_message gives up at the configured request timeout, also where the SDK's own default is 600 s."""
    script = WireScript(anthropic=[Delayed(MessageReply("late"), seconds=5.0)])
    with WireServer(script) as server:
        settings = Settings(
            anthropic_api_key=FAKE_ANTHROPIC_KEY,
            anthropic_base_url=server.base_url,
            timeouts=replace(TIMEOUTS, llm_request=0.5),
        )

        async def call() -> None:
            clients = build_clients(settings)
            try:
                await create_message(clients, model="m", system="s", prompt="p", max_tokens=10)
            finally:
                await clients.anthropic.close()

        with pytest.raises(anthropic.APITimeoutError):
            asyncio.run(call())


def test_only_a_client_with_a_timeout_of_its_own_has_it_passed_again() -> None:
    """The SDK client's timeout is passed with the call; an app's wrapper class without one passes nothing."""
    client = anthropic.Anthropic(api_key=FAKE_ANTHROPIC_KEY, timeout=7.0)
    assert sdk.per_call_timeout(client) == {"timeout": 7.0}
    assert sdk.per_call_timeout(object()) == {}
    client.close()


def test_an_embedding_is_read_from_floats_or_from_base64_float32() -> None:
    """A list of floats passes as floats; base64 text is unpacked as little-endian float32, in order."""
    values = [0.5, -1.25, 3.0]
    packed = base64.b64encode(struct.pack("<3f", *values)).decode()
    assert sdk.embedding_vector(packed) == values
    assert sdk.embedding_vector([1, 2.5]) == [1.0, 2.5]


def test_a_class_missing_from_a_generation_is_none_not_an_attribute_error() -> None:
    """error_class names the SDK's exception class where it exists and answers None where it does not."""
    assert sdk.error_class(anthropic, "RateLimitError") is anthropic.RateLimitError
    assert sdk.error_class(anthropic, "NoSuchError") is None
    assert sdk.error_class(anthropic, "__version__") is None  # an attribute, not an exception class
    overloaded = getattr(anthropic, "OverloadedError", None)
    assert sdk.error_class(anthropic, "OverloadedError") is overloaded


def test_each_sdk_gets_a_default_client_of_the_http_library_it_is_built_on() -> None:
    """The shared-CA-store client is the SDK's own default client class, an AsyncClient of its library."""
    for module in (anthropic, openai):
        client = sdk.default_async_http_client(module)
        if client is None:  # openai < 1.17 has no DefaultAsyncHttpxClient and builds its own
            assert not hasattr(module, "DefaultAsyncHttpxClient")
            continue
        library = importlib.import_module(sdk.transport_of(module))
        assert isinstance(client, module.DefaultAsyncHttpxClient) and isinstance(client, library.AsyncClient)
        asyncio.run(client.aclose())
