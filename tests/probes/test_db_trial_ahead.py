"""DB012's trial begun ahead (``probes.db.trial_ahead``): taken only with the check's own inputs, the same verdict, nothing left.

Each case counts the disposable databases made and dropped on a real cluster: a trial taken
ahead means the check made none of its own; every database made is dropped by the time the
context is left.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from harness.config import Settings
from harness.dbconnect import connect_ahead, connected_ahead
from harness.target import Target, reference_config
from probes import db
from tests.examples.bugs import APPS_DIR, apply_bug
from tests.examples.runs import imported, load_app

#: A URL nothing answers on (the connect fails; the server probe never sets a search_path).
UNREACHABLE = "postgresql+psycopg://u:p@127.0.0.1:1/x"


class Counted:
    """``(new, drop)`` on the session's cluster, keeping what was made and dropped."""

    def __init__(self, cluster: Any) -> None:
        self.made: list[str] = []
        self.dropped: list[str] = []
        self._cluster = cluster

    def new(self) -> str:
        url = self._cluster.info.libpq_dsn(self._cluster.create_database())
        self.made.append(url)
        return url

    def drop(self, url: str) -> None:
        self.dropped.append(url)
        self._cluster.drop_database(make_url(url).database)

    @property
    def disposable(self) -> tuple[Callable[[], str], Callable[[str], None]]:
        return (self.new, self.drop)


@pytest.fixture
def counted(postgres_cluster: Any) -> Counted:
    return Counted(postgres_cluster)


def _check(target: Target, settings: Settings, disposable: tuple, search_path: str | None = None) -> list:
    """DB012 as its probe calls it, for a run whose server probe found ``search_path``."""
    return db.check_migrations_build_models(
        target.metadata,
        target.config.migrations,
        *disposable,
        **db._trial_inputs(target, settings, search_path),
    )


def _as_dicts(findings: list) -> list[dict]:
    return [finding.to_dict() for finding in findings]


def test_the_reference_flows_trial_is_taken_ahead_with_the_same_verdict(counted: Counted, postgres_cluster) -> None:
    """Begun ahead, the check takes the trial's database (it makes none) and passes as it does without it."""
    target, settings = Target(reference_config()), Settings(database_url=UNREACHABLE)
    alone = Counted(postgres_cluster)
    without = _check(target, settings, alone.disposable)

    with db.trial_ahead(target, settings, counted.disposable):
        within = _check(target, settings, counted.disposable)

    assert without == within == []
    assert len(counted.made) == 1, "the check ran a trial of its own"
    assert sorted(counted.dropped) == sorted(counted.made) and sorted(alone.dropped) == sorted(alone.made)


@pytest.mark.slow
@pytest.mark.parametrize("bug", [None, "atlas-migration-missing-column", "beacon-migration-missing-column"])
def test_an_example_apps_verdict_is_the_same_taken_ahead(bug: str | None, tmp_path: Path, postgres_cluster) -> None:
    """atlas (psycopg2, its own search_path) and beacon: no finding when healthy, the same DB012 finding when seeded."""
    name = (bug or "atlas").split("-")[0]
    app = load_app(apply_bug(bug, tmp_path) if bug else APPS_DIR / name / "pyproject.toml")
    with imported(app):
        target = Target(app.config)
        driver = "postgresql+psycopg2" if name == "atlas" else "postgresql+psycopg"
        settings = Settings(database_url=f"{driver}://u:p@127.0.0.1:1/x")
        without = _check(target, settings, Counted(postgres_cluster).disposable)
        counted = Counted(postgres_cluster)
        with db.trial_ahead(target, settings, counted.disposable):
            within = _check(target, settings, counted.disposable)

    assert _as_dicts(within) == _as_dicts(without)
    assert [f.id for f in within] == ([] if bug is None else ["DB012"])
    assert len(counted.made) == 1 and counted.dropped == counted.made


def test_a_trial_begun_with_other_inputs_is_not_taken_and_is_dropped(counted: Counted) -> None:
    """The server probe found a search_path after all: the check runs its own trial; the one ahead is dropped."""
    target, settings = Target(reference_config()), Settings(database_url=UNREACHABLE)

    with db.trial_ahead(target, settings, counted.disposable):
        findings = _check(target, settings, counted.disposable, search_path='"$user", public')

    assert findings == []
    assert len(counted.made) == 2 and sorted(counted.dropped) == sorted(counted.made)


def test_no_trial_is_begun_for_a_target_without_migrations(counted: Counted) -> None:
    """DB012 does not apply: nothing is started (no database, so no scratch cluster either)."""
    config = dataclasses.replace(reference_config(), migrations=None)
    with db.trial_ahead(Target(config), Settings(database_url=UNREACHABLE), counted.disposable):
        pass
    assert counted.made == []


def test_when_the_connection_begun_ahead_connected_no_migrations_run_ahead(counted: Counted, flow_database_url) -> None:
    """The server probe will set a search_path: the trial is left to the check (the database made ahead is dropped)."""
    target, settings = Target(reference_config()), Settings(database_url=flow_database_url)
    connect_ahead(flow_database_url, settings.timeouts)
    deadline = time.monotonic() + 30  # a bound on a hang, not a speed
    while not connected_ahead(flow_database_url, settings.timeouts) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert connected_ahead(flow_database_url, settings.timeouts)

    with db.trial_ahead(target, settings, counted.disposable):
        findings = _check(target, settings, counted.disposable)

    assert findings == []
    assert len(counted.made) == 2, "a trial ahead was taken though the connection would give a search_path"
    assert sorted(counted.dropped) == sorted(counted.made)
