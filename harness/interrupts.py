"""Signals as exceptions: SIGINT, SIGTERM and SIGHUP end a command by unwinding, so its cleanups run.

What ``timeout``, a CI cancellation, a container stop or Ctrl-C sends must not leave canary
rows in the user's database or a disposable PostgreSQL running. While
:func:`handling_signals` is active (the CLI's whole run), the first of those signals raises
:class:`Interrupted` wherever the main thread is — in the application's code too. It is a
``BaseException``, as ``KeyboardInterrupt`` is, so an application's ``except Exception``
cannot swallow it; every ``finally`` and context manager on the way out runs.

Cleanups run inside :func:`cleanup`: a signal that arrives there is held until the block
ends, and every signal after the first is noted and ignored, so a second Ctrl-C never cuts
a cleanup short. Cleanups are bounded by their own timeouts (statement and stop timeouts in
:mod:`harness.config`); SIGKILL stays the way out, and the next run sweeps what it leaves.

Exceptions::

    BaseException
    └── Interrupted      a signal asked the command to stop; exit code 128 + the signal's number

An exception raised in the middle of someone else's code can be lost there: a driver
interrupted mid-statement fails again while its connection is reset, and that second error
replaces ours. :func:`check` raises :class:`Interrupted` again for a signal already received,
so the runner calls it where the application's code hands back control.

Outside :func:`handling_signals` (a library call, a pytest run) nothing is installed:
:func:`cleanup` still holds nothing back, and Ctrl-C is Python's ``KeyboardInterrupt``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SIGNALS", "Interrupted", "check", "cleanup", "exit_code", "handling_signals"]

#: The signals that end a command cleanly (SIGHUP where the platform has it).
SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def exit_code(signum: int) -> int:
    """The shell's convention for a command ended by a signal: 128 + its number (130, 143, 129)."""
    return 128 + int(signum)


class Interrupted(BaseException):
    """A signal asked the command to stop; raised in the main thread, unwinding through every cleanup."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {self.signal_name}")
        #: What had finished when the signal came (a partial :class:`harness.runner.FlowRun`), if anything.
        self.partial: Any = None
        #: One sentence for the user: what was cleaned up and where the report of what finished went.
        self.note: str | None = None

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


class _State:
    """The signal bookkeeping of this process (handlers run in the main thread only)."""

    def __init__(self) -> None:
        self.active = False
        #: The first signal received while active.
        self.received: int | None = None
        #: :class:`Interrupted` was raised for it (later signals are only noted).
        self.raised = False
        #: Depth of :func:`cleanup` blocks in the main thread.
        self.held = 0
        #: The command has finished and the process is exiting: a signal now has nothing left to stop.
        self.closing = False
        #: The process ends with the handled block (the CLI): after a signal, keep its exit to one line.
        self.owns_process = False


_state = _State()


def _on_signal(signum: int, frame: Any) -> None:
    if _state.closing:
        return
    if _state.received is not None:
        _say(f"harness: {_name(signum)} received again; still cleaning up, please wait\n")
        return
    _state.received = signum
    if _state.held:
        return  # raised when the cleanup block ends
    _raise(signum)


def _raise(signum: int) -> None:
    _state.raised = True
    if _state.owns_process:
        _quiet_exit()
    raise Interrupted(signum)


def _quiet_exit() -> None:
    """After a signal the process is on its way out: no garbage-collection noise from objects it cut in half.

    An exception raised at an arbitrary line can leave half-built objects (an event loop
    interrupted in its constructor, a coroutine never awaited) whose finalizers complain on
    stderr while the process exits; the user gets one line from us instead.
    """
    import sys
    import warnings

    sys.unraisablehook = lambda unraisable: None
    warnings.filterwarnings("ignore", category=RuntimeWarning, message="coroutine .* was never awaited")


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _say(text: str) -> None:
    try:
        os.write(2, text.encode())  # not print(): a handler may run in the middle of another write
    except OSError:
        pass


@contextmanager
def handling_signals(*, restore: bool = True) -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` for the block (main thread only).

    With ``restore=False`` (the CLI, whose process ends with the block) the handlers stay and
    a signal during the interpreter's own exit is ignored: the command's work is done, and a
    default handler would kill the process before its exit handlers ran.
    """
    if threading.current_thread() is not threading.main_thread() or _state.active:
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _state.active, _state.received, _state.raised, _state.held, _state.closing = True, None, False, 0, False
    _state.owns_process = not restore
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        if restore:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        else:
            _state.closing = True
            for signum in SIGNALS:
                # SIG_IGN, not a handler: the interpreter resets its own handlers to the default (death by
                # signal) late in its exit, but leaves ignored signals ignored.
                signal.signal(signum, signal.SIG_IGN)
        _state.active, _state.received, _state.raised, _state.held = False, None, False, 0


def check() -> None:
    """Raise :class:`Interrupted` if a signal was received (its first raise may have been lost in the app's code).

    Inside a :func:`cleanup` block nothing is raised: the block's end raises it.
    """
    if (
        _state.active
        and _state.received is not None
        and not _state.held
        and threading.current_thread() is threading.main_thread()
    ):
        _raise(_state.received)


@contextmanager
def cleanup() -> Iterator[None]:
    """Run the block to its end even when a signal comes; a signal held meanwhile is raised when it ends.

    Use it around what must not be cut short: removing canary rows, stopping a server,
    writing the report of what finished. Nested blocks raise at the outermost one's end.
    """
    main = threading.current_thread() is threading.main_thread()
    if main:
        _state.held += 1
    try:
        yield
    finally:
        if main:
            _state.held -= 1
    if main and _state.active and _state.held == 0 and _state.received is not None and not _state.raised:
        _raise(_state.received)
