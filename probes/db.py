"""Stage db: the database is reachable, lets us in, exists, and has the tables the flow writes."""

from __future__ import annotations

from collections.abc import Collection

from harness.config import TIMEOUTS, Timeouts
from harness.redaction import redact_url
from probes.core import Check, Finding, Level, Stage
from probes.dberrors import DBErrorKind, describe_db_error

__all__ = [
    "CHECKS",
    "CONNECT_CHECKS",
    "DB001",
    "DB002",
    "DB003",
    "DB004",
    "DB900",
    "check_connection",
    "classify",
    "probe_engine",
]

DB001 = Check(
    "DB001",
    Stage.DB,
    Level.ERROR,
    "database server reachable",
    "Check host and port in DATABASE_URL, that PostgreSQL is running, and that no firewall drops the connection.",
)
DB002 = Check(
    "DB002",
    Stage.DB,
    Level.ERROR,
    "database accepts the credentials",
    "Check the user and password in DATABASE_URL, and that pg_hba.conf allows this client.",
)
DB003 = Check(
    "DB003",
    Stage.DB,
    Level.ERROR,
    "database exists",
    "Create the database named in DATABASE_URL (createdb NAME), or point DATABASE_URL at the right one.",
)
DB004 = Check(
    "DB004",
    Stage.DB,
    Level.ERROR,
    "flow tables exist",
    "Run the migrations against this database: `alembic upgrade head` (or `harness migrate`).",
)
DB900 = Check(
    "DB900",
    Stage.DB,
    Level.ERROR,
    "database answered as expected",
    "An unexpected database error; the evidence carries the driver's message.",
)

CONNECT_CHECKS = (DB001, DB002, DB003)
CHECKS = (DB001, DB002, DB003, DB004, DB900)

_KIND_CHECKS = {
    DBErrorKind.REFUSED: DB001,
    DBErrorKind.TIMEOUT: DB001,
    DBErrorKind.UNKNOWN_HOST: DB001,
    DBErrorKind.CONNECTION_LOST: DB001,
    DBErrorKind.AUTH: DB002,
    DBErrorKind.NO_DATABASE: DB003,
    DBErrorKind.SCHEMA: DB004,
}


def probe_engine(database_url: str, timeouts: Timeouts = TIMEOUTS):
    """An engine for probe queries only: no pool, connect timeout, statement timeout."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from harness.config import sqlalchemy_url

    statement_ms = int(timeouts.db_statement * 1000)
    return create_engine(
        sqlalchemy_url(database_url),
        poolclass=NullPool,
        connect_args={
            "connect_timeout": max(2, int(timeouts.db_connect)),
            "options": f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}",
            "application_name": "masterplan-harness-probe",
        },
    )


def _finding_for(exc: BaseException, database_url: str, point: str | None = None) -> Finding:
    failure = describe_db_error(exc)
    target = redact_url(database_url)
    if failure is None:
        return DB900.finding(f"{type(exc).__name__}: {exc}", point=point, target=target)
    check = _KIND_CHECKS.get(failure.kind, DB900)
    messages = {
        DB001: "The database server did not accept a connection",
        DB002: "The database rejected the credentials",
        DB003: "The database named in DATABASE_URL does not exist",
        DB004: "A table the flow needs is missing",
        DB900: "The database failed unexpectedly",
    }
    return check.finding(
        f"{messages[check]} ({failure.kind.value}).",
        point=point,
        target=target,
        error=failure.message,
        error_type=failure.error_type,
        sqlstate=failure.sqlstate,
    )


def check_connection(
    database_url: str, expected_tables: Collection[str], timeouts: Timeouts = TIMEOUTS
) -> list[Finding]:
    """Connect, authenticate, reach the database, and find every table the flow writes."""
    from sqlalchemy import inspect, text

    engine = probe_engine(database_url, timeouts)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            present = set(inspect(connection).get_table_names())
    except Exception as exc:
        return [_finding_for(exc, database_url)]
    finally:
        engine.dispose()
    missing = sorted(set(expected_tables) - present)
    if missing:
        return [
            DB004.finding(
                f"{len(missing)} table(s) the flow writes are missing: {', '.join(missing)}.",
                target=redact_url(database_url),
                missing_tables=missing,
            )
        ]
    return []


def classify(exc: BaseException, point: str) -> Finding:
    """Explain an exception raised while probing the database."""
    return _finding_for(exc, "", point)
