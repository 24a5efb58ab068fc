"""The event-loop watcher: an asyncio loop that stood still, how long, and the line that held it.

A sync call inside async code (a sync SDK stream, ``time.sleep``, a sync database driver)
blocks the whole loop: every other task waits, timeouts fire late, and nothing says why.
While a :class:`LoopWatch` is entered, every asyncio loop that runs in the process gets a
heartbeat — a callback the loop runs every ``interval`` — and one watchdog thread checks the
beats. When no beat has run for more than ``threshold``, the watchdog samples the loop
thread's stack (``sys._current_frames()``) until the loop runs again; then one
:class:`~harness.observe.timeline.LoopStalled` is recorded, naming the application's line
seen in most samples and the whole stack there. Its ``at`` is the last beat before the
stall and ``stalled_s`` the time from there to the loop's next sign of life, so the stall
covers the blocking call whole (and overstates it by at most one ``interval``). Time the loop's
thread spent ready to run but waiting for a core (a busy machine, not the application's code: the
kernel's run-queue wait in ``/proc/self/task/<tid>/schedstat``, where there is one) is not
counted: a starved process is not a blocked loop::

    with LoopWatch(timeline, code, threshold=1.0):
        target.call(request, user_id, session_id)      # asyncio.run(...) inside: watched

Loops are found from outside: ``asyncio.BaseEventLoop.run_forever`` (which ``asyncio.run``
and ``run_until_complete`` go through, in any thread) is patched at class level while a
watch is entered; a loop already running in the thread that enters the watch is watched
too. Loops that are not ``BaseEventLoop`` (uvloop) are not seen. Nothing is sampled while
no loop is late, so a healthy run costs one callback and one watchdog wake-up per interval.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from harness.observe.code import AppCode
from harness.observe.timeline import CodeLocation, LoopStalled, Timeline

__all__ = ["DEFAULT_THRESHOLD_S", "LoopWatch"]

#: A loop that stands still longer than this (seconds) is a stall.
DEFAULT_THRESHOLD_S = 1.0
#: Distinct stacks kept per stall (a blocked call shows the same stack in every sample).
_MAX_STACKS = 64
#: Frames kept per stack, innermost first.
_MAX_DEPTH = 80

#: A frame as sampled: file name, line, function.
_Frame = tuple[str, int, str]


def _runqueue_wait(native_id: int) -> float:
    """Seconds the thread has spent ready to run but waiting for a core, so far (0.0 where the kernel does not say)."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat", "rb") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _stack_of(frame: types.FrameType | None) -> tuple[_Frame, ...]:
    """The frames of a stack, outermost first (at most ``_MAX_DEPTH`` of the innermost)."""
    frames: list[_Frame] = []
    while frame is not None and len(frames) < _MAX_DEPTH:
        frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    frames.reverse()
    return tuple(frames)


class _Stall:
    """What the watchdog saw of one stall: each distinct stack with how often, and when last."""

    def __init__(self) -> None:
        self.stacks: dict[tuple[_Frame, ...], list[int]] = {}
        self.samples = 0

    def add(self, stack: tuple[_Frame, ...]) -> None:
        self.samples += 1
        seen = self.stacks.get(stack)
        if seen is not None:
            seen[0] += 1
            seen[1] = self.samples
        elif len(self.stacks) < _MAX_STACKS:
            self.stacks[stack] = [1, self.samples]


class _WatchedLoop:
    """One loop while it runs under watch: its heartbeat, and the stall in progress."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.native_id = threading.get_native_id()
        self.interval = interval
        self.lock = threading.Lock()
        #: When the loop last showed it was running (a beat ran, or watching began).
        self.alive = time.perf_counter()
        #: The loop thread's run-queue wait then (:func:`_runqueue_wait`).
        self.alive_waited = _runqueue_wait(self.native_id)
        self.stall = _Stall()
        self.active = True
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Schedule the first beat (from the loop's own thread)."""
        self.handle = self.loop.call_later(self.interval, self.beat)

    def beat(self) -> None:
        if not self.active:
            return
        try:
            _REGISTRY.resumed(self, time.perf_counter())
        finally:
            self.handle = self.loop.call_later(self.interval, self.beat)

    def sample(self, frame: types.FrameType | None, now: float, threshold: float) -> None:
        """Keep the loop thread's stack, if the loop is still late (it may have resumed meanwhile)."""
        stack = _stack_of(frame)
        with self.lock:
            if now - self.alive > threshold and stack:
                self.stall.add(stack)

    def take(self, now: float) -> tuple[float, float, _Stall]:
        """(when the loop was last seen running, how long its thread waited for a core since, what was sampled
        since), and start again from ``now``."""
        waited = _runqueue_wait(self.native_id)
        with self.lock:
            alive, stall, since = self.alive, self.stall, self.alive_waited
            self.alive, self.alive_waited = now, waited
            self.stall = _Stall()
        return alive, max(0.0, waited - since), stall


class _Registry:
    """Active watches, the loops they watch, the watchdog thread and the ``run_forever`` patch."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watches: tuple[LoopWatch, ...] = ()
        self.loops: dict[int, _WatchedLoop] = {}
        self.original: Callable[..., Any] | None = None
        self.stop: threading.Event | None = None
        self.watchdog: threading.Thread | None = None

    # -- watches -----------------------------------------------------------------------------

    def enter(self, watch: LoopWatch) -> None:
        with self.lock:
            if watch in self.watches:
                raise RuntimeError("this LoopWatch is already entered")
            first = not self.watches
            self.watches = (*self.watches, watch)
            if first:
                self._install()

    def exit(self, watch: LoopWatch) -> None:
        with self.lock:
            if watch not in self.watches:
                return
            self.watches = tuple(w for w in self.watches if w is not watch)
            if self.watches:
                return
            self._uninstall()
            left, self.loops = list(self.loops.values()), {}
            stop, watchdog = self.stop, self.watchdog
            self.stop = self.watchdog = None
        for state in left:
            state.active = False  # its next beat does not come back
        if stop is not None and watchdog is not None:
            stop.set()
            watchdog.join(timeout=5.0)

    def _install(self) -> None:
        original = asyncio.BaseEventLoop.run_forever

        def run_forever(loop: asyncio.BaseEventLoop) -> None:
            state = _REGISTRY.attach(loop)
            try:
                return original(loop)
            finally:
                if state is not None:
                    _REGISTRY.detach(state)

        run_forever._harness_loop_watch = True  # type: ignore[attr-defined]
        self.original = original
        asyncio.BaseEventLoop.run_forever = run_forever  # type: ignore[method-assign]
        self.stop = threading.Event()
        self.watchdog = threading.Thread(target=self._watch, args=(self.stop,), name="harness-loop-watch", daemon=True)
        self.watchdog.start()

    def _uninstall(self) -> None:
        current = asyncio.BaseEventLoop.__dict__.get("run_forever")
        if self.original is not None and getattr(current, "_harness_loop_watch", False):
            asyncio.BaseEventLoop.run_forever = self.original  # type: ignore[method-assign]
        self.original = None

    # -- loops -------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> _WatchedLoop | None:
        """Start watching ``loop`` from the thread that runs it (``None``: no watch is active)."""
        with self.lock:
            if not self.watches or id(loop) in self.loops:
                return None
            state = _WatchedLoop(loop, min(watch.interval for watch in self.watches))
            self.loops[id(loop)] = state
        state.start()
        return state

    def detach(self, state: _WatchedLoop) -> None:
        """The loop stopped (or watching it ended): a stall it stopped in is still recorded."""
        state.active = False
        if state.handle is not None:
            state.handle.cancel()
        with self.lock:
            if self.loops.get(id(state.loop)) is state:
                del self.loops[id(state.loop)]
        self.resumed(state, time.perf_counter())

    def resumed(self, state: _WatchedLoop, now: float) -> None:
        """The loop ran again at ``now``: held longer than a watch's threshold, it was a stall for that watch.

        Held: the time since it last ran, less what its thread spent waiting for a core meanwhile.
        """
        alive, starved, stall = state.take(now)
        held = now - alive - starved
        for watch in self.watches:
            if held > watch.threshold:
                watch._record(held, alive, stall)

    # -- the watchdog ------------------------------------------------------------------------

    def _watch(self, stop: threading.Event) -> None:
        while True:
            watches = self.watches
            interval = min((watch.interval for watch in watches), default=0.1)
            if stop.wait(interval):
                return
            if not watches:
                continue
            threshold = min(watch.threshold for watch in watches)
            now = time.perf_counter()
            late = [state for state in list(self.loops.values()) if now - state.alive > threshold]
            if not late:
                continue
            frames = sys._current_frames()
            for state in late:
                state.sample(frames.get(state.thread_id), now, threshold)
            del frames


_REGISTRY = _Registry()


class LoopWatch:
    """Records a :class:`LoopStalled` into ``timeline`` for each asyncio loop stall longer than ``threshold`` seconds.

    A sync context manager: enter it around the flow call (whatever starts the loop inside).
    ``interval`` is how often the loop beats and the watchdog looks (default: a tenth of
    the threshold, between 10 and 100 ms); a stall's length is known to within it.
    ``code`` picks the application's frame as the blocking line (without it: the innermost frame).
    """

    def __init__(
        self,
        timeline: Timeline,
        code: AppCode | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD_S,
        interval: float | None = None,
    ) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.timeline = timeline
        self.code = code
        self.threshold = threshold
        self.interval = interval if interval is not None else min(0.1, max(0.01, threshold / 10))
        #: Failures of the watcher itself (never raised into the application's loop).
        self.errors: list[str] = []
        self._attached: _WatchedLoop | None = None

    def __enter__(self) -> Self:
        _REGISTRY.enter(self)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:  # entered from async code: its own loop is already running
            self._attached = _REGISTRY.attach(running)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._attached is not None:
            _REGISTRY.detach(self._attached)
            self._attached = None
        _REGISTRY.exit(self)

    # -- recording ---------------------------------------------------------------------------

    def _record(self, stalled_s: float, started: float, stall: _Stall) -> None:
        try:
            blocking, stack = self._blame(stall)
            self.timeline.add(LoopStalled(stalled_s=round(stalled_s, 3), blocking=blocking, stack=stack, at=started))
        except Exception as exc:  # noqa: BLE001 - runs inside the application's loop: never raise there
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _blame(self, stall: _Stall) -> tuple[CodeLocation | None, tuple[str, ...]]:
        """The location seen in most samples (ties: the latest), and the stack it was seen in."""
        by_location: dict[CodeLocation | None, list[Any]] = {}
        for stack, (count, last) in stall.stacks.items():
            location = self._innermost(stack)
            entry = by_location.setdefault(location, [0, 0, stack, 0])
            entry[0] += count
            entry[1] = max(entry[1], last)
            if count > entry[3]:
                entry[2], entry[3] = stack, count
        if not by_location:
            return None, ()
        location, (_, _, stack, _) = max(by_location.items(), key=lambda item: (item[1][0], item[1][1]))
        return location, tuple(self._shown(frame) for frame in stack)

    def _innermost(self, stack: tuple[_Frame, ...]) -> CodeLocation | None:
        for filename, line, function in reversed(stack):
            if self.code is None:
                return CodeLocation(filename, line, function)
            if self.code.owns(filename):
                return self.code.location(filename, line, function)
        return None

    def _shown(self, frame: _Frame) -> str:
        filename, line, function = frame
        if self.code is not None and self.code.owns(filename):
            return str(self.code.location(filename, line, function))
        return f"{filename}:{line}"
