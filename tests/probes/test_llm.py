"""Stage llm: every exchange the real SDKs had with the stand-in API, as the watcher recorded it, gets its own check.

Each call is made with the real ``anthropic`` / ``openai`` SDK over HTTP to the local wire
server (:mod:`tests.support.wire_server`), which speaks the APIs' wire formats, while
:class:`harness.observe.http.HttpWatch` records the exchange — the same object the probes
judge after a flow ran. Nothing is mocked in-process.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from harness.cassettes import recording, replaying
from harness.config import DEFAULT_MODELS
from harness.observe.code import AppCode, exception_info
from harness.observe.http import HttpWatch
from harness.observe.timeline import LLMExchange, PointCalled, Timeline
from harness.sdk import deprecated_models
from probes import CLASSIFIERS, llm
from probes.context import ExchangeView, FlowContext, FlowFailure
from probes.core import NotApplicable, Outcome, Recorder, Stage
from tests.support.wire_server import (
    Delayed,
    EmbeddingReply,
    ErrorReply,
    MessageReply,
    RawReply,
    StreamErrorReply,
    WireScript,
    WireServer,
)

FAKE_ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
FAKE_OPENAI_KEY = "sk-proj-test-0123456789abcdef"
HERE = AppCode([Path(__file__).parent])
#: How a location in this file is shown (relative to the folder that holds the code root).
THIS_FILE = "probes/test_llm.py"
MODEL = DEFAULT_MODELS.generation
MESSAGES = [{"role": "user", "content": "Plan a bookshop"}]


@dataclass
class Call:
    """One SDK call as the application saw it (what came back or was raised) and as the watcher recorded it."""

    exchange: LLMExchange
    raised: BaseException | None
    answer: Any


def _call(client: Any, *, stream: bool, max_tokens: int = 100, messages: list[dict[str, str]] = MESSAGES) -> Any:
    if stream:
        with client.messages.stream(model=MODEL, max_tokens=max_tokens, messages=messages) as answer:
            return answer.get_final_message()
    # The client's timeout passed again: early anthropic 0.x gives create() a 600 s default of its own.
    return client.messages.create(model=MODEL, max_tokens=max_tokens, messages=messages, timeout=client.timeout)


def _watched(make_call: Any) -> Call:
    timeline = Timeline()
    raised = answer = None
    with HttpWatch(timeline, HERE):
        try:
            answer = make_call()
        except Exception as exc:  # noqa: BLE001  (whatever the application would have seen)
            raised = exc
    (exchange,) = timeline.of(LLMExchange)
    return Call(exchange, raised, answer)


def _anthropic(reply: Any, *, stream: bool = False, timeout: float = 10.0) -> Call:
    """A Messages call with the real SDK (no retries) against a stand-in API serving ``reply``."""
    with WireServer(WireScript(anthropic=[reply])) as server:
        client = anthropic.Anthropic(
            api_key=FAKE_ANTHROPIC_KEY, base_url=server.base_url, max_retries=0, timeout=timeout
        )
        try:
            return _watched(lambda: _call(client, stream=stream))
        finally:
            client.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: What reached the wire, and the check that explains it.
FAILURES = [
    pytest.param(ErrorReply.for_status(401), False, llm.LLM003, id="401-key-rejected"),
    pytest.param(ErrorReply.for_status(403), False, llm.LLM004, id="403-not-permitted"),
    pytest.param(ErrorReply.for_status(404, "model: claude-nope"), False, llm.LLM005, id="404-no-such-model"),
    pytest.param(ErrorReply.for_status(429, headers={"retry-after": "17"}), False, llm.LLM006, id="429-rate-limited"),
    pytest.param(ErrorReply.for_status(529), False, llm.LLM007, id="529-overloaded"),
    pytest.param(ErrorReply.for_status(500), False, llm.LLM008, id="500-server-error"),
    pytest.param(ErrorReply.for_status(400, "max_tokens: too large"), False, llm.LLM014, id="400-bad-request"),
    pytest.param(StreamErrorReply(after_chars=10, text="0123456789abcdef"), True, llm.LLM015, id="sse-error-event"),
    pytest.param(MessageReply('{"tasks": [1, 2', cut_stream=True), True, llm.LLM002, id="stream-cut"),
    pytest.param(MessageReply('{"a": 1', stop_reason="max_tokens"), False, llm.LLM001, id="max-tokens"),
    pytest.param(MessageReply('{"a": 1', stop_reason="max_tokens"), True, llm.LLM001, id="max-tokens-streamed"),
    pytest.param(RawReply(), False, llm.LLM011, id="html-200"),
    pytest.param(
        RawReply(body=b'{"id": "msg_1", "type": "mess', content_type="application/json"),
        False,
        llm.LLM011,
        id="truncated-json-200",
    ),
    pytest.param(MessageReply('{"a": 1}' * 200, drop_connection=True), True, llm.LLM010, id="connection-dropped"),
    pytest.param(Delayed(MessageReply("{}"), seconds=3.0), False, llm.LLM009, id="timeout"),
]


@pytest.mark.parametrize(("reply", "stream", "check"), FAILURES)
def test_each_failure_on_the_wire_has_its_own_check(reply: Any, stream: bool, check: Any) -> None:
    """The exchange the watcher recorded is judged with the check that names what went wrong, at its point."""
    call = _anthropic(reply, stream=stream, timeout=0.5 if isinstance(reply, Delayed) else 10.0)
    (finding,) = llm.check_exchange(call.exchange, "masterplan")
    assert (finding.stage, finding.id, finding.point) == (Stage.LLM, check.id, "masterplan")
    assert finding.evidence["model"] == MODEL and finding.evidence["caller"].startswith(f"{THIS_FILE}:")
    assert FAKE_ANTHROPIC_KEY not in str(finding.to_dict())


@pytest.mark.parametrize(("reply", "stream", "check"), FAILURES)
def test_what_the_sdk_raised_is_classified_as_the_exchange_is_judged(reply: Any, stream: bool, check: Any) -> None:
    """The exception the application saw (when the SDK raised one) is explained by the same check as the exchange."""
    call = _anthropic(reply, stream=stream, timeout=0.5 if isinstance(reply, Delayed) else 10.0)
    if call.raised is None:
        # The SDK hid it: a cut stream and max_tokens return normally, an HTML page comes back as a str.
        assert check in (llm.LLM001, llm.LLM002, llm.LLM011) and call.answer is not None
        return
    assert llm.classify(call.raised, "masterplan").id == check.id


def test_a_rate_limit_carries_the_status_and_the_retry_after_the_api_asked_for() -> None:
    """LLM006 evidence shows the 429, its retry-after header and the API's error type."""
    call = _anthropic(ErrorReply.for_status(429, headers={"retry-after": "17"}))
    (finding,) = llm.check_exchange(call.exchange, "discovery")
    assert (finding.evidence["status"], finding.evidence["retry_after"]) == (429, "17")
    assert finding.evidence["api_error_type"] == "rate_limit_error"
    classified = llm.classify(call.raised, "discovery")
    assert (classified.evidence["status"], classified.evidence["retry_after"]) == (429, "17")


def test_a_truncated_answer_names_its_stop_reason_and_output_tokens() -> None:
    """LLM001 evidence carries the stop reason, the output token count and the end of the cut text."""
    call = _anthropic(MessageReply('{"tasks": [1, 2', stop_reason="max_tokens", output_tokens=32000), stream=True)
    (finding,) = llm.check_exchange(call.exchange, "masterplan.batch-2")
    assert finding.id == "LLM001" and "32000 output tokens" in finding.message
    assert (finding.evidence["stop_reason"], finding.evidence["output_tokens"]) == ("max_tokens", 32000)
    assert finding.evidence["text_tail"].endswith('"tasks": [1, 2')


def test_an_html_page_instead_of_the_api_shows_its_first_characters() -> None:
    """LLM011 evidence has the head of the body a proxy sent instead of the API's JSON."""
    call = _anthropic(RawReply())
    (finding,) = llm.check_exchange(call.exchange, "discovery")
    assert "502 Bad Gateway" in finding.evidence["head"]


def test_unreachable_api_is_llm010() -> None:
    """A port nobody listens on is a connection finding, from the exchange and from the SDK's exception alike."""
    client = anthropic.Anthropic(
        api_key=FAKE_ANTHROPIC_KEY, base_url=f"http://127.0.0.1:{_closed_port()}", max_retries=0, timeout=5
    )
    call = _watched(lambda: _call(client, stream=False))
    client.close()
    (finding,) = llm.check_exchange(call.exchange, "discovery")
    assert finding.id == "LLM010" and finding.evidence["status"] is None
    assert llm.classify(call.raised, "discovery").id == "LLM010"


def test_a_request_the_cassette_did_not_record_is_llm012_naming_the_field_that_differs(tmp_path: Path) -> None:
    """A replayed request whose prompt changed is not answered: LLM012, with vcrpy's diff naming the JSON field."""
    cassette = tmp_path / "plan.yaml"
    with WireServer(WireScript(anthropic=[MessageReply('{"ok": true}')])) as server:
        live = anthropic.Anthropic(api_key=FAKE_ANTHROPIC_KEY, base_url=server.base_url, max_retries=0, timeout=10)
        meta = {"name": "plan", "request": "Plan a bookshop", "expect": "pass"}
        with recording(cassette, meta, stand_ins={server.base_url: "https://api.anthropic.com"}):
            _call(live, stream=False)
        live.close()
    official = anthropic.Anthropic(
        api_key=FAKE_ANTHROPIC_KEY, base_url="https://api.anthropic.com", max_retries=0, timeout=10
    )
    changed = [{"role": "user", "content": "Plan a zoo"}]
    with replaying(cassette):
        replayed = _watched(lambda: _call(official, stream=False))
        call = _watched(lambda: _call(official, stream=False, messages=changed))
    official.close()
    assert llm.check_exchange(replayed.exchange, "discovery") == []
    (finding,) = llm.check_exchange(call.exchange, "discovery")
    assert finding.id == "LLM012" and "messages[0].content" in finding.evidence["mismatch"]
    assert llm.classify(call.raised, "discovery").id == "LLM012"
    assert FAKE_ANTHROPIC_KEY not in str(finding.to_dict())


def test_a_complete_answer_passes_with_usage_cost_and_stop_reason_on_record() -> None:
    """A complete answer has no finding, and its evidence holds what a user needs to judge the call."""
    call = _anthropic(MessageReply('{"ok": true}', input_tokens=120, output_tokens=1234), stream=True)
    assert llm.check_exchange(call.exchange, "discovery") == []
    evidence = llm.exchange_evidence(call.exchange)
    assert (evidence["status"], evidence["stop_reason"], evidence["streamed"]) == (200, "end_turn", True)
    assert (evidence["input_tokens"], evidence["output_tokens"]) == (120, 1234)
    assert evidence["usage"]["cache_read_input_tokens"] == 0
    assert evidence["cost_usd"] > 0 and evidence["latency_s"] >= 0
    assert evidence["request_id"].startswith("req_")
    assert llm.answer_summary(call.exchange) == "end_turn, 1,234 output tokens"


# -- the registered probes, as the judge runs them ----------------------------------------------------


def _judged(call: Call, point: str = "discovery") -> dict[str, tuple[Outcome, str | None]]:
    """The exchange probe run by a recorder, as the judge runs it at the exchange's point."""
    recorder = Recorder(CLASSIFIERS)
    recorder.run_probe(_registered("call_answered"), point, None, ExchangeView(call.exchange, point, "discovery"))
    return {o.check.id: (o.outcome, o.reason) for o in recorder.report.outcomes}


def _registered(name: str) -> Any:
    from probes.registry import REGISTRY

    return next(entry for entry in REGISTRY if entry.name == f"probes.llm.{name}")


def test_the_exchange_probe_passes_a_complete_answer() -> None:
    """LLM100 (call answered), LLM001 and LLM002 all pass for an answer that ended on its own."""
    outcomes = _judged(_anthropic(MessageReply('{"ok": true}')))
    assert outcomes == {
        "LLM100": (Outcome.PASSED, None),
        "LLM001": (Outcome.PASSED, None),
        "LLM002": (Outcome.PASSED, None),
    }


def test_the_exchange_probe_leaves_its_checks_undecided_by_an_api_refusal() -> None:
    """A refused call fails with its own ID; whether the answer was complete is left blocked, never passed."""
    outcomes = _judged(_anthropic(ErrorReply.for_status(401)))
    assert outcomes["LLM003"] == (Outcome.FAILED, None)
    assert {outcomes[check] for check in ("LLM100", "LLM001", "LLM002")} == {(Outcome.BLOCKED, "by LLM003")}


def test_the_exchange_probe_judges_truncation_on_its_own() -> None:
    """An answer cut at max_tokens fails LLM001 alone: it was answered (LLM100) and ended with a stop reason (LLM002)."""
    outcomes = _judged(_anthropic(MessageReply('{"a": 1', stop_reason="max_tokens"), stream=True))
    assert outcomes == {
        "LLM100": (Outcome.PASSED, None),
        "LLM001": (Outcome.FAILED, None),
        "LLM002": (Outcome.PASSED, None),
    }


# -- the application's own LLM wrapper and the code before the call (LLM102, LLM101) ------------------


def _wrapper_call(**outcome: Any) -> PointCalled:
    return PointCalled(stage="llm", name="myapp.llm:Client.complete", defined_at=None, **outcome)


def test_a_wrapper_that_returns_none_after_a_good_answer_is_llm102() -> None:
    """The API answered and the application's wrapper handed on None: LLM102 names the wrapper and the answer."""
    call = _anthropic(MessageReply('{"ok": true}', output_tokens=321))
    view = ExchangeView(call.exchange, "discovery", "discovery")
    (finding,) = llm.wrapper_handed_on(None, (_wrapper_call(returned=True, result=None), view))
    assert finding.id == "LLM102" and finding.point == "discovery"
    assert "end_turn, 321 output tokens" in finding.message and "Client.complete returned None" in finding.message
    assert finding.evidence["wrapper"] == "myapp.llm:Client.complete"


def test_a_wrapper_that_raises_after_a_good_answer_is_llm102_with_its_error() -> None:
    """A wrapper that raised on the answer (a wrong key into the response) is LLM102 carrying the error and its line."""
    call = _anthropic(MessageReply('{"ok": true}'))
    try:
        {"content": []}["text"]
    except KeyError as exc:
        error = exception_info(exc, HERE)
    view = ExchangeView(call.exchange, "discovery", "discovery")
    (finding,) = llm.wrapper_handed_on(None, (_wrapper_call(error=error), view))
    assert finding.id == "LLM102" and finding.evidence["error"]["type"] == "KeyError"
    assert finding.evidence["error"]["location"]["file"] == THIS_FILE


def test_a_wrapper_that_returned_the_answer_passes() -> None:
    """A wrapper that handed something on is not judged further: no finding."""
    call = _anthropic(MessageReply('{"ok": true}'))
    view = ExchangeView(call.exchange, "discovery", "discovery")
    assert llm.wrapper_handed_on(None, (_wrapper_call(returned=True, result="{}"), view)) == []


def test_the_wrapper_probe_is_blocked_when_the_call_itself_failed() -> None:
    """After a refused call the wrapper is not blamed: LLM102 is blocked by the call's own finding."""
    call = _anthropic(ErrorReply.for_status(529))
    view = ExchangeView(call.exchange, "discovery", "discovery")
    recorder = Recorder(CLASSIFIERS)
    recorder.run_probe(_registered("call_answered"), "discovery", None, view)
    recorder.run_probe(_registered("wrapper_handed_on"), "discovery", None, (_wrapper_call(returned=True), view))
    (wrapper,) = [o for o in recorder.report.outcomes if o.check.id == "LLM102"]
    assert (wrapper.outcome, wrapper.reason) == (Outcome.BLOCKED, "by LLM007")


def _ended_with(failure: FlowFailure | None) -> FlowContext:
    return FlowContext(timeline=Timeline(), target=None, request=None, reader=None, failure=failure)


def test_code_that_failed_before_its_llm_call_is_llm101_at_its_line() -> None:
    """An exception in the app's code before the request was sent is LLM101 with the app's file and line."""
    try:
        int("twelve")  # a setting read as a number
    except ValueError as exc:
        error = exception_info(exc, HERE)
    ctx = _ended_with(FlowFailure(Stage.LLM, "before_llm", error, "discovery"))
    (finding,) = llm.code_reached_call(ctx, None)
    assert (finding.id, finding.point) == ("LLM101", "discovery")
    assert finding.evidence["location"].startswith(f"{THIS_FILE}:") and "ValueError" in finding.message


def test_an_sdk_failure_that_ended_the_flow_is_classified_not_blamed_on_the_app() -> None:
    """When the flow ended with the SDK's own exception, the probe explains it with the SDK failure's check."""
    call = _anthropic(ErrorReply.for_status(429, headers={"retry-after": "17"}))
    ctx = _ended_with(FlowFailure(Stage.LLM, "llm_call", exception_info(call.raised, HERE), "discovery"))
    (finding,) = llm.code_reached_call(ctx, None)
    assert finding.id == "LLM006" and finding.evidence["retry_after"] == "17"


def test_a_flow_failure_of_another_stage_is_not_the_llm_stages() -> None:
    """A flow that returned, or failed while saving, gives the llm stage nothing to report."""
    try:
        raise RuntimeError("disk full")
    except RuntimeError as exc:
        error = exception_info(exc, HERE)
    assert llm.code_reached_call(_ended_with(None), None) == []
    assert llm.code_reached_call(_ended_with(FlowFailure(Stage.PERSIST, "saving", error, "discovery")), None) == []


def test_a_flow_failure_that_follows_an_earlier_finding_is_not_a_finding_of_its_own() -> None:
    """An LLM failure that only follows a finding already reported is not applicable, naming what it follows."""
    try:
        raise ValueError("no answer")
    except ValueError as exc:
        error = exception_info(exc, HERE)
    ctx = _ended_with(FlowFailure(Stage.LLM, "before_llm", error, "discovery", follows="LLM001 at llm/discovery"))
    recorder = Recorder(CLASSIFIERS)
    recorder.run_probe(_registered("code_reached_call"), "flow", ctx, None)
    (outcome,) = recorder.report.outcomes
    assert outcome.outcome is Outcome.NOT_APPLICABLE
    assert outcome.reason == "the flow's ValueError followed LLM001 at llm/discovery"


# -- embeddings, pings, models --------------------------------------------------------------------------


@pytest.fixture
def openai_server() -> Iterator[WireServer]:
    """A stand-in OpenAI API with an empty script."""
    with WireServer() as server:
        yield server


def _embedding(server: WireServer, reply: Any) -> Call:
    server.load(WireScript(openai=[reply]))
    client = openai.OpenAI(api_key=FAKE_OPENAI_KEY, base_url=server.base_url + "/v1", max_retries=0, timeout=10)
    try:
        return _watched(lambda: client.embeddings.create(model="text-embedding-3-small", input=["a", "b"]))
    finally:
        client.close()


def test_a_failed_embeddings_call_is_an_llm013_warning_at_examples(openai_server: WireServer) -> None:
    """Example retrieval failing is LLM013, a warning: the plan can be made without examples."""
    call = _embedding(openai_server, ErrorReply(500, "server_error", "boom"))
    (finding,) = llm.check_exchange(call.exchange, "examples")
    assert (finding.id, finding.level.name, finding.point) == ("LLM013", "WARNING", "examples")
    assert llm.classify(call.raised, "examples").id == "LLM013"
    assert llm.check_exchange(_embedding(openai_server, EmbeddingReply()).exchange, "examples") == []


def test_ping_proves_the_key_and_the_model_with_one_minimal_call() -> None:
    """A ping that is answered has no finding and records model, stop reason and tokens; a rejected key is LLM003."""
    with WireServer(WireScript(anthropic=[MessageReply("pong"), ErrorReply.for_status(401)])) as server:
        findings, facts = llm.ping_anthropic(FAKE_ANTHROPIC_KEY, MODEL, base_url=server.base_url, timeout=5)
        rejected, none = llm.ping_anthropic("sk-ant-revoked-000000000000", MODEL, base_url=server.base_url, timeout=5)
    assert findings == [] and (facts["model"], facts["stop_reason"]) == (MODEL, "end_turn")
    assert facts["output_tokens"] is not None and facts["latency_s"] >= 0
    assert [(f.id, f.point) for f in rejected] == [("LLM003", "ping")] and none == {}


def test_ping_of_the_embeddings_api_is_the_examples_warning(openai_server: WireServer) -> None:
    """An embeddings ping that fails is LLM013 at examples, as in the flow; one that answers has no finding."""
    openai_server.load(WireScript(openai=[EmbeddingReply(), ErrorReply(401, "invalid_request_error", "bad key")]))
    base = openai_server.base_url + "/v1"
    assert llm.ping_openai(FAKE_OPENAI_KEY, "text-embedding-3-small", base_url=base, timeout=5) == []
    (finding,) = llm.ping_openai(FAKE_OPENAI_KEY, "text-embedding-3-small", base_url=base, timeout=5)
    assert (finding.id, finding.point) == ("LLM013", "examples")


@pytest.mark.skipif(deprecated_models() is None, reason="the installed anthropic SDK keeps no deprecation list")
def test_deprecated_model_is_an_llm016_warning() -> None:
    """A model on the SDK's deprecation list is a warning with its end-of-life date; a current one passes."""
    (finding,) = llm.check_model_current("claude-sonnet-4-5")
    assert finding.id == "LLM016" and finding.level.name == "WARNING" and finding.evidence["end_of_life"]
    assert llm.check_model_current(DEFAULT_MODELS.generation) == []


@pytest.mark.skipif(deprecated_models() is not None, reason="the installed anthropic SDK keeps a deprecation list")
def test_without_the_sdks_deprecation_list_llm016_is_not_applicable_not_passed() -> None:
    """Early anthropic 0.x (0.30) keeps no list of deprecated models: the check says so instead of passing."""
    with pytest.raises(NotApplicable, match="keeps no list of deprecated models"):
        llm.check_model_current("claude-sonnet-4-5")


def test_the_reference_flows_embeddings_come_back_in_input_order(openai_server: WireServer) -> None:
    """The reference flow's embeddings helper returns one vector per input, in input order."""
    import asyncio

    from harness.config import Settings
    from harness.flow.llm import build_clients, embed

    openai_server.load(WireScript(openai=[EmbeddingReply(dimensions=8)]))
    settings = Settings(openai_api_key=FAKE_OPENAI_KEY, openai_base_url=openai_server.base_url + "/v1")

    async def run() -> list[list[float]]:
        clients = build_clients(settings)
        try:
            return await embed(clients, model="text-embedding-3-small", texts=["a", "b", "a"])
        finally:
            await clients.openai.close()

    vectors = asyncio.run(run())
    assert len(vectors) == 3 and len(vectors[0]) == 8
    assert vectors[0] == pytest.approx(vectors[2]) and vectors[0] != pytest.approx(vectors[1])
