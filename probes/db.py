"""Stage db: the database is reachable, lets us in, exists, and is shaped and permitted for the app.

Every probe query runs on a connection with a connect timeout and a ``statement_timeout``
(:func:`probe_engine`), so a hung server yields a verdict, never a hang. What the schema
should be comes from the caller — the application's SQLAlchemy ``MetaData`` and its
``alembic.ini`` — and only the tables that metadata maps are judged, wherever they live: a
table with an explicit schema there, any other where the connection's ``search_path``
resolves it (as the app's own queries would).

==========  ==================================================================================
check       judges
==========  ==================================================================================
DB004       every mapped table resolves (``to_regclass`` on the connection's search_path)
DB006       their columns: present, a type that holds what the models write
            (:mod:`probes.dbtypes`), not stricter about NULL, no unknown NOT NULL column
DB007       the database's Alembic revision(s) against the scripts' head(s)
DB008       SELECT/INSERT/UPDATE/DELETE on each table, USAGE on its schema and sequences
DB011       the scripts load and have one head
DB012       the migrations, applied from empty to a disposable database, build those tables
==========  ==================================================================================
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import TIMEOUTS, Timeouts
from harness.redaction import redact_url
from probes.core import Check, Finding, Level, NotApplicable, ProbeSkipped, Stage
from probes.dberrors import DBErrorKind, describe_db_error
from probes.dbtypes import describe_type, type_problem

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
    "DB011",
    "DB012",
    "DB900",
    "MIN_SERVER_VERSION",
    "ColumnDrift",
    "ColumnProblem",
    "MissingTable",
    "SchemaComparison",
    "TableLocation",
    "check_columns",
    "check_connection",
    "check_migration_heads",
    "check_migration_version",
    "check_migrations_build_models",
    "check_privileges",
    "check_server",
    "check_tables",
    "check_writable",
    "classify",
    "compare_schema",
    "load_migrations_once",
    "locate_tables",
    "open_probe_connection",
    "probe_engine",
    "trial_ahead",
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
    "the models' tables exist",
    "Run the app's migrations against this database (`alembic upgrade heads`); a table that exists in a schema "
    "the search_path does not reach needs the role's or database's search_path fixed.",
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
    "database at the migrations' head",
    "Run `alembic upgrade heads`: the database is behind the app's migrations, was never stamped, "
    "or holds a revision the app's scripts do not know.",
)
DB008 = Check(
    "DB008",
    Stage.DB,
    Level.ERROR,
    "role may read and write the models' tables",
    "GRANT SELECT, INSERT, UPDATE, DELETE on the tables (USAGE on the schemas and sequences) in the evidence "
    "to the role in DATABASE_URL.",
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
DB011 = Check(
    "DB011",
    Stage.DB,
    Level.ERROR,
    "one migration head",
    "The migrations branched (or cannot be loaded): `alembic merge heads` the heads in the evidence into one, "
    "or fix the revision file named.",
)
DB012 = Check(
    "DB012",
    Stage.DB,
    Level.ERROR,
    "the migrations build the models' schema",
    "Write the migration the models need (`alembic revision --autogenerate`) for the tables and columns in the "
    "evidence, or fix the migration that fails to apply.",
)
DB900 = Check(
    "DB900",
    Stage.DB,
    Level.ERROR,
    "database answered as expected",
    "An unexpected database error; the evidence carries the driver's message.",
)

CONNECT_CHECKS = (DB001, DB002, DB003, DB010)
CHECKS = (DB001, DB002, DB003, DB004, DB005, DB006, DB007, DB008, DB009, DB010, DB011, DB012, DB900)

#: The oldest PostgreSQL major version the flow supports.
MIN_SERVER_VERSION = 12
#: Problems listed in one finding's evidence.
_EVIDENCE_ROWS = 30

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
#: Failures of connecting itself: the server, the network, the credentials, the database's name, slots.
_CONNECT_KINDS = frozenset(
    {
        DBErrorKind.REFUSED,
        DBErrorKind.TIMEOUT,
        DBErrorKind.UNKNOWN_HOST,
        DBErrorKind.CONNECTION_LOST,
        DBErrorKind.AUTH,
        DBErrorKind.NO_DATABASE,
        DBErrorKind.TOO_MANY_CONNECTIONS,
    }
)
_MESSAGES = {
    DB001: "The database server did not accept a connection",
    DB002: "The database rejected the credentials",
    DB003: "The database named in DATABASE_URL does not exist",
    DB004: "A table or column the app needs is missing",
    DB008: "The role lacks a privilege the app needs",
    DB009: "The database refused a write",
    DB010: "The server has no connection slots left",
    DB900: "The database failed unexpectedly",
}


def probe_engine(database_url: str, timeouts: Timeouts = TIMEOUTS) -> Any:
    """An engine for probe queries only: no pool, connect timeout, statement and lock timeouts.

    Any PostgreSQL URL is accepted (``postgresql://``, ``+psycopg``, ``+psycopg2``); the probes
    always connect with psycopg 3. The URL's own ``options`` (a ``search_path``, say) are kept.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from harness.config import sqlalchemy_url

    statement_ms = int(timeouts.db_statement * 1000)
    options = f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}"
    url = make_url(sqlalchemy_url(database_url))
    own = url.query.get("options")
    if own:
        # connect_args would replace the URL's options; the app's settings go first, ours win on a clash.
        options = " ".join([*([own] if isinstance(own, str) else own), options])
        url = url.difference_update_query(["options"])
    return create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "connect_timeout": max(2, int(timeouts.db_connect)),
            "options": options,
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
    """Connect as the app would; returns (findings, engine, connection) — the last two ``None`` on failure."""
    from sqlalchemy import text

    from harness.dbconnect import failed_ahead

    failure = failed_ahead(database_url, timeouts)
    described = describe_db_error(failure) if failure is not None else None
    # Only what this connection would meet too: the early attempt spoke libpq directly, so a URL
    # parameter only SQLAlchemy understands fails there and not here (it is tried again, below).
    if described is not None and described.kind in _CONNECT_KINDS:
        return [_finding_for(failure, database_url)], None, None
    engine = probe_engine(database_url, timeouts)
    try:
        connection = engine.connect()
        connection.execute(text("SELECT 1"))
    except Exception as exc:  # every driver failure becomes a finding; the kind decides which
        engine.dispose()
        return [_finding_for(exc, database_url)], None, None
    return [], engine, connection


def check_server(connection: Any) -> tuple[list[Finding], dict[str, Any]]:
    """The server's version is one the flow supports; returns findings and facts (version, role, search_path)."""
    from sqlalchemy import text

    row = connection.execute(
        text(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), current_user,"
            " current_setting('search_path')"
        )
    ).one()
    version_num, version, user, search_path = row
    facts = {
        "server_version": version,
        "user": user,
        "database": connection.engine.url.database,
        "search_path": search_path,
    }
    if version_num // 10000 < MIN_SERVER_VERSION:
        return [
            DB005.finding(f"PostgreSQL {version} is older than {MIN_SERVER_VERSION}.", server_version=version)
        ], facts
    return [], facts


# --------------------------------------------------------------------------- where the mapped tables are


@dataclass(frozen=True)
class TableLocation:
    """A mapped table, found: the schema it resolved to and its ``pg_class`` oid."""

    #: The table's key in the metadata (``tasks``, or ``planning.tags`` for an explicit schema).
    key: str
    name: str
    schema: str
    oid: int

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class MissingTable:
    """A mapped table that does not resolve; ``elsewhere`` lists schemas that hold a table of its name."""

    key: str
    name: str
    #: The schema the models name (``None``: whatever the search_path resolves).
    schema: str | None
    elsewhere: tuple[str, ...] = ()


_RESOLVE_ON_PATH = """
SELECT n.nspname, c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(quote_ident(:name)) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""
# An explicit schema is looked up in the catalog: to_regclass raises on a schema the role may not use.
_RESOLVE_IN_SCHEMA = """
SELECT n.nspname, c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = :name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""
_SAME_NAME_ANYWHERE = """
SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = :name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY n.nspname
"""


def _as_metadata(tables: Any) -> Any:
    """The metadata itself; or, from bare table keys (``name`` or ``schema.name``), one mapping just those."""
    from sqlalchemy import MetaData, Table

    if isinstance(tables, MetaData):
        return tables
    metadata = MetaData()
    for key in tables:
        schema, _, name = str(key).rpartition(".")
        Table(name, metadata, schema=schema or None)
    return metadata


def locate_tables(connection: Any, metadata: Any) -> tuple[tuple[TableLocation, ...], tuple[MissingTable, ...]]:
    """Where each table of ``metadata`` is on this connection: (found, missing), in the metadata's order."""
    from sqlalchemy import text

    found: list[TableLocation] = []
    missing: list[MissingTable] = []
    for key, table in sorted(_as_metadata(metadata).tables.items()):
        if table.schema:
            row = connection.execute(text(_RESOLVE_IN_SCHEMA), {"schema": table.schema, "name": table.name}).first()
        else:
            row = connection.execute(text(_RESOLVE_ON_PATH), {"name": table.name}).first()
        if row is not None:
            found.append(TableLocation(key, table.name, row[0], int(row[1])))
            continue
        elsewhere = tuple(connection.execute(text(_SAME_NAME_ANYWHERE), {"name": table.name}).scalars())
        missing.append(MissingTable(key, table.name, table.schema, elsewhere))
    return tuple(found), tuple(missing)


def _search_path_facts(connection: Any) -> dict[str, Any]:
    from sqlalchemy import text

    search_path, schemas = connection.execute(
        text("SELECT current_setting('search_path'), current_schemas(false)::text[]")
    ).one()
    return {"search_path": search_path, "schemas_on_path": list(schemas)}


def check_tables(connection: Any, metadata: Any) -> list[Finding]:
    """Every table ``metadata`` maps resolves on this connection (explicit schema, or the search_path).

    ``metadata`` is a ``MetaData``; bare table keys are accepted too (a metadata of just their names).
    """
    _, missing = locate_tables(connection, metadata)
    if not missing:
        return []
    notes = [
        f"{m.key} exists in schema {', '.join(m.elsewhere)}, which the search_path does not reach"
        for m in missing
        if m.elsewhere and m.schema is None
    ]
    keys = [m.key for m in missing]
    message = f"{len(missing)} table(s) the models map are missing: {', '.join(keys)}."
    if notes:
        message += " " + "; ".join(notes) + "."
    return [
        DB004.finding(
            message,
            missing_tables=keys,
            found_elsewhere={m.key: list(m.elsewhere) for m in missing if m.elsewhere},
            **_search_path_facts(connection),
        )
    ]


# --------------------------------------------------------------------------- columns


class ColumnDrift(str, enum.Enum):
    """How a column differs from the models, in ways that break writes or reads."""

    #: The models map a column the table does not have.
    MISSING = "missing"
    #: The column's type cannot hold what the models write (:mod:`probes.dbtypes`).
    INCOMPATIBLE_TYPE = "incompatible type"
    #: NOT NULL in the database, nullable in the models: a NULL the app writes is refused.
    STRICTER_NULL = "NOT NULL in the database, nullable in the models"
    #: A column the models do not know, NOT NULL without a default: every INSERT of the app fails.
    EXTRA_NOT_NULL = "extra NOT NULL column without a default"


@dataclass(frozen=True)
class ColumnProblem:
    """One column that differs from the models: ``table.column``, how, found vs expected."""

    #: The table, schema-qualified as it resolved (``planning.tasks``).
    table: str
    column: str
    problem: ColumnDrift
    found: str | None = None
    expected: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, str]:
        row = {"table": self.table, "column": self.column, "problem": self.problem.value}
        for key in ("found", "expected", "detail"):
            value = getattr(self, key)
            if value is not None:
                row[key] = value
        return row

    def __str__(self) -> str:
        return f"{self.table}.{self.column} {self.problem.value}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class SchemaComparison:
    """A database compared with the models: tables missing, and column problems of the tables found."""

    found: tuple[TableLocation, ...]
    missing: tuple[MissingTable, ...]
    columns: tuple[ColumnProblem, ...]


def _column_problems(connection: Any, table: Any, location: TableLocation) -> list[ColumnProblem]:
    from sqlalchemy import inspect

    reflected = {c["name"]: c for c in inspect(connection).get_columns(location.name, schema=location.schema)}
    where = location.qualified_name
    problems: list[ColumnProblem] = []
    for column in table.columns:
        found = reflected.get(column.name)
        expected = describe_type(column.type)
        if found is None:
            problems.append(ColumnProblem(where, column.name, ColumnDrift.MISSING, expected=expected))
            continue
        reason = type_problem(column.type, found["type"])
        if reason is not None:
            problems.append(
                ColumnProblem(
                    where,
                    column.name,
                    ColumnDrift.INCOMPATIBLE_TYPE,
                    found=describe_type(found["type"]),
                    expected=expected,
                    detail=reason,
                )
            )
        if column.nullable and not found["nullable"] and found.get("default") is None and not found.get("identity"):
            problems.append(
                ColumnProblem(where, column.name, ColumnDrift.STRICTER_NULL, found="NOT NULL", expected="NULL")
            )
    mapped = {column.name for column in table.columns}
    for name, found in reflected.items():
        if name in mapped or found["nullable"]:
            continue
        if found.get("default") is None and not found.get("identity") and not found.get("computed"):
            problems.append(
                ColumnProblem(where, name, ColumnDrift.EXTRA_NOT_NULL, found=f"{describe_type(found['type'])} NOT NULL")
            )
    return problems


def compare_schema(connection: Any, metadata: Any) -> SchemaComparison:
    """The database on ``connection`` against ``metadata``: which tables are missing, which columns differ."""
    found, missing = locate_tables(connection, metadata)
    tables = _as_metadata(metadata).tables
    columns = [
        problem for location in found for problem in _column_problems(connection, tables[location.key], location)
    ]
    return SchemaComparison(found, missing, tuple(columns))


def _columns_finding(problems: Sequence[ColumnProblem]) -> Finding:
    return DB006.finding(
        f"{len(problems)} column problem(s); first: {problems[0]}.",
        columns=[p.to_dict() for p in problems[:_EVIDENCE_ROWS]],
        tables=sorted({p.table for p in problems}),
    )


def check_columns(connection: Any, metadata: Any) -> list[Finding]:
    """The mapped tables that exist have every mapped column, of a compatible type, no stricter about NULL,
    and no unknown NOT NULL column without a default. Tables that are missing are DB004's."""
    found, _ = locate_tables(connection, metadata)
    if not found:
        raise NotApplicable("none of the models' tables exists")
    problems = compare_schema(connection, metadata).columns
    return [_columns_finding(problems)] if problems else []


# --------------------------------------------------------------------------- privileges

_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
_SEQUENCES_OF_DEFAULTS = """
SELECT DISTINCT sn.nspname, s.relname,
       has_sequence_privilege(s.oid, 'USAGE') OR has_sequence_privilege(s.oid, 'UPDATE')
FROM pg_attrdef ad
JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = s.relnamespace
WHERE ad.adrelid = :oid
ORDER BY 1, 2
"""


def check_privileges(connection: Any, metadata: Any) -> list[Finding]:
    """The role has SELECT, INSERT, UPDATE and DELETE on every mapped table that exists, USAGE on its schema,
    and USAGE on the sequences its column defaults draw from (``serial``)."""
    from sqlalchemy import text

    found, _ = locate_tables(connection, metadata)
    if not found:
        raise NotApplicable("none of the models' tables exists")
    lacking: dict[str, list[str]] = {}
    for schema in sorted({location.schema for location in found}):
        if not connection.execute(text("SELECT has_schema_privilege(:schema, 'USAGE')"), {"schema": schema}).scalar():
            lacking[f"schema {schema}"] = ["USAGE"]
    for location in found:
        for privilege in _TABLE_PRIVILEGES:
            allowed = connection.execute(
                text("SELECT has_table_privilege(CAST(:oid AS oid), :privilege)"),
                {"oid": location.oid, "privilege": privilege},
            ).scalar()
            if not allowed:
                lacking.setdefault(location.qualified_name, []).append(privilege)
        for schema, sequence, usable in connection.execute(text(_SEQUENCES_OF_DEFAULTS), {"oid": location.oid}):
            if not usable:
                lacking.setdefault(f"sequence {schema}.{sequence}", []).append("USAGE")
    if lacking:
        summary = "; ".join(f"{name}: {', '.join(privs)}" for name, privs in lacking.items())
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


# --------------------------------------------------------------------------- migrations


#: The app's scripts per :func:`harness.migrations.scripts_fingerprint`: loaded once per process (DB011 and
#: DB007 of every run read them), again when a revision file or the ini changes.
_LOADED: dict[tuple[str, int, int], Any] = {}


def load_migrations_once(migrations: Path) -> Any:
    """The app's scripts, loaded once per process (until a script changes); ``MigrationsError`` if they cannot be.

    What DB011 and DB007 judge; a command may call it early (while it waits for the database) so the
    stage finds them loaded.
    """
    from harness.migrations import MigrationsError, load_migrations, scripts_fingerprint

    key = scripts_fingerprint(Path(migrations))
    if key[1] and key in _LOADED:
        loaded = _LOADED[key]
        if isinstance(loaded, MigrationsError):
            raise MigrationsError(str(loaded))
        return loaded
    try:
        scripts = load_migrations(Path(migrations))
    except MigrationsError as exc:
        _LOADED[key] = exc
        raise
    _LOADED[key] = scripts
    return scripts


def _load(migrations: Path | None) -> Any:
    """The app's scripts; ``NotApplicable`` without an ini, ``MigrationsError`` if they cannot be loaded."""
    if migrations is None:
        raise NotApplicable("the app names no Alembic migrations (alembic.ini)")
    return load_migrations_once(Path(migrations))


def check_migration_heads(migrations: Path | None) -> list[Finding]:
    """The app's migrations (``alembic.ini``) load, and have exactly one head."""
    from harness.migrations import MigrationsError

    try:
        scripts = _load(migrations)
    except MigrationsError as exc:
        return [DB011.finding(f"The migrations cannot be loaded: {exc}", ini=str(migrations))]
    if len(scripts.heads) == 1:
        return []
    if not scripts.heads:
        raise NotApplicable("the migrations have no revisions yet")
    heads = [
        {"revision": head, "file": revision.file if (revision := scripts.revision(head)) else None}
        for head in scripts.heads
    ]
    listed = ", ".join(f"{h['revision']} ({h['file']})" for h in heads)
    return [
        DB011.finding(
            f"The migrations have {len(heads)} heads: {listed}; `alembic upgrade head` refuses to run.",
            heads=heads,
            ini=str(scripts.ini),
        )
    ]


def check_migration_version(connection: Any, metadata: Any | None, migrations: Path | None) -> list[Finding]:
    """The database's Alembic revision(s) are the scripts' head(s), and the models' tables are there to match.

    The version table is found in whatever schema holds it (``version_table_schema``); a
    database with no version table, or with none of the models' tables, is never "at head".
    Without ``metadata`` the tables are not looked at.
    """
    from harness.migrations import MigrationsError, find_version_tables

    try:
        scripts = _load(migrations)
    except MigrationsError as exc:
        raise ProbeSkipped(f"the migrations cannot be loaded (DB011): {exc}") from None
    if not scripts.heads:
        raise NotApplicable("the migrations have no revisions yet")
    heads = list(scripts.heads)
    found = locate_tables(connection, metadata)[0] if metadata is not None else None
    tables = find_version_tables(connection)
    ours = [t for t in tables if any(scripts.knows(rev) for rev in t.revisions)]
    if not tables:
        if found is None:
            message = f"The database has no Alembic version table: never migrated or never stamped (heads: {', '.join(heads)})."
        elif found:
            message = (
                "The database was never stamped: the models' tables exist but no Alembic version table does, "
                f"so no one knows which migrations ran (heads: {', '.join(heads)})."
            )
        else:
            message = (
                "The database was never migrated: no Alembic version table and none of the models' tables "
                f"(heads: {', '.join(heads)})."
            )
        return [DB007.finding(message, database_revisions=[], heads=heads, version_table=None)]
    table = (ours or list(tables))[0]
    evidence: dict[str, Any] = {
        "database_revisions": list(table.revisions),
        "heads": heads,
        "version_table": table.qualified_name,
    }
    if len(ours) > 1:
        evidence["other_version_tables"] = [t.qualified_name for t in ours[1:]]
    unknown = [rev for rev in table.revisions if not scripts.knows(rev)]
    at = ", ".join(table.revisions) or "(no revision)"
    if unknown:
        return [
            DB007.finding(
                f"The database is at {at} ({table.qualified_name}); the app's migrations do not know "
                f"{', '.join(unknown)} (heads: {', '.join(heads)}).",
                unknown_revisions=unknown,
                **evidence,
            )
        ]
    pending = scripts.pending(table.revisions)
    if pending or not table.revisions:
        return [
            DB007.finding(
                f"The database is at {at} ({table.qualified_name}), behind the head(s) {', '.join(heads)}: "
                f"{len(pending)} migration(s) not applied.",
                pending_revisions=list(pending),
                **evidence,
            )
        ]
    if found is not None and not found:
        return [
            DB007.finding(
                f"The database is stamped at {at} ({table.qualified_name}) but none of the models' tables exists.",
                **evidence,
            )
        ]
    return []


def check_migrations_build_models(
    metadata: Any,
    migrations: Path | None,
    new_database: Callable[[], str] | None,
    drop_database: Callable[[str], None] | None,
    *,
    database_url_env: str = "DATABASE_URL",
    search_path: str | None = None,
    drivername: str | None = None,
    timeouts: Timeouts = TIMEOUTS,
) -> list[Finding]:
    """The app's migrations, applied from empty (``upgrade heads``) to a disposable database, build every
    table and column the models map, of compatible types.

    ``new_database()`` gives a disposable database's URL and ``drop_database(url)`` removes it;
    without them the check is not applicable. The app's ``env.py`` runs with ``database_url_env``
    and the ini's ``sqlalchemy.url`` set to that URL (with the driver ``drivername``, the one the
    app's own URL names, if given); ``search_path`` — the app database's, see :func:`check_server`
    — is made the disposable database's default first, so unqualified tables land where they do
    for the app. The migrations may run for ``timeouts.migrations`` seconds — longer than
    ``timeouts.probe``, the usual bound of one probe. A trial run begun ahead on the same
    ``new_database`` with these same inputs (:func:`trial_ahead`) is taken instead of running one now.
    """
    from harness.migrations import MigrationsError

    try:
        scripts = _load(migrations)
    except MigrationsError as exc:
        raise ProbeSkipped(f"the migrations cannot be loaded (DB011): {exc}") from None
    if new_database is None or drop_database is None:
        raise ProbeSkipped("no disposable PostgreSQL to apply the migrations to")
    trial = _Trial.of(
        scripts, database_url_env=database_url_env, search_path=search_path, drivername=drivername, timeouts=timeouts
    )
    ahead = _AHEAD.pop(new_database, None)
    built = ahead.take(trial) if ahead is not None else None
    if built is not None:
        url, run = built
        _log().debug("trial_taken_ahead", check_id=DB012.id)
    else:
        try:
            url, run = new_database(), None
        except Exception as exc:  # no provider could start one here: the check cannot run, and says why
            if type(exc).__name__ != "PostgresUnavailable":
                raise
            raise ProbeSkipped(
                "no disposable PostgreSQL to apply the migrations to ("
                + "; ".join(f"{name}: {reason}" for name, reason in getattr(exc, "reasons", {}).items())
                + ")"
            ) from None
    try:
        if run is None:
            run = trial.run(url)
        if run.refused:
            raise ProbeSkipped(f"the trial run was refused: {run.refused}")
        if not run.succeeded:
            where = f"revision {run.failed_revision} ({run.failed_file})" if run.failed_revision else "env.py"
            return [
                DB012.finding(
                    f"A migration fails to apply from an empty database: {where}: {run.error}",
                    failed_revision=run.failed_revision,
                    failed_file=run.failed_file,
                    error=run.error,
                    error_type=run.error_type,
                    heads=list(scripts.heads),
                )
            ]
        engine = probe_engine(url, timeouts)
        try:
            with engine.connect() as connection:
                comparison = compare_schema(connection, metadata)
        finally:
            engine.dispose()
    finally:
        drop_database(url)
    return _built_schema_findings(comparison, scripts)


@dataclass(frozen=True)
class _Trial:
    """DB012's trial run by what decides its outcome: the same inputs, the same migrations run the same way."""

    ini: Path
    database_url_env: str
    search_path: str | None
    drivername: str | None
    timeout: float

    @classmethod
    def of(
        cls, scripts: Any, *, database_url_env: str, search_path: str | None, drivername: str | None, timeouts: Timeouts
    ) -> _Trial:
        """The trial of ``scripts`` (loaded migrations), given what :func:`check_migrations_build_models` is given."""
        return cls(Path(scripts.ini), database_url_env, search_path, drivername, timeouts.migrations)

    def run(self, url: str, stop: Any = None) -> Any:
        """Apply the migrations from empty to the disposable database ``url`` (a ``MigrationRun``)."""
        from harness.migrations import apply_migrations

        app_url = url
        if self.drivername:
            from sqlalchemy.engine import make_url

            app_url = make_url(url).set(drivername=self.drivername).render_as_string(hide_password=False)
        return apply_migrations(
            self.ini,
            app_url,
            revision="heads",
            database_url_env=self.database_url_env,
            search_path=self.search_path,
            timeout=self.timeout,
            stop=stop,
        )


class _TrialAhead:
    """A trial run begun in a thread before the check asks for it; the check takes it only if its inputs are the same.

    Whatever goes wrong here is not reported: the check then runs its own trial and meets it again.
    """

    def __init__(
        self,
        trial: _Trial,
        new_database: Callable[[], str],
        drop_database: Callable[[str], None],
        wanted: Callable[[], bool],
    ) -> None:
        import threading

        self.trial = trial
        self._new, self._drop, self._wanted = new_database, drop_database, wanted
        self._built: tuple[str, Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._build, name="harness-trial-ahead", daemon=True)
        self._thread.start()

    def _build(self) -> None:
        if self._stop.is_set():
            return
        try:
            url = self._new()  # the first one starts the scratch cluster
        except Exception:  # noqa: BLE001 - the check asks for its own database and says why it cannot have one
            return
        try:
            run = self.trial.run(url, self._stop) if self._wanted() and not self._stop.is_set() else None
        except Exception:  # noqa: BLE001 - the check's own trial meets (and reports) the same failure
            run = None
        with self._lock:
            if run is not None and not self._stop.is_set():
                self._built = (url, run)
                return
        self._drop_quietly(url)

    def take(self, trial: _Trial) -> tuple[str, Any] | None:
        """The database built and its run when ``trial`` is the one begun here (waiting for it); the caller drops it."""
        if trial != self.trial:
            return None
        self._thread.join()
        with self._lock:
            built, self._built = self._built, None
        return built

    def discard(self) -> None:
        """Stop the run if it is still going (its child is killed), wait for the thread, drop a database no one took."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            built, self._built = self._built, None
        if built is not None:
            self._drop_quietly(built[0])

    def _drop_quietly(self, url: str) -> None:
        try:
            self._drop(url)
        except Exception:  # noqa: BLE001 - stopping the cluster removes it anyway
            pass


def _log() -> Any:
    from harness.logs import get_logger

    return get_logger("harness.db", stage=Stage.DB.value)


#: Trial runs begun ahead (:func:`trial_ahead`), by the ``new_database`` of the disposable databases they run on.
_AHEAD: dict[Any, _TrialAhead] = {}


def _built_schema_findings(comparison: SchemaComparison, scripts: Any) -> list[Finding]:
    """DB012's verdict on a database the migrations built from empty, compared with the models."""
    if not comparison.missing and not comparison.columns:
        return []
    missing_tables = [m.key for m in comparison.missing]
    parts = []
    if missing_tables:
        parts.append(f"no migration creates table(s) {', '.join(missing_tables)}")
    if comparison.columns:
        parts.append(f"{len(comparison.columns)} column problem(s), first: {comparison.columns[0]}")
    return [
        DB012.finding(
            f"The migrations do not build the models' schema: {'; '.join(parts)}.",
            missing_tables=missing_tables,
            columns=[p.to_dict() for p in comparison.columns[:_EVIDENCE_ROWS]],
            heads=list(scripts.heads),
        )
    ]


def check_connection(database_url: str, metadata: Any, timeouts: Timeouts = TIMEOUTS) -> list[Finding]:
    """Connect, authenticate, reach the database, and find every table the models map."""
    findings, engine, connection = open_probe_connection(database_url, timeouts)
    if connection is None:
        return findings
    try:
        return check_tables(connection, metadata)
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
    ctx.db["search_path"] = facts["search_path"]
    return findings


#: Verdicts of the schema checks per template: every clone of a template starts byte for byte as the
#: template is, so what DB004, DB006, DB007, DB008 and DB012 find on the first clone a run is given holds
#: for every later one (a replay of many cassettes pays for the comparison once).
_TEMPLATE_VERDICTS: dict[tuple[Any, ...], list[Finding]] = {}


def _judged_once_per_template(ctx: Any, check: Check, judge: Callable[[], list[Finding]]) -> list[Finding]:
    """``judge()``, or its verdict on an earlier clone of the same template (``ctx.template``)."""
    if ctx.template is None:
        return judge()
    from sqlalchemy.engine import make_url

    from harness.config import sqlalchemy_url

    url = make_url(sqlalchemy_url(ctx.settings.database_url or ""))
    migrations = ctx.target.config.migrations
    key = (
        ctx.template,
        check.id,
        url.host,
        url.port,
        url.username,
        id(ctx.target.metadata),
        str(migrations) if migrations is not None else None,
    )
    if key in _TEMPLATE_VERDICTS:
        inherited = ctx.db.setdefault("inherited", [])
        inherited.append(check.id)
        ctx.observe("db.inherited", {"template": ctx.template, "checks": list(inherited)})
        return list(_TEMPLATE_VERDICTS[key])
    findings = judge()
    _TEMPLATE_VERDICTS[key] = list(findings)
    return findings


@probe(Stage.DB, emits=(DB004,), requires=CONNECT_CHECKS, applies=_metadata_missing, needs=("metadata",))
def tables(ctx: Any) -> list[Finding]:
    """Every table the application's models map resolves, in its schema or through the search_path."""
    return _judged_once_per_template(ctx, DB004, lambda: check_tables(_connection(ctx), ctx.target.metadata))


@probe(Stage.DB, emits=(DB006,), requires=(DB004,), applies=_metadata_missing, needs=("metadata",))
def columns(ctx: Any) -> list[Finding]:
    """Every column the models declare exists with a type that holds what they write."""
    return _judged_once_per_template(ctx, DB006, lambda: check_columns(_connection(ctx), ctx.target.metadata))


@probe(Stage.DB, emits=(DB011,), applies=_migrations_missing, needs=("migrations",))
def migration_heads(ctx: Any) -> list[Finding]:
    """The application's migrations load and have one head (no database needed)."""
    return check_migration_heads(ctx.target.config.migrations)


@probe(Stage.DB, emits=(DB007,), requires=CONNECT_CHECKS, applies=_migrations_missing, needs=("migrations",))
def migrations(ctx: Any) -> list[Finding]:
    """The database is at the application's migration head(s)."""
    return _judged_once_per_template(
        ctx,
        DB007,
        lambda: check_migration_version(_connection(ctx), ctx.target.metadata, ctx.target.config.migrations),
    )


@probe(Stage.DB, emits=(DB008,), requires=(DB004,), applies=_metadata_missing, needs=("metadata",))
def privileges(ctx: Any) -> list[Finding]:
    """The role may read and write every mapped table (and use its schema and sequences)."""
    return _judged_once_per_template(ctx, DB008, lambda: check_privileges(_connection(ctx), ctx.target.metadata))


@probe(Stage.DB, emits=(DB009,), requires=CONNECT_CHECKS)
def writable(ctx: Any) -> list[Finding]:
    """The server is not a replica and transactions are not read-only by default."""
    return check_writable(_connection(ctx))


def _nothing_to_build(ctx: Any) -> str | None:
    return _migrations_missing(ctx) or _metadata_missing(ctx)


def _app_drivername(database_url: str | None) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(database_url).drivername if database_url else None
    except (ArgumentError, ValueError):
        return None


#: DB012's verdict per (the scripts' fingerprint, metadata): a trial run is paid once per process.
_TRIAL_VERDICTS: dict[tuple[tuple[str, int, int], int], list[Finding]] = {}


@probe(Stage.DB, emits=(DB012,), applies=_nothing_to_build, timeout=TIMEOUTS.migrations + 5, needs=("migrations", "metadata"))
def migrations_build_models(ctx: Any) -> list[Finding]:
    """The application's migrations, applied from empty to a disposable database, build its models' schema."""
    from harness.migrations import MigrationsError, scripts_fingerprint

    if ctx.template is not None and "connection" in ctx.db:
        # The database is an untouched clone of a template the application's own migrations built from
        # empty (Target.build_schema): that build was this check's trial, and the clone shows what it built.
        try:
            scripts = _load(ctx.target.config.migrations)
        except MigrationsError as exc:
            raise ProbeSkipped(f"the migrations cannot be loaded (DB011): {exc}") from None
        return _judged_once_per_template(
            ctx, DB012, lambda: _built_schema_findings(compare_schema(_connection(ctx), ctx.target.metadata), scripts)
        )
    # The scripts' folders, not everything under the ini's folder: an ini at a repository's root would
    # have every file of the checkout (and its virtualenv) walked on every run.
    key = (scripts_fingerprint(ctx.target.config.migrations), id(ctx.target.metadata))
    if ctx.disposable is not None and key in _TRIAL_VERDICTS:
        return list(_TRIAL_VERDICTS[key])
    new_database, drop_database = ctx.disposable or (None, None)
    findings = check_migrations_build_models(
        ctx.target.metadata,
        ctx.target.config.migrations,
        new_database,
        drop_database,
        **_trial_inputs(ctx.target, ctx.settings, ctx.db.get("search_path")),
    )
    _TRIAL_VERDICTS[key] = list(findings)
    return findings


def _trial_inputs(target: Any, settings: Any, search_path: str | None) -> dict[str, Any]:
    """What DB012's trial run is given besides the scripts and the databases: from the target, the settings
    and the app database's ``search_path`` (set by the server probe; ``None`` when it did not connect)."""
    return {
        "database_url_env": target.config.database_url_env,
        "search_path": search_path,
        "drivername": _app_drivername(settings.database_url),
        "timeouts": settings.timeouts,
    }


@contextmanager
def trial_ahead(
    target: Any, settings: Any, disposable: tuple[Callable[[], str], Callable[[str], None]]
) -> Iterator[None]:
    """Begin DB012's trial run now, in a thread, on the databases of ``disposable`` (``(new, drop)``, as
    :attr:`probes.context.PreflightContext.disposable` will be); stopped, and its database dropped, on leaving.

    For a command that waits on the database under diagnosis first (``diagnose``): the trial does not
    need that database, so the check finds it done instead of running it after the connect verdict.
    It is begun on a guess — the server probe will not set a ``search_path`` — unless the connection
    begun ahead (:func:`harness.dbconnect.connect_ahead`) has already connected by the time the scratch
    database is there; the check takes it only when its own inputs are the same
    (:meth:`_TrialAhead.take`), so the guess decides the speed, never the verdict. Nothing starts when
    the target lacks what DB012 needs, or its migrations do not load (DB012 is then not applicable, or
    skipped); the caller leaves it out when the db stage is not run.
    """
    from harness.dbconnect import connected_ahead
    from harness.interrupts import cleanup
    from harness.migrations import MigrationsError
    from probes.registry import REGISTRY

    (entry,) = (e for e in REGISTRY if e.function is migrations_build_models)
    try:
        scripts = None if entry.missing_for(target.config) else _load(target.config.migrations)
    except MigrationsError:
        scripts = None
    if scripts is None:
        yield
        return
    trial = _Trial.of(scripts, **_trial_inputs(target, settings, None))
    database_url = settings.database_url

    def wanted() -> bool:
        return not (database_url and connected_ahead(database_url, settings.timeouts))

    new_database, drop_database = disposable
    ahead = _AHEAD[new_database] = _TrialAhead(trial, new_database, drop_database, wanted)
    _log().debug("trial_begun_ahead", check_id=DB012.id)
    try:
        yield
    finally:
        with cleanup():
            if _AHEAD.get(new_database) is ahead:
                del _AHEAD[new_database]
            ahead.discard()
