"""Adopting cassettes recorded outside the harness: metadata added, redacted like a recording, replayable.

The cassettes are recorded here the way a team's pytest-recording suite records them (plain
vcrpy against the stand-in server, :mod:`tests.support.foreign`); the application is a small
shim (``tests/harness/adopt_app``) that streams a discovery with extended thinking through the
SDK's beta client and saves it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml

from harness.adopt import adopt_cassette, first_user_message
from harness.cassettes import CassetteError, load_cassette, load_meta, replaying, scan_cassette
from harness.replay import ReplayResult, replay_cassette
from harness.target import Target, load_target
from probes.core import Outcome
from tests.support import content
from tests.support.foreign import (
    BETA_QUERY,
    FOREIGN_ANTHROPIC_KEY,
    MODEL,
    THINKING,
    as_older_vcrpy,
    discovery_reply,
    record_beta_call,
    recording_like_a_team,
)
from tests.support.wire_server import EmbeddingReply, MessageReply, WireScript, WireServer

APP = Path(__file__).resolve().parent / "adopt_app"
REQUEST = content.request_for("task_manager")
DISCOVERY = json.dumps(content.discovery_for("task_manager"))


@pytest.fixture(scope="module")
def thinker() -> Target:
    """The shim application, loaded from its own pyproject.toml as the CLI loads it."""
    return load_target(APP / "pyproject.toml")


@pytest.fixture
def team_recording(
    thinker: Target, flow_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Path]]:
    """Records the shim's own run the way its pytest-recording suite would, answered by the stand-in server."""

    def record(reply: MessageReply, name: str = "team.yaml") -> Path:
        path = tmp_path / name
        with WireServer(WireScript(anthropic=[reply])) as server:
            monkeypatch.setenv("ANTHROPIC_API_KEY", FOREIGN_ANTHROPIC_KEY)
            monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
            monkeypatch.setenv("DATABASE_URL", flow_database_url)
            with recording_like_a_team(path):
                thinker.flow(REQUEST, "u-team", "s-team")
        monkeypatch.delenv("ANTHROPIC_BASE_URL")
        return path

    yield record


def _replay(path: Path, thinker: Target, factory: Any) -> ReplayResult:
    url = factory.new_database()
    try:
        return replay_cassette(load_meta(path), url, target=thinker)
    finally:
        factory.drop(url)


@pytest.mark.slow
def test_an_adopted_recording_of_the_shim_replays_through_its_flow_to_pass(
    team_recording, thinker: Target, flow_database_factory
) -> None:
    """The team's recording (thinking stream, ?beta=true, no metadata) adopted with defaults replays to pass."""
    path = team_recording(discovery_reply(DISCOVERY))
    with pytest.raises(CassetteError, match="has no harness metadata.*harness cassettes adopt"):
        load_meta(path)

    adopted = adopt_cassette(path, user_id="u-1", session_id="s-1")
    assert adopted.meta.request == REQUEST and adopted.request_from == "the first recorded user message (call 1)"
    (call,) = adopted.calls
    assert (call.query, call.blocks, call.stop_reason, call.flags) == (
        "beta=true",
        ("thinking", "text"),
        "end_turn",
        (),
    )

    result = _replay(path, thinker, flow_database_factory)
    assert result.matched and result.verdict == "pass", result.run.report.first_failure
    outcomes = {o.check.id: o.outcome for o in result.run.report.outcomes}
    # The answer's text block (not its thinking) was parsed as the discovery, saved, read back and matched.
    assert outcomes["PARSE003"] is Outcome.PASSED and outcomes["PERSIST002"] is Outcome.PASSED
    assert outcomes["PERSIST013"] is Outcome.PASSED and outcomes["PERSIST011"] is Outcome.PASSED


@pytest.mark.slow
def test_an_adopted_recording_replays_to_the_failure_it_expects(
    team_recording, thinker: Target, flow_database_factory
) -> None:
    """A recorded stream that ended without its stop events, adopted expecting llm:LLM002, replays to it."""
    path = team_recording(MessageReply(DISCOVERY, thinking="Contexts first.", cut_stream=True, padded=True))
    adopted = adopt_cassette(path, expect="llm:LLM002", user_id="u-1", session_id="s-1")
    assert adopted.meta.extra["truncated"] is True and adopted.warnings

    result = _replay(path, thinker, flow_database_factory)
    assert result.verdict == "llm:LLM002" and result.matched


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-streamed beta call recorded with no header filtered: key, cookies and ids in the file, body gzipped."""
    path = tmp_path_factory.mktemp("leaky") / "leaky.yaml"
    record_beta_call(path, discovery_reply(DISCOVERY), prompt=REQUEST, stream=False, filter_headers=())
    return path


def test_adopting_redacts_like_a_recording_and_adds_the_metadata(leaky: Path, tmp_path: Path) -> None:
    """The key, cookies and ids go, the gzipped body is stored decoded, and the metadata holds request and verdict."""
    path = tmp_path / "leaky.yaml"
    path.write_bytes(leaky.read_bytes())
    before = path.read_text()
    assert FOREIGN_ANTHROPIC_KEY in before and "!!binary" in before and "set-cookie" in before
    assert scan_cassette(path), "the recording leaks the key: the scan must say so before adoption"

    adopted = adopt_cassette(path, name="bakery", user_id="u-1", session_id="s-1")
    text = path.read_text()
    assert FOREIGN_ANTHROPIC_KEY not in text and adopted.secrets == () and scan_cassette(path) == []
    for header in ("x-api-key", "set-cookie", "request-id", "anthropic-organization-id", "user-agent", "x-stainless"):
        assert f"{header}:" not in text, header
    assert "!!binary" not in text and "content-encoding" not in text  # nothing can hide in gzip
    meta = yaml.safe_load(text)["metadata"]["harness"]
    assert {key: meta[key] for key in ("name", "request", "user_id", "session_id", "expect")} == {
        "name": "bakery",
        "request": REQUEST,
        "user_id": "u-1",
        "session_id": "s-1",
        "expect": "pass",
    }
    assert meta["stop_reasons"] == ["end_turn"] and meta["usage"]["output_tokens"] > 0 and not meta["truncated"]


def test_an_adopted_cassette_plays_its_answer_back_to_the_sdk(leaky: Path, tmp_path: Path) -> None:
    """After adoption the SDK's identical request is answered from the file: the thinking block and the text."""
    path = tmp_path / "played.yaml"
    path.write_bytes(leaky.read_bytes())
    adopt_cassette(path)
    client = anthropic.Anthropic(api_key="sk-ant-replay-0000000000000000", max_retries=0)
    with replaying(path):
        message = client.beta.messages.create(
            model=MODEL,
            max_tokens=8192,
            thinking=THINKING,
            messages=[{"role": "user", "content": REQUEST}],
            extra_query=BETA_QUERY,
        )
    assert [block.type for block in message.content] == ["thinking", "text"] and message.content[1].text == DISCOVERY


def test_an_older_vcrpys_httpx_cassette_is_rewritten_in_the_current_format(leaky: Path, tmp_path: Path) -> None:
    """A cassette in vcrpy < 6's httpx format (status_code, content, a stale content-encoding) is listed and adopted."""
    path = tmp_path / "legacy.yaml"
    as_older_vcrpy(leaky, path)
    (listed,) = load_cassette(path).calls
    assert (listed.status, listed.stop_reason, listed.blocks) == (200, "end_turn", ("thinking", "text"))

    adopt_cassette(path, request=REQUEST)
    (interaction,) = yaml.safe_load(path.read_text())["interactions"]
    assert interaction["response"]["status"] == {"code": 200, "message": "OK"}
    assert json.loads(interaction["response"]["body"]["string"])["content"][1]["text"] == DISCOVERY
    assert load_cassette(path).calls == (listed,)


def test_a_cassette_with_harness_metadata_is_kept_unless_forced(leaky: Path, tmp_path: Path) -> None:
    """Adopting twice is refused, naming the metadata it has; with force the new metadata replaces it."""
    path = tmp_path / "twice.yaml"
    path.write_bytes(leaky.read_bytes())
    adopt_cassette(path, expect="pass")
    kept = path.read_text()
    with pytest.raises(CassetteError, match=r"already has harness metadata \(name 'twice', expect 'pass'\)"):
        adopt_cassette(path, expect="parse:PARSE003")
    assert path.read_text() == kept
    assert adopt_cassette(path, expect="parse:PARSE003", force=True).meta.expect == "parse:PARSE003"


def test_a_verdict_no_replay_can_give_is_refused(leaky: Path, tmp_path: Path) -> None:
    """--expect must read pass or stage:ID; the file is left as it was."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(leaky.read_bytes())
    with pytest.raises(CassetteError, match="'passed' is not a verdict"):
        adopt_cassette(path, expect="passed")
    assert path.read_bytes() == leaky.read_bytes()


def test_without_a_user_message_the_request_must_be_given(tmp_path: Path) -> None:
    """A cassette whose requests carry no user message (embeddings only) needs --request."""
    path = tmp_path / "embeddings.yaml"
    with WireServer(WireScript(openai=[EmbeddingReply()])) as server:
        client = openai.OpenAI(api_key="sk-proj-team-0000000000000000", base_url=server.base_url + "/v1")
        with recording_like_a_team(path):
            client.embeddings.create(model="text-embedding-3-small", input=["a bakery"])
        client.close()
    assert first_user_message(yaml.safe_load(path.read_text())) is None
    with pytest.raises(CassetteError, match="no recorded user message.*--request"):
        adopt_cassette(path)
    assert adopt_cassette(path, request="A CRM for a bakery").meta.request == "A CRM for a bakery"


def test_the_first_user_message_is_read_from_every_api_shape() -> None:
    """Messages and chat completions (string or text blocks) and the Responses API's input all give the request."""

    def cassette(*bodies: dict) -> dict:
        return {"interactions": [{"request": {"body": json.dumps(body)}} for body in bodies]}

    blocks = {"messages": [{"role": "user", "content": [{"type": "text", "text": "A shop"}, {"type": "image"}]}]}
    assert first_user_message(cassette({"input": ["x"]}, blocks)) == (2, "A shop")
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A CRM"}]}
    assert first_user_message(cassette(chat)) == (1, "A CRM")
    assert first_user_message(cassette({"model": "m", "input": "A blog"})) == (1, "A blog")
