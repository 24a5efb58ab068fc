"""Signals as exceptions (harness.interrupts), with real signals sent to this process."""

from __future__ import annotations

import signal

import pytest

from harness import interrupts
from harness.interrupts import Interrupted, cleanup, exit_code, handling_signals


def _app_code_that_swallows_everything() -> str:
    """An application's habit: catch every Exception and carry on."""
    try:
        signal.raise_signal(signal.SIGTERM)
    except Exception:  # noqa: BLE001 - the habit under test
        return "swallowed"
    return "carried on"


def test_a_signal_unwinds_through_an_apps_except_exception() -> None:
    """SIGTERM raises Interrupted, which an application's `except Exception` cannot swallow."""
    with handling_signals(), pytest.raises(Interrupted) as caught:
        _app_code_that_swallows_everything()
    assert not isinstance(caught.value, Exception)
    assert (caught.value.signal_name, caught.value.exit_code) == ("SIGTERM", 143)


@pytest.mark.parametrize(("name", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_each_signal_has_the_shells_exit_code(name: str, code: int) -> None:
    """SIGINT, SIGTERM and SIGHUP each raise Interrupted with exit code 128 + their number."""
    signum = getattr(signal, name)
    with handling_signals(), pytest.raises(Interrupted) as caught:
        signal.raise_signal(signum)
    assert caught.value.exit_code == code == exit_code(signum)


def test_a_signal_during_cleanup_waits_for_its_end_and_a_second_is_ignored() -> None:
    """Inside cleanup() the first signal is held and raised when the block ends; a second one never cuts it short."""
    steps = []
    with handling_signals(), pytest.raises(Interrupted) as caught:
        with cleanup():
            signal.raise_signal(signal.SIGTERM)
            steps.append("after the first")
            signal.raise_signal(signal.SIGINT)
            steps.append("after the second")
        steps.append("never: the block's end raised")
    assert steps == ["after the first", "after the second"]
    assert caught.value.signal_name == "SIGTERM"


def test_signals_after_the_first_raise_nothing_while_unwinding() -> None:
    """Once Interrupted is on its way out, a second signal in a finally clause does not interrupt that clause."""
    ran = []
    with handling_signals(), pytest.raises(Interrupted):
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            signal.raise_signal(signal.SIGTERM)
            ran.append("finally ran to its end")
    assert ran == ["finally ran to its end"]


def test_check_raises_again_a_signal_whose_exception_the_app_lost() -> None:
    """A signal whose Interrupted was replaced by another error in the app's cleanup is raised again by check()."""
    with handling_signals():
        try:
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                raise RuntimeError("a driver failing again while its connection is reset")
        except RuntimeError:
            pass  # the app's `except Exception` sees only the second error
        with pytest.raises(Interrupted):
            interrupts.check()


def test_check_is_silent_without_a_signal_and_outside_the_handlers() -> None:
    """check() raises nothing when no signal came; cleanup() holds nothing back when no handler is installed."""
    with handling_signals():
        interrupts.check()
    with cleanup():
        pass
    interrupts.check()


def test_handlers_are_restored_after_the_block() -> None:
    """handling_signals() puts back the handlers it found (pytest's own SIGINT handling survives it)."""
    before = {signum: signal.getsignal(signum) for signum in interrupts.SIGNALS}
    with handling_signals():
        assert all(signal.getsignal(signum) is not before[signum] for signum in interrupts.SIGNALS)
    assert {signum: signal.getsignal(signum) for signum in interrupts.SIGNALS} == before


def test_a_signal_handled_once_leaves_nothing_behind_for_later_runs() -> None:
    """After the handled block, a later check() or cleanup() (another run in the same process) raises nothing."""
    with handling_signals(), pytest.raises(Interrupted):
        signal.raise_signal(signal.SIGTERM)
    interrupts.check()
    with cleanup():
        pass
