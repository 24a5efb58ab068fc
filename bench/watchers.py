"""The watchers' overhead: watched ÷ unwatched, in the same run.

**LLM traffic** (:class:`HttpWatch`).
An answer of ~800 SSE events (the size of a masterplan batch) is streamed from the local
stand-in server and read to its end, alternately with and without :class:`HttpWatch`, so a
busy machine slows both alike. Two readers: the anthropic SDK's stream helper (what an
application pays) and a bare ``httpx2`` byte loop (the watcher's own cost, undiluted by the
SDK's event parsing). A last section compares peak Python allocations (tracemalloc) while a
~1 MB stream is read, watched and not: the watcher keeps the answer's text, not the stream.

**Event loop** (:class:`LoopWatch`). A busy loop that never stalls — 2 000 tasks each
awaiting ``asyncio.sleep(0)`` 50 times, ~10 ms per loop iteration — run by ``asyncio.run`` with and without the watch: the
cost of the heartbeat and the watchdog when there is nothing to find.

    python bench/watchers.py [--runs 15] [--events 800]

Prints a table; nothing here is a test and no test asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx2

if __package__ in (None, ""):  # run as a script: make the repository (and its tests.support) importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.observe.http import HttpWatch
from harness.observe.loop import LoopWatch
from harness.observe.timeline import LLMExchange, LoopStalled, Timeline
from tests.support.wire_server import MessageReply, WireScript, WireServer

CHUNK_CHARS = 60
MESSAGES = [{"role": "user", "content": "Plan a bookshop"}]


def _answer(events: int) -> str:
    line = '{"task_number": 1, "title": "Create the catalogue table", "complexity": "low"},\n'
    text = line * (events * CHUNK_CHARS // len(line) + 1)
    return text[: events * CHUNK_CHARS]


def _via_sdk(server: WireServer) -> Callable[[], object]:
    client = anthropic.Anthropic(api_key="sk-ant-bench-0000000000", base_url=server.base_url, max_retries=0, timeout=30)

    def read() -> object:
        with client.messages.stream(model="claude-bench", max_tokens=64000, messages=MESSAGES) as stream:
            return stream.get_final_text()

    return read


def _via_httpx2(server: WireServer) -> Callable[[], object]:
    client = httpx2.Client(timeout=30)
    body = {"model": "claude-bench", "max_tokens": 64000, "messages": MESSAGES, "stream": True}

    def read() -> object:
        response = client.send(client.build_request("POST", server.base_url + "/v1/messages", json=body), stream=True)
        try:
            return sum(len(chunk) for chunk in response.iter_bytes())
        finally:
            response.close()

    return read


def _interleaved(server: WireServer, text: str, read: Callable[[], object], runs: int) -> tuple[float, float, int]:
    """Medians (seconds) of unwatched and watched reads, alternating; and the events the watcher saw."""
    server.load(WireScript(anthropic=[MessageReply(text, chunk_chars=CHUNK_CHARS)] * (2 * runs + 2)))
    read()  # warm-up: imports, connection pool
    with HttpWatch(Timeline()):
        read()
    plain: list[float] = []
    watched: list[float] = []
    timeline = Timeline()
    for _ in range(runs):
        started = time.perf_counter()
        read()
        plain.append(time.perf_counter() - started)
        with HttpWatch(timeline):
            started = time.perf_counter()
            read()
            watched.append(time.perf_counter() - started)
    last = timeline.of(LLMExchange)[-1]
    assert last.complete and last.text == text, "the watcher did not see the whole answer"
    return statistics.median(plain), statistics.median(watched), len(server.requests)


def _peak_allocation(server: WireServer, text: str, read: Callable[[], object], watched: bool) -> int:
    server.load(WireScript(anthropic=[MessageReply(text, chunk_chars=CHUNK_CHARS)]))
    timeline = Timeline()
    tracemalloc.start()
    try:
        if watched:
            with HttpWatch(timeline):
                read()
        else:
            read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def _busy_loop(tasks: int = 2_000) -> None:
    async def task() -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    await asyncio.gather(*(task() for _ in range(tasks)))


def _loop_overhead(runs: int) -> tuple[float, float]:
    """Medians (seconds) of the busy loop unwatched and watched, alternating."""
    plain: list[float] = []
    watched: list[float] = []
    timeline = Timeline()
    asyncio.run(_busy_loop(100))  # warm-up
    for _ in range(runs):
        started = time.perf_counter()
        asyncio.run(_busy_loop())
        plain.append(time.perf_counter() - started)
        with LoopWatch(timeline):
            started = time.perf_counter()
            asyncio.run(_busy_loop())
            watched.append(time.perf_counter() - started)
    assert not timeline.of(LoopStalled), "the busy loop was reported as stalled"
    return statistics.median(plain), statistics.median(watched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--events", type=int, default=800)
    options = parser.parse_args()
    text = _answer(options.events)
    print(
        f"answer: {len(text)} characters in {options.events} text deltas of {CHUNK_CHARS}; {options.runs} runs each\n"
    )
    print("| reader | unwatched | watched | watched ÷ unwatched | added per event |")
    print("|---|---|---|---|---|")
    with WireServer() as server:
        for name, reader in (("anthropic SDK stream helper", _via_sdk), ("bare httpx2 iter_bytes", _via_httpx2)):
            plain, watched, _ = _interleaved(server, text, reader(server), options.runs)
            added = (watched - plain) / options.events * 1e6
            print(
                f"| {name} | {plain * 1000:.1f} ms | {watched * 1000:.1f} ms | {watched / plain:.2f} | {added:.1f} µs |"
            )
        big = _answer(7000)  # ~1 MB of SSE on the wire
        reader = _via_httpx2(server)
        reader_peak = [_peak_allocation(server, big, reader, watched) for watched in (False, True)]
        print(
            f"\npeak allocations reading a {len(big) // 1000} KB answer (~1 MB of SSE) with bare httpx2: "
            f"unwatched {reader_peak[0] / 1e6:.2f} MB, watched {reader_peak[1] / 1e6:.2f} MB"
        )
    plain, watched = _loop_overhead(options.runs)
    print(
        f"\nbusy event loop, no stall (100 000 task steps): unwatched {plain * 1000:.0f} ms, "
        f"watched {watched * 1000:.0f} ms, ratio {watched / plain:.2f}"
    )


if __name__ == "__main__":
    main()
