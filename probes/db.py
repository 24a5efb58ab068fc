"""Stage db: the database is reachable, lets us in, exists, and is shaped and permitted for the flow.

Every probe query runs on a connection with a connect timeout and a ``statement_timeout``
(:func:`probe_engine`), so a hung server yields a verdict, never a hang. What the schema
should be comes from the caller (the flow's SQLAlchemy metadata and its Alembic head):
this module knows the checks, not the flow.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

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
    "DB005",
    "DB006",
    "DB007",
    "DB008",
    "DB009",
    "DB010",
    "DB900",
    "MIN_SERVER_VERSION",
    "check_columns",
    "check_connection",
    "check_migrations",
    "check_privileges",
    "check_server",
    "check_tables",
    "check_writable",
    "classify",
    "open_probe_connection",
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
    "Run the migrations against this database (`harness migrate` applies this project's schema).",
)
DB005 = Check(
    "DB005",
    Stage.DB,
    Level.ERROR,
    "server version supported",
    "Upgrade PostgreSQL: the flow needs JSONB, UUID and gen_random_uuid-era features (PostgreSQL 12 or newer).",
)
DB006 = Check(
    "DB006",
    Stage.DB,
    Level.ERROR,
    "every column present with a compatible type",
    "The schema drifted from the models: apply the missing migrations, or fix the columns named in the evidence.",
)
DB007 = Check(
    "DB007",
    Stage.DB,
    Level.WARNING,
    "migrations at head",
    "Run `alembic upgrade head` (`harness migrate`): the database is behind the code's migrations.",
)
DB008 = Check(
    "DB008",
    Stage.DB,
    Level.ERROR,
    "role may read and write the flow tables",
    "GRANT SELECT, INSERT, UPDATE, DELETE on the tables in the evidence to the role in DATABASE_URL.",
)
DB009 = Check(
    "DB009",
    Stage.DB,
    Level.ERROR,
    "database accepts writes",
    "DATABASE_URL points at a read-only replica or a read-only default: use the primary, "
    "or ALTER ROLE ... SET default_transaction_read_only = off.",
)
DB010 = Check(
    "DB010",
    Stage.DB,
    Level.ERROR,
    "connection slots available",
    "The server has no free connection slots: close idle connections, lower pool sizes, or raise max_connections.",
)
DB900 = Check(
    "DB900",
    Stage.DB,
    Level.ERROR,
    "database answered as expected",
    "An unexpected database error; the evidence carries the driver's message.",
)

CONNECT_CHECKS = (DB001, DB002, DB003, DB010)
CHECKS = (DB001, DB002, DB003, DB004, DB005, DB006, DB007, DB008, DB009, DB010, DB900)

#: The oldest PostgreSQL major version the flow supports.
MIN_SERVER_VERSION = 12

_KIND_CHECKS = {
    DBErrorKind.REFUSED: DB001,
    DBErrorKind.TIMEOUT: DB001,
    DBErrorKind.UNKNOWN_HOST: DB001,
    DBErrorKind.CONNECTION_LOST: DB001,
    DBErrorKind.AUTH: DB002,
    DBErrorKind.NO_DATABASE: DB003,
    DBErrorKind.TOO_MANY_CONNECTIONS: DB010,
    DBErrorKind.SCHEMA: DB004,
    DBErrorKind.READ_ONLY: DB009,
    DBErrorKind.PRIVILEGE: DB008,
}
_MESSAGES = {
    DB001: "The database server did not accept a connection",
    DB002: "The database rejected the credentials",
    DB003: "The database named in DATABASE_URL does not exist",
    DB004: "A table the flow needs is missing",
    DB008: "The role lacks a privilege the flow needs",
    DB009: "The database refused a write",
    DB010: "The server has no connection slots left",
    DB900: "The database failed unexpectedly",
}


def probe_engine(database_url: str, timeouts: Timeouts = TIMEOUTS) -> Any:
    """An engine for probe queries only: no pool, connect timeout, statement and lock timeouts."""
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
    target = redact_url(database_url) if database_url else None
    if failure is None:
        return DB900.finding(f"{type(exc).__name__}: {exc}", point=point, target=target)
    check = _KIND_CHECKS.get(failure.kind, DB900)
    return check.finding(
        f"{_MESSAGES.get(check, 'The database failed')} ({failure.kind.value}).",
        point=point,
        target=target,
        error=failure.message,
        error_type=failure.error_type,
        sqlstate=failure.sqlstate,
    )


def open_probe_connection(database_url: str, timeouts: Timeouts = TIMEOUTS) -> tuple[list[Finding], Any, Any]:
    """Connect as the flow would; returns (findings, engine, connection) — the last two ``None`` on failure."""
    from sqlalchemy import text

    engine = probe_engine(database_url, timeouts)
    try:
        connection = engine.connect()
        connection.execute(text("SELECT 1"))
    except Exception as exc:  # every driver failure becomes a finding; the kind decides which
        engine.dispose()
        return [_finding_for(exc, database_url)], None, None
    return [], engine, connection


def check_server(connection: Any) -> tuple[list[Finding], dict[str, Any]]:
    """The server's version is one the flow supports; returns findings and facts about the server."""
    from sqlalchemy import text

    row = connection.execute(
        text("SELECT current_setting('server_version_num')::int, current_setting('server_version'), current_user")
    ).one()
    version_num, version, user = row
    facts = {"server_version": version, "user": user, "database": connection.engine.url.database}
    if version_num // 10000 < MIN_SERVER_VERSION:
        return [
            DB005.finding(f"PostgreSQL {version} is older than {MIN_SERVER_VERSION}.", server_version=version)
        ], facts
    return [], facts


def check_tables(connection: Any, expected_tables: Collection[str]) -> list[Finding]:
    """Every table the flow writes exists."""
    from sqlalchemy import inspect

    present = set(inspect(connection).get_table_names())
    missing = sorted(set(expected_tables) - present)
    if missing:
        return [
            DB004.finding(
                f"{len(missing)} table(s) the flow writes are missing: {', '.join(missing)}.", missing_tables=missing
            )
        ]
    return []


def _drift(connection: Any, metadata: Any) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    ours = set(metadata.tables)

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return name in ours
        table = getattr(obj, "table", None)
        return table is None or table.name in ours

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": include_object, "target_metadata": metadata}
    )
    return list(compare_metadata(context, metadata))


def _flatten(diffs: Iterable[Any]) -> Iterable[tuple]:
    for diff in diffs:
        if isinstance(diff, list):  # alembic groups column modifications in lists
            yield from diff
        else:
            yield diff


def check_columns(connection: Any, metadata: Any) -> list[Finding]:
    """Every column the models declare exists with a compatible type and nullability; no NOT NULL extras."""
    problems: list[dict[str, str]] = []
    for diff in _flatten(_drift(connection, metadata)):
        kind = diff[0]
        if kind == "add_column":
            _, _, table, column = diff
            problems.append({"table": table, "column": column.name, "problem": "missing", "expected": str(column.type)})
        elif kind == "modify_type":
            _, _, table, column, _info, found, expected = diff
            problems.append(
                {
                    "table": table,
                    "column": column,
                    "problem": "type changed",
                    "found": str(found),
                    "expected": str(expected),
                }
            )
        elif kind == "modify_nullable":
            _, _, table, column, _info, found_nullable, expected_nullable = diff
            if expected_nullable and not found_nullable:
                problems.append(
                    {"table": table, "column": column, "problem": "NOT NULL in the database, nullable in the models"}
                )
        elif kind == "remove_column":
            _, _, table, column = diff
            if not column.nullable and column.server_default is None:
                problems.append(
                    {"table": table, "column": column.name, "problem": "extra NOT NULL column without a default"}
                )
    if not problems:
        return []
    first = problems[0]
    return [
        DB006.finding(
            f"{len(problems)} column problem(s); first: {first['table']}.{first['column']} {first['problem']}.",
            columns=problems[:30],
            tables=sorted({p["table"] for p in problems}),
        )
    ]


def check_migrations(connection: Any, head: str | None) -> list[Finding]:
    """Where an ``alembic_version`` table exists, it is at the code's head revision."""
    from sqlalchemy import inspect, text

    if head is None or "alembic_version" not in inspect(connection).get_table_names():
        return []
    revisions = [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
    if revisions != [head]:
        return [
            DB007.finding(
                f"The database is at revision {', '.join(revisions) or '(none)'}, the code at {head}.",
                database_revisions=revisions,
                head=head,
            )
        ]
    return []


def check_privileges(connection: Any, tables: Collection[str]) -> list[Finding]:
    """The connected role has SELECT, INSERT, UPDATE and DELETE on every flow table that exists."""
    from sqlalchemy import inspect, text

    present = set(inspect(connection).get_table_names())
    lacking: dict[str, list[str]] = {}
    for table in sorted(set(tables) & present):
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            allowed = connection.execute(
                text("SELECT has_table_privilege(current_user, :table, :privilege)"),
                {"table": table, "privilege": privilege},
            ).scalar()
            if not allowed:
                lacking.setdefault(table, []).append(privilege)
    if lacking:
        summary = "; ".join(f"{table}: {', '.join(privs)}" for table, privs in lacking.items())
        return [DB008.finding(f"The role lacks privileges: {summary}.", missing_privileges=lacking)]
    return []


def check_writable(connection: Any) -> list[Finding]:
    """The server is not a replica and transactions are not read-only by default."""
    from sqlalchemy import text

    in_recovery = connection.execute(text("SELECT pg_is_in_recovery()")).scalar()
    read_only = connection.execute(text("SELECT current_setting('default_transaction_read_only')")).scalar()
    if in_recovery:
        return [DB009.finding("The server is a read-only replica (in recovery).", in_recovery=True)]
    if read_only == "on":
        return [
            DB009.finding(
                "default_transaction_read_only is on: every transaction of this role is read-only.",
                default_transaction_read_only=read_only,
            )
        ]
    return []


def check_connection(
    database_url: str, expected_tables: Collection[str], timeouts: Timeouts = TIMEOUTS
) -> list[Finding]:
    """Connect, authenticate, reach the database, and find every table the flow writes."""
    findings, engine, connection = open_probe_connection(database_url, timeouts)
    if connection is None:
        return findings
    try:
        return check_tables(connection, expected_tables)
    finally:
        connection.close()
        engine.dispose()


def classify(exc: BaseException, point: str) -> Finding:
    """Explain an exception raised while probing the database."""
    return _finding_for(exc, "", point)


# -- probes ----------------------------------------------------------------------------------

from probes.env import ENV001, ENV004  # noqa: E402
from probes.registry import probe  # noqa: E402  (registration sits beside the checks)


def _connection(ctx: Any) -> Any:
    """The stage's probe connection, on a clean transaction (an earlier check may have failed in it)."""
    connection = ctx.db["connection"]
    connection.rollback()
    return connection


def close_probe_connection(state: dict[str, Any]) -> None:
    """Close the db stage's connection (opened by the connect probe), if it was opened."""
    connection, engine = state.pop("connection", None), state.pop("engine", None)
    if connection is not None:
        connection.close()
    if engine is not None:
        engine.dispose()


def _metadata_missing(ctx: Any) -> str | None:
    return None if ctx.target.metadata is not None else "the target names no metadata to judge the schema by"


def _migrations_missing(ctx: Any) -> str | None:
    return None if ctx.target.config.migrations is not None else "the target names no migrations (alembic.ini)"


@probe(Stage.DB, emits=CONNECT_CHECKS, requires=(ENV001, ENV004))
def connect(ctx: Any) -> list[Finding]:
    """Reachable within the connect timeout, credentials accepted, the database exists, a slot is free."""
    findings, engine, connection = open_probe_connection(ctx.settings.database_url or "", ctx.settings.timeouts)
    if connection is not None:
        ctx.db.update(engine=engine, connection=connection)
    return findings


@probe(Stage.DB, emits=(DB005,), requires=CONNECT_CHECKS)
def server(ctx: Any) -> list[Finding]:
    """The server's version is one the flow supports."""
    findings, facts = check_server(_connection(ctx))
    ctx.observe("db.server", facts)
    return findings


@probe(Stage.DB, emits=(DB004,), requires=CONNECT_CHECKS, applies=_metadata_missing)
def tables(ctx: Any) -> list[Finding]:
    """Every table the application's models map exists."""
    return check_tables(_connection(ctx), ctx.target.metadata.tables.keys())


@probe(Stage.DB, emits=(DB006,), requires=(DB004,), applies=_metadata_missing)
def columns(ctx: Any) -> list[Finding]:
    """Every column the models declare exists with a compatible type."""
    return check_columns(_connection(ctx), ctx.target.metadata)


@probe(Stage.DB, emits=(DB007,), requires=CONNECT_CHECKS, applies=_migrations_missing)
def migrations(ctx: Any) -> list[Finding]:
    """The database is at the application's migration head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(Config(str(ctx.target.config.migrations))).get_heads()
    return check_migrations(_connection(ctx), heads[0] if len(heads) == 1 else None)


@probe(Stage.DB, emits=(DB008,), requires=(DB004,), applies=_metadata_missing)
def privileges(ctx: Any) -> list[Finding]:
    """The role may read and write every mapped table."""
    return check_privileges(_connection(ctx), ctx.target.metadata.tables.keys())


@probe(Stage.DB, emits=(DB009,), requires=CONNECT_CHECKS)
def writable(ctx: Any) -> list[Finding]:
    """The server is not a replica and transactions are not read-only by default."""
    return check_writable(_connection(ctx))
