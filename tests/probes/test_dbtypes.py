"""The type-equivalence rule (probes/dbtypes.py), on columns PostgreSQL really created and SQLAlchemy reflected."""

from __future__ import annotations

import enum
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from probes.dbtypes import describe_type, type_problem


class Status(enum.Enum):
    PENDING = "pending"
    IN_PROGRESS = "in progress"
    DONE = "done"


class Slug(sa.types.TypeDecorator):
    """An application's own column type, stored as VARCHAR(30)."""

    impl = sa.String(30)
    cache_ok = True


#: (models' type, the column's DDL in the database) pairs that hold everything the models write.
EQUIVALENT = [
    ("json-as-jsonb", sa.JSON(), "jsonb"),
    ("jsonb-as-json", postgresql.JSONB(), "json"),
    ("string-n-as-varchar-n", sa.String(50), "varchar(50)"),
    ("string-n-as-wider-varchar", sa.String(50), "varchar(80)"),
    ("string-n-as-text", sa.String(50), "text"),
    ("string-as-text", sa.String(), "text"),
    ("text-as-unbounded-varchar", sa.Text(), "varchar"),
    ("native-enum-as-same-labels", sa.Enum(Status, name="status"), "status_same"),
    ("native-enum-as-more-labels-other-name", sa.Enum(Status, name="status"), "status_more"),
    ("plain-enum-as-varchar", sa.Enum(Status, native_enum=False), "varchar(20)"),
    ("plain-enum-as-native", sa.Enum(Status, native_enum=False), "status_same"),
    ("aware-datetime-as-timestamptz", sa.DateTime(timezone=True), "timestamptz"),
    ("naive-datetime-as-timestamp", sa.DateTime(), "timestamp"),
    ("naive-datetime-as-timestamptz", sa.DateTime(), "timestamptz"),
    ("uuid-as-uuid", sa.Uuid(), "uuid"),
    ("pg-uuid-as-uuid", postgresql.UUID(as_uuid=False), "uuid"),
    ("numeric-as-wider-numeric", sa.Numeric(10, 2), "numeric(12, 2)"),
    ("numeric-as-more-fraction-digits", sa.Numeric(10, 2), "numeric(11, 3)"),
    ("numeric-as-unconstrained", sa.Numeric(10, 2), "numeric"),
    ("integer-as-bigint", sa.Integer(), "bigint"),
    ("smallint-as-integer", sa.SmallInteger(), "integer"),
    ("integer-as-wide-numeric", sa.Integer(), "numeric(12, 0)"),
    ("float-as-double", sa.Float(), "double precision"),
    ("real-as-double", sa.REAL(), "double precision"),
    ("boolean", sa.Boolean(), "boolean"),
    ("date", sa.Date(), "date"),
    ("interval", sa.Interval(), "interval"),
    ("binary-as-bytea", sa.LargeBinary(), "bytea"),
    ("pickle-as-bytea", sa.PickleType(), "bytea"),
    ("array-items-wider", sa.ARRAY(sa.String(20)), "varchar(40)[]"),
    ("array-of-int-as-bigint", sa.ARRAY(sa.Integer()), "bigint[]"),
    ("decorator-by-its-impl", Slug(), "varchar(30)"),
    ("variant-for-postgresql", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), "bigint"),
    ("other-type-same-ddl", postgresql.INET(), "inet"),
    ("unreadable-type-not-judged", sa.String(10), "mood_pair"),
]

#: Pairs that lose or refuse what the models write, with a word of the reason.
INCOMPATIBLE = [
    ("varchar-narrower", sa.String(50), "varchar(20)", "20 characters"),
    ("unbounded-models-bounded-column", sa.String(), "varchar(255)", "no limit"),
    ("native-enum-lacking-a-label", sa.Enum(Status, name="status"), "status_fewer", "'DONE'"),
    ("plain-enum-too-short", sa.Enum(Status, native_enum=False), "varchar(4)", "a label has 11"),
    ("text-into-enum", sa.String(20), "status_same", "kind"),
    ("aware-datetime-as-timestamp", sa.DateTime(timezone=True), "timestamp", "time zone"),
    ("numeric-fewer-fraction-digits", sa.Numeric(10, 2), "numeric(10, 1)", "fraction"),
    ("numeric-fewer-integer-digits", sa.Numeric(10, 2), "numeric(8, 2)", "integer digits"),
    ("numeric-unbounded-models", sa.Numeric(), "numeric(10, 2)", "no precision"),
    ("numeric-as-integer", sa.Numeric(10, 2), "integer", "fraction"),
    ("bigint-as-integer", sa.BigInteger(), "integer", "4-byte"),
    ("integer-as-smallint", sa.Integer(), "smallint", "2-byte"),
    ("integer-as-narrow-numeric", sa.Integer(), "numeric(5, 0)", "digits"),
    ("integer-as-text", sa.Integer(), "text", "kind"),
    ("double-as-real", sa.Float(), "real", "single precision"),
    ("json-as-text", sa.JSON(), "text", "kind"),
    ("uuid-as-varchar", sa.Uuid(), "varchar(36)", "kind"),
    ("boolean-as-integer", sa.Boolean(), "integer", "kind"),
    ("array-as-scalar", sa.ARRAY(sa.Integer()), "integer", "kind"),
    ("array-items-narrower", sa.ARRAY(sa.String(50)), "varchar(10)[]", "items"),
    ("other-type-different-ddl", postgresql.INET(), "cidr", "different"),
]

_TYPES_SQL = """
CREATE TYPE status_same AS ENUM ('PENDING', 'IN_PROGRESS', 'DONE');
CREATE TYPE status_more AS ENUM ('PENDING', 'IN_PROGRESS', 'DONE', 'CANCELLED');
CREATE TYPE status_fewer AS ENUM ('PENDING', 'IN_PROGRESS');
CREATE TYPE mood_pair AS (a int, b int);
"""


@pytest.fixture(scope="module")
def reflected(postgres_cluster) -> Iterator[dict[str, Any]]:
    """Each case's column, created in a real table and reflected back: case name → reflected type."""
    cases = [(name, ddl) for name, _, ddl in EQUIVALENT] + [(name, ddl) for name, _, ddl, _ in INCOMPATIBLE]
    columns = ", ".join(f'"{name}" {ddl}' for name, ddl in cases)
    database = postgres_cluster.create_database()
    try:
        postgres_cluster.run_sql(_TYPES_SQL + f"CREATE TABLE shapes ({columns});", database)
        engine = sa.create_engine(postgres_cluster.url(database), connect_args={"connect_timeout": 5})
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", sa.exc.SAWarning)  # "did not recognize type mood_pair": the point
                with engine.connect() as connection:
                    yield {c["name"]: c["type"] for c in sa.inspect(connection).get_columns("shapes")}
        finally:
            engine.dispose()
    finally:
        postgres_cluster.drop_database(make_url(postgres_cluster.url(database)).database)


@pytest.mark.parametrize(("case", "models_type", "ddl"), EQUIVALENT, ids=[case[0] for case in EQUIVALENT])
def test_equivalent_types_are_not_drift(reflected, case, models_type, ddl) -> None:
    """A column that holds everything the models' type writes is never reported, however it is spelled."""
    assert type_problem(models_type, reflected[case]) is None


@pytest.mark.parametrize(("case", "models_type", "ddl", "reason"), INCOMPATIBLE, ids=[case[0] for case in INCOMPATIBLE])
def test_types_that_lose_or_refuse_values_are_drift(reflected, case, models_type, ddl, reason) -> None:
    """A column that refuses or loses what the models write is reported, saying why."""
    problem = type_problem(models_type, reflected[case])
    assert problem is not None and reason in problem


def test_enum_is_described_with_its_labels(reflected) -> None:
    """Messages show an enum's name and labels, so a missing label can be seen in found vs expected."""
    assert describe_type(reflected["native-enum-lacking-a-label"]) == "enum status_fewer ('PENDING', 'IN_PROGRESS')"
    assert describe_type(sa.Enum(Status, name="status")) == "enum status ('PENDING', 'IN_PROGRESS', 'DONE')"
