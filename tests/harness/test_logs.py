"""Logging and the progress line: events bound with stage/probe/check ID, one redaction, TTY-aware output."""

from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import pytest
import structlog
from structlog.testing import capture_logs

from harness.cassettes import load_meta
from harness.config import Settings
from harness.logs import ProgressLine, colour_wanted, configure_logging, get_logger, log_report
from harness.observe.timeline import LLMExchange
from harness.redaction import register_secret
from harness.replay import replay_cassette
from harness.runner import FlowRequest, LLMMode, RunOptions, run_flow
from harness.target import Target, reference_config
from probes.core import Stage

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


def _read_until(read: Callable[[], str], pattern: str, *, limit_s: float = 30) -> str:
    """What the terminal showed, read until ``pattern`` appears (``limit_s`` only guards against a hang)."""
    shown = ""
    deadline = time.monotonic() + limit_s
    while not re.search(pattern, shown):
        assert time.monotonic() < deadline, f"{pattern!r} never appeared; the terminal showed {shown!r}"
        shown += read()
    return shown


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


# -- the progress line: read from the timeline, never reported by the application -------------

MODEL = "claude-sonnet-4-6"
#: The streamed answer: what has arrived when the stand-in holds the stream, and the rest.
FIRST_PART, REST = "x" * 4321, "y" * 1000


class _GatedAnthropic(ThreadingHTTPServer):
    """A stand-in for the Anthropic Messages API that holds its answer at ``gate`` until the test opens it.

    A streamed answer is held after ``FIRST_PART`` was sent (so the client has read exactly that
    much); a plain one before anything is sent. The wire format is the API's own.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GatedHandler)
        self.gate = threading.Event()
        #: Set while an answer is held at the gate.
        self.holding = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _GatedHandler(BaseHTTPRequestHandler):
    server: _GatedAnthropic

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        usage = {"input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "stop_sequence": None}
        if not body.get("stream"):
            self.server.holding.set()
            self.server.gate.wait(60)
            payload = json.dumps(
                {
                    **message,
                    "content": [{"type": "text", "text": FIRST_PART + REST}],
                    "stop_reason": "end_turn",
                    "usage": usage,
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        self._event("message_start", {"message": {**message, "content": [], "stop_reason": None, "usage": usage}})
        self._event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        self._event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": FIRST_PART}})
        self.server.holding.set()
        self.server.gate.wait(60)
        self._event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": REST}})
        self._event("content_block_stop", {"index": 0})
        self._event(
            "message_delta",
            {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 9}},
        )
        self._event("message_stop", {})

    def _event(self, name: str, data: dict) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())
        self.wfile.flush()


@pytest.fixture
def gated_api() -> Iterator[_GatedAnthropic]:
    """The gated stand-in, serving in a thread; its gate is opened on the way out so nothing hangs."""
    server = _GatedAnthropic()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.gate.set()
        server.shutdown()
        server.server_close()


def streaming_flow(request: str, user_id: str | None, session_id: str | None) -> str:
    """A flow shim as a user writes one: its client built from the environment, one answer streamed to its end."""
    client = anthropic.Anthropic(max_retries=0)
    with client.messages.stream(
        model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": request}]
    ) as stream:
        return "".join(stream.text_stream)


def plain_flow(request: str, user_id: str | None, session_id: str | None) -> str:
    """The same shim with a call that does not stream."""
    client = anthropic.Anthropic(max_retries=0)
    message = client.messages.create(model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": request}])
    return message.content[0].text


def _run_shim(flow: str, api: _GatedAnthropic, progress: ProgressLine):
    """The shim run by the runner as any target is (llm stage only: no database needed); returns a future."""
    target = Target(replace(reference_config(), flow=f"{__name__}:{flow}"))
    settings = Settings(anthropic_api_key="sk-ant-test-progress-0000000000", anthropic_base_url=api.base_url)
    options = RunOptions(stages=frozenset({Stage.LLM}), llm=LLMMode.FULL, progress=progress.watching)
    pool = ThreadPoolExecutor(1)
    future = pool.submit(run_flow, settings, FlowRequest("A shop", "u-1", "s-1"), target=target, options=options)
    pool.shutdown(wait=False)
    return future


@pytest.mark.parametrize("no_color", [True, False])
def test_progress_shows_characters_so_far_and_elapsed_while_an_answer_streams(
    terminal, gated_api, monkeypatch, no_color
) -> None:
    """Mid-stream the terminal shows the characters received so far and the seconds elapsed; the line is cleared after."""
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    stream, read = terminal
    run = _run_shim("streaming_flow", gated_api, ProgressLine(stream, label="shop"))
    pattern = rf"shop LLM call 1 \({MODEL}\): 4,321 chars · \d+\.\d s"
    shown = _read_until(read, pattern)
    gated_api.gate.set()
    result = run.result(timeout=60)
    shown += read()
    assert result.returned == FIRST_PART + REST
    (exchange,) = result.timeline.of(LLMExchange)
    assert exchange.complete and exchange.received_chars == len(FIRST_PART + REST)
    if no_color:
        assert "\x1b[" not in shown  # NO_COLOR: no escape sequence at all
        assert shown.endswith("\r" + " " * len(re.search(pattern, shown).group(0)) + "\r")  # cleared with spaces
    else:
        assert re.search("\x1b\\[2m" + pattern + "\x1b\\[0m", shown)  # dim on a colour terminal
        assert shown.endswith("\r\x1b[2K")


def test_progress_says_it_is_waiting_for_an_answer_that_does_not_stream(terminal, gated_api, monkeypatch) -> None:
    """A call that does not stream shows the seconds it has waited so far."""
    monkeypatch.setenv("NO_COLOR", "1")
    stream, read = terminal
    run = _run_shim("plain_flow", gated_api, ProgressLine(stream))
    _read_until(read, rf"\rLLM call 1 \({MODEL}\): waiting for the answer · \d+\.\d s")
    gated_api.gate.set()
    assert run.result(timeout=60).returned == FIRST_PART + REST


@pytest.mark.parametrize("quiet", [True, False])
def test_progress_is_silent_off_a_terminal_or_when_quiet(terminal, gated_api, quiet) -> None:
    """--quiet on a terminal, or any non-terminal stream: no progress thread is started and not a character is written."""
    tty, read = terminal
    stream = tty if quiet else io.StringIO()
    run = _run_shim("streaming_flow", gated_api, ProgressLine(stream, quiet=quiet))
    assert gated_api.holding.wait(60), "the stream never opened"  # half the answer sent: a line would show now
    assert "harness-progress" not in {thread.name for thread in threading.enumerate()}
    gated_api.gate.set()
    assert run.result(timeout=60).returned == FIRST_PART + REST
    assert (read() if quiet else stream.getvalue()) == ""


def test_diagnose_on_a_terminal_shows_the_progress_line(flow_database_url, gated_api, tmp_path) -> None:
    """`harness diagnose --llm full` with stderr on a terminal shows the line while the flow waits for its first answer."""
    master, slave = os.openpty()
    env = {
        **os.environ,
        "DATABASE_URL": flow_database_url,
        "ANTHROPIC_API_KEY": "sk-ant-test-progress-0000000000",
        "ANTHROPIC_BASE_URL": gated_api.base_url,
        "OPENAI_API_KEY": "",
        "NO_COLOR": "1",
        "HARNESS_REPORTS_DIR": str(tmp_path),
    }
    command = [os.path.join(os.path.dirname(sys.executable), "harness"), "diagnose", "--llm", "full"]
    command += ["--user-id", "u-1", "--session-id", "s-1"]
    with subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, text=True
    ) as process:
        os.close(slave)

        def read() -> str:
            chunks = []
            while select.select([master], [], [], 0.05)[0]:
                try:
                    chunks.append(os.read(master, 65536))
                except OSError:  # the process closed its end
                    break
            return b"".join(chunks).decode("utf-8", "replace")

        try:
            _read_until(read, rf"LLM call 1 \({MODEL}\): waiting for the answer · \d+\.\d s")
        finally:
            gated_api.gate.set()
            stdout, _ = process.communicate(timeout=120)
            os.close(master)
    assert "harness diagnose" in stdout and process.returncode == 1  # the stand-in's answer is no discovery


@pytest.mark.slow
def test_units_of_work_of_any_app_are_told_at_debug(stand_in_apis, flow_database_url) -> None:
    """Every commit the watchers saw is a unit_committed debug event with the app's line and rows per table."""
    from structlog.testing import capture_logs

    from harness.runner import FlowRequest, run_flow
    from tests.support.scenarios import healthy_script

    with capture_logs() as logs:
        run = run_flow(stand_in_apis(healthy_script("task_manager"), flow_database_url), FlowRequest("x", "u", "s"))
    committed = [event for event in logs if event["event"] == "unit_committed"]
    assert run.report.verdict == "pass" and committed
    assert all(event["log_level"] == "debug" and event["at"].startswith("harness/flow/") for event in committed)
    assert any(rows.startswith("insert masterplan_tasks") for event in committed for rows in event["rows"])
