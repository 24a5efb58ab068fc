"""Database errors are classified the same with psycopg 3 and psycopg2: real errors from a real server, every kind."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from probes import db
from probes.dberrors import DBErrorKind, describe_db_error

DRIVERS = ("postgresql+psycopg", "postgresql+psycopg2")


class CuttableProxy:
    """A TCP relay to the server whose connections can be cut mid-session, as a failing network would."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            server = socket.create_connection(self._target, timeout=5)
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass

    def cut(self) -> None:
        """Close every relayed connection at once."""
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.cut()
        self._listener.close()


@pytest.fixture(scope="module")
def roles(postgres_cluster) -> Iterator[dict[str, str]]:
    """A database with one table, a role at its connection limit and a role with no privileges."""
    name = postgres_cluster.create_database()
    postgres_cluster.run_sql("CREATE TABLE t (id int)", name)
    postgres_cluster.run_sql("CREATE ROLE errs_limited LOGIN PASSWORD 'limited-pass-12345' CONNECTION LIMIT 0")
    postgres_cluster.run_sql("CREATE ROLE errs_reader LOGIN PASSWORD 'reader-pass-12345'")
    try:
        yield {"database": name}
    finally:
        postgres_cluster.drop_database(name)
        postgres_cluster.run_sql("DROP ROLE errs_limited; DROP ROLE errs_reader")


def _url(postgres_cluster, database: str, driver: str, **parts: Any) -> str:
    url = make_url(postgres_cluster.url(database)).set(drivername=driver, **parts)
    return url.render_as_string(hide_password=False)


def _error(url: str, *statements: str, before: Callable[[Any], None] | None = None) -> BaseException:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            if before is not None:
                before(connection)
            for statement in statements:
                connection.execute(sa.text(statement))
    except sa.exc.DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("no error")


def _terminated(postgres_cluster) -> Callable[[Any], None]:
    def terminate(connection: Any) -> None:
        pid = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        postgres_cluster.run_sql(f"SELECT pg_terminate_backend({pid})")

    return terminate


def _make(kind: str, postgres_cluster, roles, driver: str, silent_listener: int) -> BaseException:
    database = roles["database"]
    url = _url(postgres_cluster, database, driver)
    if kind == "refused":
        return _error(_url(postgres_cluster, database, driver, port=1), "SELECT 1")
    if kind == "timeout":
        return _error(_url(postgres_cluster, database, driver, port=silent_listener), "SELECT 1")
    if kind == "auth":
        return _error(_url(postgres_cluster, database, driver, password="not-the-password-1"), "SELECT 1")
    if kind == "no database":
        return _error(_url(postgres_cluster, "no_such_database_x", driver), "SELECT 1")
    if kind == "too many connections":
        limited = _url(postgres_cluster, database, driver, username="errs_limited", password="limited-pass-12345")
        return _error(limited, "SELECT 1")
    if kind == "read-only":
        return _error(url, "SET TRANSACTION READ ONLY", "INSERT INTO t VALUES (1)")
    if kind == "privilege":
        reader = _url(postgres_cluster, database, driver, username="errs_reader", password="reader-pass-12345")
        return _error(reader, "INSERT INTO t VALUES (1)")
    if kind == "undefined table":
        return _error(url, "SELECT * FROM no_such_table")
    if kind == "undefined column":
        return _error(url, "SELECT no_such_column FROM t")
    if kind == "query canceled":
        return _error(url, "SET statement_timeout = 50", "SELECT pg_sleep(5)")
    if kind == "admin shutdown":
        return _error(url, "SELECT 1", before=_terminated(postgres_cluster))
    if kind == "connection lost":
        proxy = CuttableProxy(make_url(url).port)
        try:
            return _error(
                _url(postgres_cluster, database, driver, port=proxy.port), "SELECT 1", before=lambda _: proxy.cut()
            )
        finally:
            proxy.close()
    raise AssertionError(kind)


#: kind of fault → (kind read, check it becomes, SQLSTATE with psycopg 3, SQLSTATE with psycopg2).
#: Failures while connecting carry no SQLSTATE with either driver (libpq reports only text);
#: a backend terminated by an administrator reports 57P01 through psycopg 3, while psycopg2
#: only sees the socket close.
CASES = {
    "refused": (DBErrorKind.REFUSED, "DB001", None, None),
    "timeout": (DBErrorKind.TIMEOUT, "DB001", None, None),
    "auth": (DBErrorKind.AUTH, "DB002", None, None),
    "no database": (DBErrorKind.NO_DATABASE, "DB003", None, None),
    "too many connections": (DBErrorKind.TOO_MANY_CONNECTIONS, "DB010", None, None),
    "read-only": (DBErrorKind.READ_ONLY, "DB009", "25006", "25006"),
    "privilege": (DBErrorKind.PRIVILEGE, "DB008", "42501", "42501"),
    "undefined table": (DBErrorKind.SCHEMA, "DB004", "42P01", "42P01"),
    "undefined column": (DBErrorKind.SCHEMA, "DB004", "42703", "42703"),
    "query canceled": (DBErrorKind.CANCELED, "DB900", "57014", "57014"),
    "admin shutdown": (DBErrorKind.CONNECTION_LOST, "DB001", "57P01", None),
    "connection lost": (DBErrorKind.CONNECTION_LOST, "DB001", None, None),
}


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("fault", list(CASES))
def test_every_kind_is_read_the_same_with_either_driver(
    postgres_cluster, roles, silent_listener, driver, fault
) -> None:
    """Each real fault is the same kind and check with psycopg 3 and psycopg2, wrapped by SQLAlchemy or bare,
    with the SQLSTATE in the evidence wherever the driver has one."""
    kind, check_id, sqlstate_3, sqlstate_2 = CASES[fault]
    exc = _make(fault, postgres_cluster, roles, driver, silent_listener)
    expected_sqlstate = sqlstate_3 if driver == "postgresql+psycopg" else sqlstate_2
    wrapped, bare = describe_db_error(exc), describe_db_error(exc.orig)
    assert wrapped is not None and bare is not None
    assert (wrapped.kind, wrapped.sqlstate) == (kind, expected_sqlstate)
    assert (bare.kind, bare.sqlstate) == (kind, expected_sqlstate)
    finding = db.classify(exc, "db")
    assert finding.id == check_id and finding.evidence["sqlstate"] == expected_sqlstate
    assert "not-the-password-1" not in str(finding.to_dict())


def test_missing_column_through_psycopg2_is_a_schema_error_with_its_sqlstate(postgres_cluster, roles) -> None:
    """The measured bug: psycopg2's missing column was read as "no database"; its pgcode now makes it DB004."""
    exc = _error(_url(postgres_cluster, roles["database"], "postgresql+psycopg2"), "SELECT estimate_hours FROM t")
    finding = db.classify(exc, "persist")
    assert finding.id == "DB004" and "schema" in finding.message
    assert finding.evidence["sqlstate"] == "42703" and finding.evidence["error_type"] == "UndefinedColumn"


def test_non_database_errors_are_not_read_as_database_errors() -> None:
    """An exception that is no driver's or SQLAlchemy's is left to the caller (``None``)."""
    assert describe_db_error(ValueError('database "x" does not exist')) is None
