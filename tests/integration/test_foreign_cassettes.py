"""`harness cassettes list|scan|adopt` on cassettes a team's pytest-recording suite made, as subprocesses.

The suite's cassettes are recorded here (plain vcrpy, the real SDK, the stand-in server:
:mod:`tests.support.foreign`): extended-thinking streams with signature deltas, pings and
padded data lines, ``?beta=true`` URLs, gzipped bodies, an older vcrpy's httpx format, and
one recorded with no header filtered. None has harness metadata.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support import content
from tests.support.foreign import FOREIGN_ANTHROPIC_KEY, as_older_vcrpy, discovery_reply, record_beta_call

from .test_cli import ROOT, harness

REQUEST = content.request_for("task_manager")
THINKER = ROOT / "tests" / "harness" / "adopt_app" / "pyproject.toml"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A team's tests/cassettes folder: a streamed and a plain thinking call, the plain one in vcrpy < 6's format, a leak."""
    folder = tmp_path_factory.mktemp("team") / "cassettes"
    folder.mkdir()
    reply = discovery_reply(json.dumps(content.discovery_for("task_manager")))
    record_beta_call(folder / "test_streamed_plan.yaml", reply, prompt=REQUEST, stream=True)
    record_beta_call(folder / "test_plain_plan.yaml", reply, prompt=REQUEST, stream=False)
    as_older_vcrpy(folder / "test_plain_plan.yaml", folder / "test_legacy_plan.yaml")
    record_beta_call(folder / "test_leaky.yaml", reply, prompt="A bakery", stream=False, filter_headers=())
    # pytest-recording names a cassette after its test: this one is used by the suite's own test.
    (folder.parent / "test_plans.py").write_text("@pytest.mark.vcr\ndef test_streamed_plan(client): ...\n")
    return folder


def test_list_shows_what_each_foreign_call_holds_and_says_adopt_it(suite: Path) -> None:
    """Every cassette is listed, exit 0: beta URL, stream or JSON, stop reason, thinking and text blocks, model, usage."""
    result = harness("cassettes", "list", str(suite), "--tests", str(suite.parent))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("test_streamed_plan", "test_plain_plan", "test_legacy_plan", "test_leaky"):
        (head,) = [line for line in lines if line.startswith(name + " ")]
        assert "no harness metadata — adopt it" in head, head
        call = lines[lines.index(head) + 1]
        assert "POST /v1/messages?beta=true 200" in call and "end_turn  thinking, text  claude-sonnet-4-6" in call
    streamed = lines[lines.index(next(line for line in lines if line.startswith("test_streamed_plan "))) + 1]
    assert "SSE 28 events" in streamed
    assert (
        lines[-1] == "4 cassette(s): 0 truncated, 3 unused, 4 with no harness metadata (harness cassettes adopt FILE)."
    )

    as_json = harness(
        "cassettes", "list", str(suite / "test_streamed_plan.yaml"), "--format", "json", "--tests", str(suite.parent)
    )
    (entry,) = json.loads(as_json.stdout)
    assert (entry["harness_metadata"], entry["expect"], entry["named_by_tests"], entry["flags"]) == (
        False,
        None,
        True,
        ["no harness metadata"],
    )
    (call,) = entry["calls"]
    assert (call["query"], call["blocks"], call["streamed"], call["flags"]) == (
        "beta=true",
        ["thinking", "text"],
        True,
        [],
    )


def test_scan_gates_foreign_cassettes_instead_of_refusing_them(suite: Path) -> None:
    """scan reads every file of the suite (exit 1): the key the leaky one recorded is named by line, never shown."""
    result = harness("cassettes", "scan", str(suite))
    assert result.returncode == 1, result.stdout + result.stderr
    leaky = suite / "test_leaky.yaml"
    key_line = next(n for n, line in enumerate(leaky.read_text().splitlines(), 1) if FOREIGN_ANTHROPIC_KEY in line)
    assert result.stdout.splitlines() == [f"{leaky}:{key_line}: anthropic-key"]
    assert (
        "1 secret(s) in 1 of 4 file(s)" in result.stderr and FOREIGN_ANTHROPIC_KEY not in result.stdout + result.stderr
    )
    clean = harness("cassettes", "scan", *(str(path) for path in sorted(suite.glob("test_*plan.yaml"))))
    assert clean.returncode == 0 and "3 file(s) scanned: no secret found." in clean.stdout


def test_scan_reads_any_yaml_and_text_that_is_not(tmp_path: Path) -> None:
    """A YAML file that is no cassette and a file that is not YAML are scanned too; a key in either fails the gate."""
    (tmp_path / "notes.yaml").write_text("- just\n- a list\n")
    (tmp_path / "broken.yaml").write_text(f"a: [\n  key: {FOREIGN_ANTHROPIC_KEY}\n")
    result = harness("cassettes", "scan", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{tmp_path / 'broken.yaml'}:2: anthropic-key"]
    assert f"{tmp_path / 'broken.yaml'}: not valid YAML; scanned as text" in result.stderr
    (tmp_path / "broken.yaml").write_text("a: [\n")
    assert harness("cassettes", "scan", str(tmp_path)).returncode == 0


@pytest.mark.slow
def test_adopt_then_replay_runs_the_teams_recording_through_its_application(suite: Path, tmp_path: Path) -> None:
    """adopt gives the streamed recording a request and an expectation; replay --config then passes, exit 0."""
    cassette = tmp_path / "test_streamed_plan.yaml"
    shutil.copy(suite / "test_streamed_plan.yaml", cassette)
    replay_before = harness("replay", str(cassette), "--config", str(THINKER), "--reports-dir", str(tmp_path))
    assert replay_before.returncode == 2 and "harness cassettes adopt" in replay_before.stderr

    adopted = harness("cassettes", "adopt", str(cassette), "--user-id", "u-1", "--session-id", "s-1")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert f"Adopted {cassette} as test_streamed_plan: 1 call(s), expect pass." in adopted.stdout
    assert "(from the first recorded user message (call 1))" in adopted.stdout
    assert f"Scanned {cassette}: no secret found." in adopted.stdout

    again = harness("cassettes", "adopt", str(cassette))
    assert again.returncode == 2 and "already has harness metadata" in again.stderr

    replayed = harness("replay", str(cassette), "--config", str(THINKER), "--reports-dir", str(tmp_path))
    assert replayed.returncode == 0, replayed.stdout[-2000:] + replayed.stderr
    assert "✔ test_streamed_plan" in replayed.stdout and "1 as expected, 0 not" in replayed.stdout


def test_adopt_removes_what_a_leaky_suite_recorded(suite: Path, tmp_path: Path) -> None:
    """Adopting the leaky recording redacts it as recording does: the scan that failed now passes."""
    cassette = tmp_path / "test_leaky.yaml"
    shutil.copy(suite / "test_leaky.yaml", cassette)
    adopted = harness("cassettes", "adopt", str(cassette), "--request", "A bakery", "--expect", "pass")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert FOREIGN_ANTHROPIC_KEY not in cassette.read_text()
    assert harness("cassettes", "scan", str(cassette)).returncode == 0


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--expect", "passed"), "--expect 'passed' is not a verdict"),
        (("--flow-env", "MODEL"), "--flow-env 'MODEL': write NAME=VALUE"),
    ],
)
def test_adopt_refuses_bad_input_in_one_line(suite: Path, tmp_path: Path, args: tuple, reason: str) -> None:
    """A malformed option is exit 2 with one line, and the file is left untouched."""
    cassette = tmp_path / "c.yaml"
    shutil.copy(suite / "test_plain_plan.yaml", cassette)
    result = harness("cassettes", "adopt", str(cassette), *args)
    assert result.returncode == 2 and reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert cassette.read_bytes() == (suite / "test_plain_plan.yaml").read_bytes()
