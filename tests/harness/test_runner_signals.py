"""A signal in the middle of a diagnose run: it unwinds through the app's code, and the canary rows still go.

The flows here are shims, as users write them: they save a discovery row with the reference
flow's own models and session scope, then the signal arrives (``signal.raise_signal``, the
real thing, sent to this process) at a chosen line of the app's code.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from harness.config import Settings, sqlalchemy_url
from harness.flow.database import make_engine, make_session_factory, session_scope
from harness.flow.models import DiscoveryDocument
from harness.interrupts import Interrupted, handling_signals
from harness.runner import FlowRequest, LLMMode, RunOptions, run_flow
from harness.target import Target
from probes import persist
from probes.core import Outcome

KEYS = {"anthropic_api_key": "sk-ant-test-3b8f0e1d7c6a5b4e", "openai_api_key": "sk-proj-test-9a8b7c6d5e4f3a2b"}


def _save_discovery(session_id: str, user_id: str) -> None:
    engine = make_engine(os.environ["DATABASE_URL"])
    try:
        with session_scope(make_session_factory(engine)) as session:
            session.add(
                DiscoveryDocument(
                    session_id=session_id,
                    user_id=user_id,
                    user_request="a to-do app",
                    domain="to-do",
                    bounded_contexts=[],
                    aggregates=[],
                    value_objects=[],
                    domain_events=[],
                    services=[],
                )
            )
    finally:
        engine.dispose()


def _saves_then_is_stopped_in_a_swallowing_handler(request: str, user_id: str, session_id: str) -> Any:
    """Commits a row, then SIGTERM lands in code whose `except Exception` swallows everything."""
    _save_discovery(session_id, user_id)
    try:
        signal.raise_signal(signal.SIGTERM)
    except Exception:  # noqa: BLE001 - the app's habit the signal must get through
        return "swallowed"
    return "carried on"


def _saves_then_loses_the_signal(request: str, user_id: str, session_id: str) -> Any:
    """Commits a row; the signal lands mid-call and the app's cleanup fails again, replacing it; the app carries on."""
    _save_discovery(session_id, user_id)
    try:
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            raise RuntimeError("can't change 'autocommit' now: connection in transaction status ACTIVE")
    except RuntimeError:
        return "carried on"


def _saves_and_returns(request: str, user_id: str, session_id: str) -> Any:
    _save_discovery(session_id, user_id)
    return "saved"


def _rows(database_url: str) -> int:
    with psycopg.connect(sqlalchemy_url(database_url).replace("+psycopg", ""), connect_timeout=2) as connection:
        return connection.execute("SELECT count(*) FROM discovery_documents").fetchone()[0]


def _diagnose(database_url: str, flow: Callable[..., Any]) -> Interrupted:
    settings = Settings(database_url=database_url, **KEYS)
    with handling_signals(), pytest.raises(Interrupted) as caught:
        run_flow(
            settings,
            FlowRequest("a to-do app", "user-1", "sid-1"),
            target=Target.with_flow(flow),
            options=RunOptions(llm=LLMMode.FULL, canary=True),
        )
    return caught.value


def _canary_outcome(stopped: Interrupted) -> Outcome:
    report = stopped.partial.report
    return next(o.outcome for o in report.outcomes if o.check.id == persist.PERSIST008.id)


@pytest.mark.slow
def test_sigterm_in_the_apps_code_unwinds_and_the_canary_rows_are_removed(flow_database_url: str) -> None:
    """SIGTERM inside an `except Exception` of the app still stops the run; its canary row is removed and verified."""
    stopped = _diagnose(flow_database_url, _saves_then_is_stopped_in_a_swallowing_handler)
    assert stopped.signal_name == "SIGTERM"
    assert stopped.partial is not None and stopped.partial.session_id.startswith(persist.CANARY_PREFIX)
    assert _canary_outcome(stopped) is Outcome.PASSED
    assert _rows(flow_database_url) == 0


@pytest.mark.slow
def test_a_signal_the_apps_cleanup_lost_still_stops_the_run(flow_database_url: str) -> None:
    """When the app's own cleanup replaces the signal's exception with another, the run still stops, cleanly."""
    stopped = _diagnose(flow_database_url, _saves_then_loses_the_signal)
    assert _canary_outcome(stopped) is Outcome.PASSED
    assert _rows(flow_database_url) == 0


@pytest.mark.slow
def test_a_second_signal_during_the_canary_cleanup_does_not_cut_it_short(
    flow_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second signal (SIGINT) arriving while the canary rows are being deleted is ignored; the rows still go."""
    delete = persist.remove_rows

    def impatient_user_presses_ctrl_c(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGINT)
        return delete(*args, **kwargs)

    monkeypatch.setattr(persist, "remove_rows", impatient_user_presses_ctrl_c)
    stopped = _diagnose(flow_database_url, _saves_then_is_stopped_in_a_swallowing_handler)
    assert stopped.signal_name == "SIGTERM"
    assert _canary_outcome(stopped) is Outcome.PASSED
    assert _rows(flow_database_url) == 0


@pytest.mark.slow
def test_a_first_signal_during_the_cleanup_waits_for_it_to_finish(
    flow_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal that arrives while a finished run removes its canary rows is raised only once they are gone."""
    delete = persist.remove_rows

    def stopped_meanwhile(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGHUP)
        return delete(*args, **kwargs)

    monkeypatch.setattr(persist, "remove_rows", stopped_meanwhile)
    stopped = _diagnose(flow_database_url, _saves_and_returns)
    assert (stopped.signal_name, stopped.exit_code) == ("SIGHUP", 129)
    assert _canary_outcome(stopped) is Outcome.PASSED
    assert _rows(flow_database_url) == 0
