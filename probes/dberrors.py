"""What kind of database failure an exception is: the one place that reads driver errors.

SQLAlchemy wraps psycopg's exceptions (``exc.orig``); PostgreSQL reports a SQLSTATE for
errors raised by the server, while connection failures are only told apart by their text.
"""

from __future__ import annotations

import enum
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
}

_TEXT_KINDS = (
    ("password authentication failed", DBErrorKind.AUTH),
    ("no pg_hba.conf entry", DBErrorKind.AUTH),
    ("does not exist", DBErrorKind.NO_DATABASE),
    ("too many clients", DBErrorKind.TOO_MANY_CONNECTIONS),
    ("too many connections", DBErrorKind.TOO_MANY_CONNECTIONS),
    ("remaining connection slots are reserved", DBErrorKind.TOO_MANY_CONNECTIONS),
    ("connection refused", DBErrorKind.REFUSED),
    ("timeout expired", DBErrorKind.TIMEOUT),
    ("timed out", DBErrorKind.TIMEOUT),
    ("could not translate host name", DBErrorKind.UNKNOWN_HOST),
    ("name or service not known", DBErrorKind.UNKNOWN_HOST),
    ("failed to resolve host", DBErrorKind.UNKNOWN_HOST),
    ("server closed the connection unexpectedly", DBErrorKind.CONNECTION_LOST),
    ("terminating connection", DBErrorKind.CONNECTION_LOST),
    ("consuming input failed", DBErrorKind.CONNECTION_LOST),
    ("the connection is lost", DBErrorKind.CONNECTION_LOST),
    ("read-only transaction", DBErrorKind.READ_ONLY),
    ("permission denied", DBErrorKind.PRIVILEGE),
    ("canceling statement", DBErrorKind.CANCELED),
)


def _driver_error(exc: BaseException) -> BaseException:
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def describe_db_error(exc: BaseException) -> DBFailure | None:
    """Read a database exception; ``None`` when ``exc`` is not a database error at all."""
    import psycopg
    import sqlalchemy.exc

    if not isinstance(exc, (psycopg.Error, sqlalchemy.exc.SQLAlchemyError)):
        return None
    driver = _driver_error(exc)
    sqlstate = getattr(driver, "sqlstate", None)
    text = str(driver)
    kind = _SQLSTATE_KINDS.get(sqlstate or "")
    if kind is None and isinstance(driver, psycopg.errors.ConnectionTimeout):
        kind = DBErrorKind.TIMEOUT
    if kind is None:
        lowered = text.lower()
        kind = next((k for needle, k in _TEXT_KINDS if needle in lowered), DBErrorKind.OTHER)
    first_line = text.strip().splitlines()[0] if text.strip() else type(driver).__name__
    return DBFailure(kind, sqlstate, redact_text(first_line), type(driver).__name__)
