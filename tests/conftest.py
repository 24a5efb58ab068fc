"""Shared fixtures: the local stand-in APIs, wired to a fresh database; one cluster for the subprocesses too.

The disposable-database fixtures (``flow_database_url`` and friends) come from the
project's own pytest plugin, ``harness.pytest_plugin``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from harness.config import Settings
from tests.support.wire_server import WireScript, WireServer

FAKE_ANTHROPIC_KEY = "sk-ant-test-3b8f0e1d7c6a5b4e"
FAKE_OPENAI_KEY = "sk-proj-test-9a8b7c6d5e4f3a2b"
#: Where this session's cluster is offered to the commands the tests run as subprocesses (read by
#: ``tests.integration.test_cli.harness`` and the plugin's pytester tests, never by the harness itself).
SHARED_CLUSTER_ENV = "HARNESS_TESTS_SHARED_DATABASE_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist (on by default), a path that does not exist is still a usage error naming it (exit 4).

    Without this the xdist controller, which collects nothing itself, reports only "no tests ran"
    (exit 5) and the missing path goes unnamed.
    """
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        for arg in config.args:
            if not Path(config.invocation_params.dir, arg.split("::", 1)[0]).exists():
                raise pytest.UsageError(f"file or directory not found: {arg}")


@pytest.fixture(scope="session", autouse=True)
def cluster_for_subprocesses(postgres_cluster) -> Iterator[str]:
    """The session's cluster, for `harness` subprocesses to attach to through the external-DSN provider.

    A `harness replay` or `record --disposable-db` started by a test would otherwise start (and
    stop) a cluster of its own; the commands are what those tests exercise, the provider chain is
    tested in tests/harness/test_postgres.py. Each subprocess still creates and drops its own databases.
    """
    url = postgres_cluster.info.url("postgres")
    os.environ[SHARED_CLUSTER_ENV] = url
    try:
        yield url
    finally:
        os.environ.pop(SHARED_CLUSTER_ENV, None)


@pytest.fixture
def stand_in_apis() -> Iterator[Callable[..., Settings]]:
    """Start stand-ins for the Anthropic and OpenAI APIs serving a script; returns flow settings for them."""
    with ExitStack() as stack:

        def start(script: WireScript, database_url: str | None = None) -> Settings:
            anthropic_api = stack.enter_context(WireServer(WireScript(anthropic=list(script.anthropic))))
            openai_api = stack.enter_context(WireServer(WireScript(openai=list(script.openai))))
            return Settings(
                database_url=database_url,
                anthropic_api_key=FAKE_ANTHROPIC_KEY,
                openai_api_key=FAKE_OPENAI_KEY,
                anthropic_base_url=anthropic_api.base_url,
                openai_base_url=openai_api.base_url + "/v1",
            )

        yield start


@pytest.fixture
def counting_listener() -> Iterator[tuple[int, list]]:
    """A TCP port that accepts connections, never answers, and keeps each one (so they can be counted)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    for connection in accepted:
        connection.close()
    server.close()


@pytest.fixture
def silent_listener(counting_listener: tuple[int, list]) -> int:
    """A TCP port that accepts connections and never says a word."""
    return counting_listener[0]
