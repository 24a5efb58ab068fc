"""Fault injection at the SDKs' HTTP layer: the real SDKs and flow meet each fault, on a real database.

The target is the reference flow with one attempt per call (the shim
:func:`tests.faults.shims.run_without_retries`): each fault is met once; retries have their own
tests (tests/harness/flow/test_retry.py, tests/harness/flow/test_batched_flow.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable

import psycopg
import pytest

from harness.config import Settings, sqlalchemy_url
from harness.faults import LLMFaults
from harness.runner import FlowRequest, run_flow
from tests.faults import shims
from tests.support import content
from tests.support.scenarios import healthy_script, skeleton_of

KIND = "online_shop"
REQUEST = FlowRequest(content.request_for(KIND), "user-1", "sid-1")
#: The reference flow, every LLM call and unit of work tried once.
ONE_ATTEMPT = shims.shim_target(shims.run_without_retries)


def _settings(database_url: str) -> Settings:
    # No base URLs: the SDKs aim at api.anthropic.com / api.openai.com and the faults answer there.
    return Settings(
        database_url=database_url,
        anthropic_api_key="sk-ant-test-faults-0000000000",
        openai_api_key="sk-proj-test-faults-00000000000",
    )


def _query(database_url: str, statement: str) -> list[tuple]:
    with psycopg.connect(sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2) as connection:
        return connection.execute(statement).fetchall()


def _discovery(faults: LLMFaults) -> Callable:
    return faults.message(content.render_reply(content.discovery_for(KIND)))


def _skeleton() -> str:
    """The answer the second call (the plan's skeleton, in batched mode) is asked for."""
    return json.dumps(skeleton_of(content.masterplan_for(KIND)))


@pytest.mark.parametrize(
    ("script", "point", "check_id", "evidence"),
    [
        (lambda f: f.on_messages(f.status(529)), "discovery", "LLM007", {"status": 529}),
        (lambda f: f.on_messages(f.status(429, retry_after=30)), "discovery", "LLM006", {"retry_after": "30"}),
        (lambda f: f.on_messages(f.timeout()), "discovery", "LLM009", {}),
        (lambda f: f.on_messages(f.connection_refused()), "discovery", "LLM010", {}),
        (lambda f: f.on_messages(f.raw(b"<html>502 Bad Gateway</html>", status=502)), "discovery", "LLM008", {}),
        (
            lambda f: f.on_messages(_discovery(f), f.stream_error(text=_skeleton()[:1000])).on_embeddings(
                f.embeddings()
            ),
            "masterplan.skeleton",
            "LLM015",
            {"status": 200, "api_error_type": "overloaded_error"},
        ),
        (
            lambda f: f.on_messages(_discovery(f), f.stream_cut(_skeleton()[:2000])).on_embeddings(f.embeddings()),
            "masterplan.skeleton",
            "LLM002",
            {"stop_reason": None},
        ),
        (
            lambda f: f.on_messages(
                _discovery(f), f.message(_skeleton()[:3000], stop_reason="max_tokens")
            ).on_embeddings(f.embeddings()),
            "masterplan.skeleton",
            "LLM001",
            {"stop_reason": "max_tokens"},
        ),
    ],
    ids=["529", "429", "timeout", "refused", "html-502", "sse-error", "sse-cut", "max-tokens"],
)
def test_each_injected_fault_is_reported_at_its_stage_and_point(
    llm_faults: LLMFaults, flow_database_url: str, script, point: str, check_id: str, evidence: dict
) -> None:
    """The flow, through the real SDKs, reports the fault at stage llm with its check ID and evidence."""
    script(llm_faults)
    run = run_flow(_settings(flow_database_url), REQUEST, target=ONE_ATTEMPT)
    first = run.report.first_failure
    assert first is not None, run.report.verdict
    assert (first.stage.value, first.point, first.id) == ("llm", point, check_id)
    for key, value in evidence.items():
        assert first.evidence.get(key) == value, (key, first.evidence)
    assert llm_faults.remaining() == {"anthropic": 0, "openai": 0}


def test_failing_embeddings_is_a_warning_and_the_plan_is_still_saved(
    llm_faults: LLMFaults, flow_database_url: str
) -> None:
    """Embeddings timing out leaves LLM013 as a warning; the plan is generated without examples and persisted."""
    answers = [llm_faults.message(reply.text) for reply in healthy_script(KIND).anthropic]
    llm_faults.on_messages(*answers).on_embeddings(llm_faults.timeout())
    run = run_flow(_settings(flow_database_url), REQUEST, target=ONE_ATTEMPT)
    assert run.report.verdict == "pass"
    warnings = [finding for finding in run.report.findings if finding.id == "LLM013"]
    assert [(w.stage.value, w.point) for w in warnings] == [("llm", "examples")]
    assert run.returned.masterplan_id is not None
    assert [row[0] for row in _query(flow_database_url, "SELECT status::text FROM masterplans")] == ["draft"]
    apis = [call.api for call in llm_faults.calls]
    assert apis[:3] == ["anthropic", "openai", "anthropic"] and len(apis) == len(answers) + 1
    assert llm_faults.calls[2].body["stream"] is True


def test_an_unscripted_call_is_answered_with_a_500_saying_so(llm_faults: LLMFaults, flow_database_url: str) -> None:
    """A call the test did not script fails visibly (LLM008 naming llm_faults), never reaching the network."""
    run = run_flow(_settings(flow_database_url), REQUEST, target=ONE_ATTEMPT)
    first = run.report.first_failure
    assert (first.id, first.point) == ("LLM008", "discovery")
    assert "llm_faults: no anthropic answer left" in first.evidence["error"]


def test_every_installed_http_generation_is_answered_from_the_same_queues(llm_faults: LLMFaults) -> None:
    """Clients on httpx and on httpx2 (an app can have both) take the scripted answers in turn, faults as their own."""
    libraries = [importlib.import_module(name) for name in ("httpx", "httpx2") if importlib.util.find_spec(name)]
    for _library in libraries:
        llm_faults.on_messages(llm_faults.message("answered"), llm_faults.timeout(), llm_faults.connection_refused())
    for library in libraries:
        with library.Client() as client:
            answer = client.post("https://api.anthropic.com/v1/messages", json={"model": "m", "max_tokens": 5})
            assert (answer.status_code, answer.json()["content"][0]["text"]) == (200, "answered")
            with pytest.raises(library.ReadTimeout):
                client.post("https://api.anthropic.com/v1/messages", json={"model": "m"})
            with pytest.raises(library.ConnectError):
                client.post("https://api.anthropic.com/v1/messages", json={"model": "m"})
    assert len(llm_faults.calls) == 3 * len(libraries) and llm_faults.remaining() == {"anthropic": 0, "openai": 0}
