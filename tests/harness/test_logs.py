"""Logging and the progress line: events bound with stage/probe/check ID, one redaction, TTY-aware output."""

from __future__ import annotations

import io
import json
import os
import select
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from harness.cassettes import load_meta
from harness.logs import ProgressSink, colour_wanted, configure_logging, get_logger, log_report
from harness.redaction import register_secret
from harness.replay import replay_cassette

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"


@pytest.fixture(autouse=True)
def _reset_structlog():
    """Each test configures logging afresh; leave the defaults behind."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def terminal():
    """A real pseudo-terminal: (stream the code writes to, function reading what appeared)."""
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w", encoding="utf-8")

    def read() -> str:
        stream.flush()
        chunks = []
        while select.select([master], [], [], 0.05)[0]:
            chunks.append(os.read(master, 65536))
        return b"".join(chunks).decode("utf-8", "replace")

    yield stream, read
    stream.close()
    os.close(master)


@pytest.fixture(scope="module")
def max_tokens_run(flow_database_factory):
    """The max_tokens cassette replayed on a fresh database."""
    url = flow_database_factory.new_database()
    try:
        return replay_cassette(load_meta(CASSETTES / "masterplan-max-tokens.yaml"), url).run
    finally:
        flow_database_factory.drop(url)


def test_every_check_event_is_bound_with_stage_probe_and_check_id(max_tokens_run) -> None:
    """log_report tells the run check by check; failures at info, passes at debug, then run_finished."""
    with capture_logs() as logs:
        log_report(get_logger("test"), max_tokens_run.report, cassette="masterplan-max-tokens")
    checks = [e for e in logs if e["event"] == "check_finished"]
    assert len(checks) == len(max_tokens_run.report.outcomes)
    assert all({"stage", "probe", "check_id", "cassette"} <= e.keys() for e in checks)
    failed = [e for e in checks if e["outcome"] == "failed"]
    assert [(e["stage"], e["probe"], e["check_id"], e["log_level"]) for e in failed] == [
        ("llm", "masterplan", "LLM001", "info")
    ]
    assert failed[0]["evidence"]["stop_reason"] == "max_tokens"
    assert {e["log_level"] for e in checks if e["outcome"] == "passed"} == {"debug"}
    last = logs[-1]
    assert (last["event"], last["verdict"], last["stage"], last["check_id"]) == (
        "run_finished",
        "llm:LLM001",
        "llm",
        "LLM001",
    )


def test_json_lines_off_a_terminal_with_secrets_redacted() -> None:
    """Not a TTY: one JSON object per line, and a registered secret or key shape never appears."""
    register_secret("pw-Zq81-registered-secret")
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    get_logger("test").info("probe_started", stage="db", dsn="postgresql://u:pw-Zq81-registered-secret@h/db")
    get_logger("test").info("llm_key", key="sk-ant-api03-abcdefghijklmnop")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["probe_started", "llm_key"]
    assert "pw-Zq81" not in stream.getvalue() and "abcdefghijklmnop" not in stream.getvalue()


def test_console_on_a_terminal_and_log_format_overrides(terminal) -> None:
    """A TTY gets the human console; --log-format json wins over the guess."""
    stream, read = terminal
    configure_logging("info", stream=stream)
    get_logger("test").info("run_finished", verdict="pass")
    console = read()
    assert "run_finished" in console and not console.lstrip().startswith("{")
    configure_logging("info", log_format="json", stream=stream)
    get_logger("test").info("run_finished", verdict="pass")
    assert json.loads(read().strip())["verdict"] == "pass"


def test_debug_lines_are_dropped_at_the_default_level() -> None:
    """At warning (the default) debug and info events print nothing."""
    stream = io.StringIO()
    configure_logging(stream=stream)
    get_logger("test").debug("db_committed", inserted=3)
    get_logger("test").info("run_finished")
    assert stream.getvalue() == ""


def test_no_color_turns_colour_off_on_a_terminal(terminal, monkeypatch) -> None:
    """NO_COLOR set: no ANSI colour even on a terminal; unset: colour on."""
    stream, _read = terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_wanted(stream) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_wanted(stream) is False
    assert colour_wanted(io.StringIO()) is False


def _replay_with(sink, flow_database_url: str):
    return replay_cassette(load_meta(CASSETTES / "healthy-task-manager.yaml"), flow_database_url, events=sink).run


def test_progress_shows_characters_and_elapsed_while_streaming(terminal, flow_database_url, monkeypatch) -> None:
    """On a terminal the streamed masterplan shows "N chars · S s" as it arrives, then clears the line."""
    monkeypatch.setenv("NO_COLOR", "1")
    stream, read = terminal
    sink = ProgressSink(stream, label="healthy")
    run = _replay_with(sink, flow_database_url)
    shown = read()
    assert run.report.verdict == "pass"
    assert any(e.type.value == "masterplan_generation_progress" for e in sink.events)
    assert "healthy masterplan: 4,000 chars · " in shown and " s" in shown
    assert "\x1b[" not in shown  # NO_COLOR: no escape sequences at all


@pytest.mark.parametrize("quiet", [True, False])
def test_progress_is_silent_off_a_terminal_or_when_quiet(terminal, flow_database_url, quiet) -> None:
    """--quiet on a terminal, or any non-terminal stream: not a character of progress, events still kept."""
    tty, read = terminal
    stream = tty if quiet else io.StringIO()
    sink = ProgressSink(stream, quiet=quiet)
    _replay_with(sink, flow_database_url)
    assert (read() if quiet else stream.getvalue()) == ""
    assert sink.events
