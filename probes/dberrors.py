"""What kind of database failure an exception is: the one place that reads driver errors.

SQLAlchemy wraps the driver's exceptions (``exc.orig``). PostgreSQL reports a SQLSTATE for
errors raised by the server — psycopg 3 exposes it as ``sqlstate``, psycopg2 as ``pgcode``
— while failures during connection are only told apart by their text, with either driver.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from harness.redaction import redact_text

__all__ = ["DBErrorKind", "DBFailure", "describe_db_error"]


class DBErrorKind(str, enum.Enum):
    """The kinds of database failure the probes tell apart."""

    #: Nothing listens on the host and port.
    REFUSED = "refused"
    #: Something listens but never completes the handshake.
    TIMEOUT = "timeout"
    #: The host name does not resolve.
    UNKNOWN_HOST = "unknown_host"
    #: Wrong user or password, or pg_hba rejects the client.
    AUTH = "auth"
    #: The database named in the URL does not exist.
    NO_DATABASE = "no_database"
    #: The server has no connection slots left.
    TOO_MANY_CONNECTIONS = "too_many_connections"
    #: Writes refused: a read-only transaction or a replica.
    READ_ONLY = "read_only"
    #: The role lacks a privilege on a table.
    PRIVILEGE = "privilege"
    #: A statement ran past ``statement_timeout`` or was cancelled.
    CANCELED = "canceled"
    #: The server shut down or the connection dropped mid-work.
    CONNECTION_LOST = "connection_lost"
    #: A table or column the flow needs is missing.
    SCHEMA = "schema"
    #: Anything else.
    OTHER = "other"


@dataclass(frozen=True)
class DBFailure:
    """A database exception, read: its kind, SQLSTATE (if any) and a redacted message."""

    kind: DBErrorKind
    sqlstate: str | None
    message: str
    error_type: str


_SQLSTATE_KINDS = {
    "28P01": DBErrorKind.AUTH,
    "28000": DBErrorKind.AUTH,
    "3D000": DBErrorKind.NO_DATABASE,
    "53300": DBErrorKind.TOO_MANY_CONNECTIONS,
    "25006": DBErrorKind.READ_ONLY,
    "42501": DBErrorKind.PRIVILEGE,
    "57014": DBErrorKind.CANCELED,
    "57P01": DBErrorKind.CONNECTION_LOST,
    "57P02": DBErrorKind.CONNECTION_LOST,
    "57P03": DBErrorKind.CONNECTION_LOST,
    "42P01": DBErrorKind.SCHEMA,
    "42703": DBErrorKind.SCHEMA,
    "3F000": DBErrorKind.SCHEMA,
    "08003": DBErrorKind.CONNECTION_LOST,
    "08006": DBErrorKind.CONNECTION_LOST,
}

#: Failures during connection carry no SQLSTATE with either driver (libpq reports only text),
#: so they are told apart by the server's or libpq's words; patterns are matched lowercased.
_TEXT_KINDS = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"password authentication failed", DBErrorKind.AUTH),
        (r"no pg_hba\.conf entry", DBErrorKind.AUTH),
        (r'role ".*" does not exist', DBErrorKind.AUTH),
        (r'database ".*" does not exist', DBErrorKind.NO_DATABASE),
        (r'(relation|column) ".*" does not exist', DBErrorKind.SCHEMA),
        (r"too many clients", DBErrorKind.TOO_MANY_CONNECTIONS),
        (r"too many connections", DBErrorKind.TOO_MANY_CONNECTIONS),
        (r"remaining connection slots are reserved", DBErrorKind.TOO_MANY_CONNECTIONS),
        (r"connection refused", DBErrorKind.REFUSED),
        (r"timeout expired", DBErrorKind.TIMEOUT),
        (r"timed out", DBErrorKind.TIMEOUT),
        (r"could not translate host name", DBErrorKind.UNKNOWN_HOST),
        (r"name or service not known", DBErrorKind.UNKNOWN_HOST),
        (r"failed to resolve host", DBErrorKind.UNKNOWN_HOST),
        (r"server closed the connection unexpectedly", DBErrorKind.CONNECTION_LOST),
        (r"terminating connection", DBErrorKind.CONNECTION_LOST),
        (r"consuming input failed", DBErrorKind.CONNECTION_LOST),
        (r"the connection is lost", DBErrorKind.CONNECTION_LOST),
        (r"connection already closed", DBErrorKind.CONNECTION_LOST),
        (r"read-only transaction", DBErrorKind.READ_ONLY),
        (r"permission denied", DBErrorKind.PRIVILEGE),
        (r"canceling statement", DBErrorKind.CANCELED),
    )
)


def _driver_error(exc: BaseException) -> BaseException:
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


@functools.cache
def _database_error_types() -> tuple[type[BaseException], ...]:
    import psycopg
    import sqlalchemy.exc

    types: list[type[BaseException]] = [psycopg.Error, sqlalchemy.exc.SQLAlchemyError]
    try:
        import psycopg2
    except ImportError:  # the application may not use psycopg2; then none of its errors can occur
        pass
    else:
        types.append(psycopg2.Error)
    return tuple(types)


def _sqlstate(driver: BaseException) -> str | None:
    """The SQLSTATE of a server error: psycopg 3 calls it ``sqlstate``, psycopg2 ``pgcode``."""
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(driver, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


def describe_db_error(exc: BaseException) -> DBFailure | None:
    """Read a database exception (psycopg 3 or psycopg2, bare or wrapped by SQLAlchemy); ``None`` if it is none."""
    import psycopg

    if not isinstance(exc, _database_error_types()):
        return None
    driver = _driver_error(exc)
    sqlstate = _sqlstate(driver)
    text = str(driver)
    kind = _SQLSTATE_KINDS.get(sqlstate or "")
    if kind is None and isinstance(driver, psycopg.errors.ConnectionTimeout):
        kind = DBErrorKind.TIMEOUT
    if kind is None:
        lowered = text.lower()
        kind = next((k for pattern, k in _TEXT_KINDS if pattern.search(lowered)), DBErrorKind.OTHER)
    first_line = text.strip().splitlines()[0] if text.strip() else type(driver).__name__
    return DBFailure(kind, sqlstate, redact_text(first_line), type(driver).__name__)
