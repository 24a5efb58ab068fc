"""The event-loop watcher: a loop blocked by sync code is a stall naming the line; awaiting is not."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import anthropic
import pytest

from harness.observe.code import AppCode
from harness.observe.http import HttpWatch
from harness.observe.loop import LoopWatch
from harness.observe.timeline import LLMExchange, LoopStalled, Timeline
from tests.support.wire_server import Delayed, MessageReply, WireScript, WireServer

HERE = AppCode([Path(__file__).parent])


async def blocking_flow() -> str:
    await asyncio.sleep(0)
    time.sleep(1.3)  # noqa: ASYNC251 - the blocking call under test
    await asyncio.sleep(0.05)
    return "done"


async def awaiting_flow() -> str:
    await asyncio.sleep(1.3)
    return "done"


def test_sync_sleep_inside_the_loop_is_one_stall_naming_its_line() -> None:
    """time.sleep(1.3) inside a coroutine run by asyncio.run gives one LoopStalled at that line, over the threshold."""
    timeline = Timeline()
    with LoopWatch(timeline, HERE):
        assert asyncio.run(blocking_flow()) == "done"

    (stall,) = timeline.of(LoopStalled)
    assert stall.stalled_s > 1.0
    assert stall.blocking is not None
    assert stall.blocking.file.endswith("test_loop.py") and stall.blocking.function == "blocking_flow"
    assert (stall.blocking.code or "").startswith("time.sleep(1.3)")
    assert stall.stack[-1] == str(stall.blocking)
    assert any("asyncio" in frame for frame in stall.stack[:-1])


def test_awaiting_never_stalls() -> None:
    """A coroutine that awaits asyncio.sleep(1.3) lets the loop run: no LoopStalled."""
    timeline = Timeline()
    with LoopWatch(timeline, HERE):
        assert asyncio.run(awaiting_flow()) == "done"
    assert timeline.of(LoopStalled) == []


def test_stall_in_the_last_step_before_the_loop_stops_is_recorded() -> None:
    """A flow whose last step blocks and returns (the loop stops right after) still gives its stall."""

    async def ends_blocked() -> None:
        time.sleep(0.5)  # noqa: ASYNC251

    timeline = Timeline()
    with LoopWatch(timeline, HERE, threshold=0.3):
        asyncio.run(ends_blocked())
    (stall,) = timeline.of(LoopStalled)
    assert stall.blocking is not None and stall.blocking.function == "ends_blocked"


def test_loop_already_running_and_loops_in_other_threads_are_watched() -> None:
    """A watch entered from async code watches its own loop; a loop started in another thread is watched too."""

    async def blocks_twice() -> None:
        time.sleep(0.5)  # noqa: ASYNC251
        await asyncio.sleep(0)

    async def inside() -> Timeline:
        timeline = Timeline()
        with LoopWatch(timeline, HERE, threshold=0.3):
            await asyncio.sleep(0.05)
            time.sleep(0.5)  # noqa: ASYNC251
            await asyncio.sleep(0.05)
            worker = threading.Thread(target=asyncio.run, args=(blocks_twice(),))
            worker.start()
            await asyncio.to_thread(worker.join, 10)
        return timeline

    timeline = asyncio.run(inside())
    functions = sorted(stall.blocking.function for stall in timeline.of(LoopStalled) if stall.blocking)
    assert functions == ["blocks_twice", "inside"]


def test_sync_sdk_call_in_async_code_is_a_stall_at_the_call_with_the_blocking_exchange() -> None:
    """A sync Anthropic call inside async code stalls the loop at the app's call line; its exchange is flagged and falls inside the stall."""
    timeline = Timeline()
    with WireServer(WireScript(anthropic=[Delayed(MessageReply("late"), 0.6)])) as server:
        client = anthropic.Anthropic(
            api_key="sk-ant-test-3b8f0e1d7c6a5b4e", base_url=server.base_url, max_retries=0, timeout=10
        )

        async def flow() -> None:
            client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
            await asyncio.sleep(0)

        with HttpWatch(timeline, HERE), LoopWatch(timeline, HERE, threshold=0.3):
            asyncio.run(flow())

    (stall,) = timeline.of(LoopStalled)
    (exchange,) = timeline.of(LLMExchange)
    assert stall.blocking is not None and stall.blocking.function == "flow"
    assert "client.messages.create" in (stall.blocking.code or "")
    # httpcore2/httpx2 under the newest SDKs, httpcore/httpx under anthropic 0.x.
    assert any("httpcore" in frame or "httpx" in frame or "ssl" in frame or "socket" in frame for frame in stall.stack)
    assert exchange.blocking_loop and exchange.caller == stall.blocking
    assert stall.at <= exchange.at <= stall.at + stall.stalled_s
    assert exchange.seq < stall.seq


def test_leaving_the_watch_restores_asyncio() -> None:
    """After the watch, run_forever is asyncio's own again and no loop is watched."""
    original = asyncio.BaseEventLoop.__dict__["run_forever"]
    timeline = Timeline()
    with LoopWatch(timeline):
        assert asyncio.BaseEventLoop.__dict__["run_forever"] is not original
    assert asyncio.BaseEventLoop.__dict__["run_forever"] is original

    async def blocked() -> None:
        time.sleep(0.3)  # noqa: ASYNC251

    asyncio.run(blocked())
    assert timeline.of(LoopStalled) == []


def test_without_app_code_the_innermost_frame_is_blamed() -> None:
    """With no AppCode the blocking location is the innermost frame, by its full path."""

    async def blocked() -> None:
        time.sleep(0.4)  # noqa: ASYNC251

    timeline = Timeline()
    with LoopWatch(timeline, threshold=0.2):
        asyncio.run(blocked())
    (stall,) = timeline.of(LoopStalled)
    assert stall.blocking is not None and stall.blocking.file == __file__ and stall.blocking.function == "blocked"


#: Run in a child process pinned to one core beside three busy processes, at the lowest priority: a loop that
#: only awaits is left waiting for the core again and again (what a loaded CI machine does to a healthy flow).
_STARVED = r"""
import asyncio, json, os, subprocess, sys, time
from harness.observe.loop import LoopWatch
from harness.observe.timeline import LoopStalled, Timeline

cpu = min(os.sched_getaffinity(0))
os.sched_setaffinity(0, {cpu})
spin = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(3)]
time.sleep(0.3)
os.setpriority(os.PRIO_PROCESS, 0, 19)


async def awaiting():
    end = time.perf_counter() + 1.5
    while time.perf_counter() < end:
        await asyncio.sleep(0.002)


async def blocking():
    time.sleep(0.5)


stalls = {}
try:
    for name, flow in (("awaiting", awaiting), ("blocking", blocking)):
        timeline = Timeline()
        with LoopWatch(timeline, threshold=0.05, interval=0.005):
            asyncio.run(flow())
        stalls[name] = [event.stalled_s for event in timeline.of(LoopStalled)]
finally:
    for process in busy:
        process.kill()
print(json.dumps(stalls))
"""


@pytest.mark.skipif(
    not Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").exists(),
    reason="the kernel here does not say how long a thread waited for a core (no /proc/<pid>/task/<tid>/schedstat)",
)
def test_a_loop_starved_of_cpu_is_not_a_stall_and_a_blocked_one_is_measured_without_the_wait() -> None:
    """A busy machine delays every beat of a loop that only awaits: that is no stall (LLM017 warned on a healthy flow
    under CI load). A loop blocked by time.sleep(0.5) on the same starved core is one stall of about 0.5 s, not
    the seconds it took to get the core back."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _STARVED], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    stalls = json.loads(result.stdout)
    assert stalls["awaiting"] == []
    (blocked,) = stalls["blocking"]
    assert 0.45 <= blocked < 0.75
