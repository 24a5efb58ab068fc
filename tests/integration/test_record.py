"""`harness record` and `harness cassettes`, as subprocesses, recording from stand-in APIs started here."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import content
from tests.support.wire_server import ErrorReply, MessageReply, WireScript, WireServer

from .test_cli import harness

#: Fake secrets planted in every place a recording could carry one.
ANTHROPIC_KEY = "sk-ant-api03-FAKEanthropicKEY0001xyz"
OPENAI_KEY = "sk-proj-FAKEopenaiKEY0002xyzxyzxyz"
PROMPT_SECRET = "sk-ant-api03-PASTEDintoTHEprompt0003"
ANSWER_SECRET = "sk-proj-LEAKEDbyTHEmodel0004abcdef"
ORGANIZATION = "org-FAKEorganizationID00005"
KIND = "task_manager"


def _discovery_with_secret() -> str:
    discovery = content.discovery_for(KIND)
    discovery["assumptions"] = [*discovery.get("assumptions", []), f"Staging uses the key {ANSWER_SECRET}."]
    return content.render_reply(discovery)


ENV = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "OPENAI_API_KEY": OPENAI_KEY, "DATABASE_URL": ""}


@dataclass(frozen=True)
class Recorded:
    """One `harness record` run against stand-ins that gzip their answers and send ids and cookies."""

    path: Path
    result: subprocess.CompletedProcess
    organization_id: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Record once (the SDK import makes each recording subprocess cost seconds): a leaked key, a failing
    embeddings call naming an organization, and a masterplan stream cut before its stop events."""
    out = tmp_path_factory.mktemp("recorded")
    plan_text = content.render_reply(content.masterplan_for(KIND))
    embeddings_fail = ErrorReply(
        429, "requests", f"Rate limit reached for text-embedding-3-small in organization {ORGANIZATION}."
    )
    script = WireScript(
        anthropic=[
            MessageReply(_discovery_with_secret()),
            MessageReply(content.truncate_text(plan_text, 0.4), cut_stream=True),
        ]
    )
    with (
        WireServer(script, compress=True) as anthropic,
        WireServer(WireScript(openai=[embeddings_fail]), compress=True) as openai,
    ):
        request = content.request_for(KIND) + f" Our staging key is {PROMPT_SECRET}."
        result = harness(
            "record",
            request,
            "--name",
            "recorded",
            "--out",
            str(out),
            "--disposable-db",
            "--anthropic-base-url",
            anthropic.base_url,
            "--openai-base-url",
            openai.base_url + "/v1",
            env=ENV,
        )
        yield Recorded(out / "recorded.yaml", result, anthropic.organization_id)


def test_recording_keeps_no_secret_and_scan_names_a_planted_one(recorded: Recorded, tmp_path: Path) -> None:
    """Fake secrets in headers, cookies, ids, prompt and answers are absent; scan passes; a planted key fails it."""
    result = recorded.result
    assert result.returncode == 0, result.stdout + result.stderr
    text = recorded.path.read_text()
    planted = [ANTHROPIC_KEY, OPENAI_KEY, PROMPT_SECRET, ANSWER_SECRET, ORGANIZATION, recorded.organization_id]
    grep = subprocess.run(
        ["grep", "-c", "-F", *(f"-e{secret}" for secret in planted), str(recorded.path)], capture_output=True, text=True
    )
    assert grep.stdout.strip() == "0", [secret for secret in planted if secret in text]
    for header in ("authorization", "x-api-key", "cookie", "set-cookie", "x-stainless", "user-agent", "request-id"):
        assert f"{header}:" not in text.lower(), header
    assert "req_011C" not in text and "_cfuvid" not in text and "__cf_bm" not in text  # ids and cookie values
    assert "uri: http://127.0.0.1" not in text and "uri: https://api.anthropic.com/v1/messages" in text
    assert "content-encoding" not in text.lower()  # bodies stored decoded, so nothing hides in gzip
    assert not any(secret in result.stdout + result.stderr for secret in planted)

    scan = harness("cassettes", "scan", str(recorded.path), env=ENV)
    assert scan.returncode == 0, scan.stdout + scan.stderr

    copy = tmp_path / "planted.yaml"
    lines = text.splitlines()
    target = next(i for i, line in enumerate(lines) if "Staging uses the key" in line)
    lines[target] = lines[target].replace("Staging uses", f"Staging uses {ANTHROPIC_KEY} ")
    copy.write_text("\n".join(lines) + "\n")
    planted_scan = harness("cassettes", "scan", str(copy), env=ENV)
    assert planted_scan.returncode == 1
    assert f"{copy}:{target + 1}:" in planted_scan.stdout
    assert ANTHROPIC_KEY not in planted_scan.stdout + planted_scan.stderr


def test_a_cut_stream_is_flagged_when_recorded_and_listed_as_truncated(recorded: Recorded) -> None:
    """A stream without its stop events warns at record time, is marked in metadata, and `cassettes list` flags it."""
    result = recorded.result
    assert "warning: call 3 (POST /v1/messages): the stream ended without its stop events" in result.stdout
    assert "expect llm:LLM002" in result.stdout
    meta = yaml.safe_load(recorded.path.read_text())["metadata"]["harness"]
    assert meta["expect"] == "llm:LLM002" and meta["truncated"] is True
    assert meta["stop_reasons"] == ["end_turn", None, None] and meta["warnings"]
    assert meta["usage"]["input_tokens"] > 0

    listed = harness("cassettes", "list", str(recorded.path), "--format", "json", "--tests", str(recorded.path.parent))
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["expect"] == "llm:LLM002" and "truncated" in entry["flags"]
    assert entry["calls"][2]["flags"] == ["stream-cut"] and entry["calls"][1]["flags"] == ["http-429"]


def test_a_prompt_with_a_secret_in_it_replays_from_its_redacted_recording(
    recorded: Recorded, flow_database_url: str
) -> None:
    """The recording holds the prompt redacted; replay redacts the new request the same way, so it still matches."""
    from harness.cassettes import load_meta
    from harness.replay import replay_cassette

    result = replay_cassette(load_meta(recorded.path), flow_database_url)
    assert result.verdict == "llm:LLM002", result.run.report.first_failure
    assert result.matched


def test_record_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    """An existing cassette is kept: one line naming it, exit 2, no API called."""
    (tmp_path / "taken.yaml").write_text("keep me\n")
    result = harness("record", "a shop", "--name", "taken", "--out", str(tmp_path), "--disposable-db", env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'taken.yaml'} exists; pass --force to overwrite it"
    ]
    assert (tmp_path / "taken.yaml").read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({**ENV, "DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ({**ENV, "ANTHROPIC_API_KEY": ""}, "ANTHROPIC_API_KEY is not set"),
    ],
)
def test_record_without_a_database_or_key_is_bad_usage(tmp_path: Path, env: dict, expected: str) -> None:
    """Without DATABASE_URL (and no --disposable-db) or without a key: one line, exit 2."""
    result = harness("record", "a shop", "--name", "x", "--out", str(tmp_path), env=env)
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.yaml").exists()


def test_list_flags_cassettes_nothing_uses(tmp_path: Path) -> None:
    """A cassette with no checkable expectation and no test naming it is flagged unused."""
    body = "version: 1\ninteractions: []\nmetadata:\n  harness: {name: %s, request: r, expect: %s}\n"
    (tmp_path / "orphan.yaml").write_text(body % ("orphan", "pending"))
    (tmp_path / "named.yaml").write_text(body % ("named", "pending"))
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text('CASSETTE = "named.yaml"\n')
    result = harness(
        "cassettes", "list", str(tmp_path / "orphan.yaml"), str(tmp_path / "named.yaml"), "--tests", str(tests)
    )
    assert result.returncode == 0, result.stderr
    orphan = next(line for line in result.stdout.splitlines() if line.startswith("orphan"))
    named = next(line for line in result.stdout.splitlines() if line.startswith("named"))
    assert "unused" in orphan and "unused" not in named
    assert "1 unused" in result.stdout


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: [\n", "not valid YAML"),
        ("- just\n- a list\n", "not a vcrpy cassette"),
    ],
)
def test_broken_cassettes_are_one_line_exit_2(tmp_path: Path, text: str, reason: str) -> None:
    """list names a file that is no vcrpy cassette and the reason in one line, exit 2, no traceback."""
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = harness("cassettes", "list", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["list", "scan"])
def test_a_cassette_without_harness_metadata_is_listed_and_scanned_not_refused(tmp_path: Path, command: str) -> None:
    """A vcrpy cassette recorded outside the harness is no error for list or scan: exit 0 (list says adopt it)."""
    path = tmp_path / "foreign.yaml"
    path.write_text("version: 1\ninteractions: []\n")
    result = harness("cassettes", command, str(path))
    assert result.returncode == 0, result.stderr
    if command == "list":
        assert result.stdout.startswith("foreign  no harness metadata — adopt it  0 call(s)")


@pytest.mark.parametrize(
    "command", [["record"], ["cassettes"], ["cassettes", "list"], ["cassettes", "scan"], ["cassettes", "adopt"]]
)
def test_new_commands_have_help_with_an_example(command: list[str]) -> None:
    """Each new command's --help teaches with an example."""
    result = harness(*command, "--help")
    assert result.returncode == 0 and "Example" in result.stdout
