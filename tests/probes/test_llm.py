"""Stage llm: each SDK failure, produced by the real SDKs over HTTP, gets its own check ID.

The API is played by the local wire server (harness.recording.wire_server), which speaks
the Anthropic Messages and OpenAI embeddings wire formats; nothing is mocked in-process.
"""

from __future__ import annotations

import asyncio

import pytest

from harness.config import DEFAULT_MODELS, Settings, Timeouts
from harness.flow.discovery import ensure_complete
from harness.flow.llm import build_clients, create_message, embed, stream_message
from harness.recording.wire_server import (
    Delayed,
    EmbeddingReply,
    ErrorReply,
    MessageReply,
    RawReply,
    StreamErrorReply,
    WireScript,
    WireServer,
)
from probes import CLASSIFIERS, llm
from probes.core import Recorder, Stage, StageFailed


def _call(reply, *, stream: bool = False, request_timeout: float = 5.0):
    """Make one real SDK call against a wire server serving ``reply``; return (finding or None, answer)."""
    with WireServer(WireScript(anthropic=[reply])) as server:
        settings = Settings(
            anthropic_api_key="sk-ant-test-0123456789",
            openai_api_key="sk-test-0123456789abcdefgh",
            anthropic_base_url=server.base_url,
            timeouts=Timeouts(llm_request=request_timeout, llm_connect=request_timeout),
        )
        clients = build_clients(settings)
        recorder = Recorder(CLASSIFIERS)
        call = stream_message if stream else create_message

        async def run():
            with recorder.point(Stage.LLM, "masterplan"):
                answer = await call(clients, model=DEFAULT_MODELS.generation, system="s", prompt="p", max_tokens=100)
                ensure_complete("masterplan", answer)
                return answer

        try:
            return None, asyncio.run(run())
        except StageFailed as failed:
            return failed.finding, None


@pytest.mark.parametrize(
    ("reply", "check"),
    [
        (ErrorReply.for_status(401), llm.LLM003),
        (ErrorReply.for_status(403), llm.LLM004),
        (ErrorReply.for_status(404, "model: claude-nope"), llm.LLM005),
        (ErrorReply.for_status(429, headers={"retry-after": "17"}), llm.LLM006),
        (ErrorReply.for_status(529), llm.LLM007),
        (ErrorReply.for_status(500), llm.LLM008),
        (ErrorReply.for_status(400, "max_tokens: too large"), llm.LLM014),
        (RawReply(), llm.LLM011),
        (RawReply(body=b'{"id": "msg_1", "type": "mess', content_type="application/json"), llm.LLM011),
        (MessageReply('{"a": 1', stop_reason="max_tokens"), llm.LLM001),
    ],
)
def test_each_failure_of_a_call_has_its_own_check(reply, check) -> None:
    """The SDK exception (or truncated answer) is explained by the llm stage with the right ID."""
    finding, _ = _call(reply)
    assert finding is not None, "the call should have failed"
    assert (finding.stage, finding.id, finding.point) == (Stage.LLM, check.id, "masterplan")


def test_rate_limit_evidence_carries_retry_after_and_status() -> None:
    """A 429 finding shows the status and the retry-after the API asked for."""
    finding, _ = _call(ErrorReply.for_status(429, headers={"retry-after": "17"}))
    assert finding.evidence["status"] == 429
    assert finding.evidence["retry_after"] == "17"


@pytest.mark.parametrize(
    ("reply", "check"),
    [
        (MessageReply('{"a": 1', cut_stream=True), llm.LLM002),
        (MessageReply('{"a": 1', stop_reason="max_tokens"), llm.LLM001),
        (StreamErrorReply(after_chars=10, text="0123456789abcdef"), llm.LLM015),
        (MessageReply('{"a": 1}' * 200, drop_connection=True), llm.LLM010),
    ],
)
def test_stream_failures_are_llm_failures(reply, check) -> None:
    """A cut stream, max_tokens and an SSE error event are all reported at stage llm."""
    finding, _ = _call(reply, stream=True)
    assert finding is not None and finding.id == check.id


def test_timeout_is_its_own_check() -> None:
    """A server slower than the request timeout gives LLM009."""
    finding, _ = _call(Delayed(MessageReply("{}"), seconds=3.0), request_timeout=0.5)
    assert finding is not None and finding.id == "LLM009"


def test_unreachable_api_is_llm010() -> None:
    """A closed port gives a connection finding, not a crash."""
    settings = Settings(anthropic_api_key="sk-ant-test-0123456789", anthropic_base_url="http://127.0.0.1:9")
    recorder = Recorder(CLASSIFIERS)

    async def run():
        with recorder.point(Stage.LLM, "discovery"):
            await create_message(build_clients(settings), model="m", system="s", prompt="p", max_tokens=10)

    with pytest.raises(StageFailed) as caught:
        asyncio.run(run())
    assert caught.value.finding.id == "LLM010"


def test_answer_check_records_usage_cost_and_stop_reason() -> None:
    """A complete answer passes, and its evidence has what a user needs to judge the call."""
    _, answer = _call(MessageReply('{"ok": true}', output_tokens=1234))
    assert llm.check_answer(answer, "discovery") == []
    evidence = llm.exchange_evidence(answer)
    assert evidence["stop_reason"] == "end_turn"
    assert evidence["output_tokens"] == 1234
    assert evidence["cost_usd"] > 0


def test_truncated_answer_evidence_names_stop_reason() -> None:
    """LLM001 evidence carries stop_reason and the output token count."""
    finding, _ = _call(MessageReply('{"a": [1, 2', stop_reason="max_tokens", output_tokens=32000), stream=True)
    assert finding.evidence["stop_reason"] == "max_tokens"
    assert finding.evidence["output_tokens"] == 32000


def test_embeddings_failure_is_a_warning_at_the_examples_point() -> None:
    """Example retrieval failing is LLM013, a warning: the plan can go on without examples."""
    with WireServer(WireScript(openai=[ErrorReply(500, "server_error", "boom")])) as server:
        settings = Settings(openai_api_key="sk-test-0123456789abcdefgh", openai_base_url=server.base_url + "/v1")
        recorder = Recorder(CLASSIFIERS)

        async def run():
            with recorder.point(Stage.LLM, "examples"):
                await embed(build_clients(settings), model="text-embedding-3-small", texts=["a"])

        with pytest.raises(StageFailed) as caught:
            asyncio.run(run())
    assert caught.value.finding.id == "LLM013"
    assert recorder.report.verdict == "pass"


def test_embeddings_come_back_in_order() -> None:
    """The embeddings helper returns one vector per input, in input order."""
    with WireServer(WireScript(openai=[EmbeddingReply(dimensions=8)])) as server:
        settings = Settings(openai_api_key="sk-test-0123456789abcdefgh", openai_base_url=server.base_url + "/v1")
        vectors = asyncio.run(embed(build_clients(settings), model="text-embedding-3-small", texts=["a", "b", "a"]))
    assert len(vectors) == 3 and len(vectors[0]) == 8
    assert vectors[0] == pytest.approx(vectors[2]) and vectors[0] != pytest.approx(vectors[1])


def test_deprecated_model_is_an_llm016_warning() -> None:
    """A model on the SDK's deprecation list is a warning with its end-of-life date; a current one passes."""
    (finding,) = llm.check_model_current("claude-sonnet-4-5")
    assert finding.id == "LLM016" and finding.level.name == "WARNING" and finding.evidence["end_of_life"]
    assert llm.check_model_current(DEFAULT_MODELS.generation) == []


def test_call_answered_is_recorded_for_a_complete_answer() -> None:
    """A complete answer records LLM100 (call answered) as passed at its point."""
    _, answer = _call(MessageReply('{"ok": true}'))
    recorder = Recorder(CLASSIFIERS)
    recorder.run_checks(
        Stage.LLM,
        "discovery",
        [((llm.CALL_ANSWERED, *llm.ANSWER_CHECKS), lambda: llm.check_answer(answer, "discovery"))],
    )
    assert [(o.check.id, o.outcome.value) for o in recorder.report.outcomes][0] == ("LLM100", "passed")
