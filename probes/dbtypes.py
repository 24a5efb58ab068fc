"""Whether a database column's type can hold what the models' type writes: the one rule DB006 and DB012 use.

**The rule.** A column's type is compatible with the models' type when every value the
models' type can write is stored without error and without losing what that type
carries. Spelling does not matter, capacity does:

=====================  ==========================================================================
models                 compatible database types
=====================  ==========================================================================
String(n) / Text       ``varchar(m)`` with m ≥ n, or ``text`` / unbounded ``varchar``
                       (``String()`` without a length needs an unbounded column)
CHAR(n)                ``char(n)``, or a text column at least n long
Enum (native or not)   a PostgreSQL enum holding every label the models write (its name and any
                       extra labels do not matter), or a text column long enough for every label
JSON / JSONB           ``json`` or ``jsonb``
Integer widths         an integer at least as wide (``smallint`` < ``integer`` < ``bigint``), or a
                       ``numeric`` with room for every digit
Float / Double         a floating type at least as wide (``real`` < ``double precision``)
Numeric(p, s)          ``numeric`` unconstrained, or with at least s fraction digits and p − s
                       integer digits (``Numeric()`` without precision needs an unconstrained one)
DateTime / Time        the same type; a zone-aware models' type needs ``with time zone`` (a naive
                       one may be stored in either)
Uuid, Boolean, Date,   the same type
Interval, LargeBinary
ARRAY(item)            an array whose item is compatible
anything else          the same DDL
=====================  ==========================================================================

A side this module cannot read (a type SQLAlchemy does not reflect, such as an extension's)
is never reported: a false alarm costs more than a miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TypeShape", "describe_type", "shape_of", "type_problem"]

#: Decimal digits an integer of this many bytes needs.
_INTEGER_DIGITS = {2: 5, 4: 10, 8: 19}


@dataclass(frozen=True)
class TypeShape:
    """What a type can hold, read from a models' type or a reflected one."""

    #: ``text``, ``char``, ``enum``, ``json``, ``int``, ``float``, ``numeric``, ``bool``, ``date``,
    #: ``timestamp``, ``time``, ``interval``, ``bytes``, ``uuid``, ``array`` or ``other``.
    family: str
    #: Characters (text, char), bytes (int, float), precision (numeric).
    size: int | None = None
    scale: int | None = None
    timezone: bool = False
    labels: tuple[str, ...] = ()
    item: TypeShape | None = None
    #: The DDL, for ``other`` types and for messages.
    ddl: str = ""


def _dialect() -> Any:
    from sqlalchemy.dialects import postgresql

    return postgresql.dialect()


def _resolved(type_: Any, dialect: Any) -> Any:
    """The type PostgreSQL gets: a variant for it, a TypeDecorator's implementation."""
    from sqlalchemy.types import Interval, TypeDecorator

    for _ in range(10):  # decorators of variants of decorators, bounded
        variant = (getattr(type_, "_variant_mapping", None) or {}).get(dialect.name)
        if variant is not None:
            type_ = variant
            continue
        # Interval is a TypeDecorator over DateTime for databases without one; PostgreSQL has it.
        if isinstance(type_, TypeDecorator) and not isinstance(type_, Interval):
            type_ = type_.load_dialect_impl(dialect)
            continue
        break
    return type_


def describe_type(type_: Any) -> str:
    """The type as DDL, with an enum's labels (``enum task_status ('A', 'B')``)."""
    import sqlalchemy.types as sqltypes

    dialect = _dialect()
    resolved = _resolved(type_, dialect)
    if isinstance(resolved, sqltypes.Enum) and getattr(resolved, "native_enum", True):
        labels = ", ".join(repr(label) for label in resolved.enums)
        return f"enum {resolved.name or '?'} ({labels})"
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:  # a type with no DDL for PostgreSQL: its repr is all there is
        return repr(type_)


def shape_of(type_: Any) -> TypeShape | None:
    """What ``type_`` (a models' or a reflected type) holds; ``None`` when it cannot be read."""
    import sqlalchemy.types as sqltypes
    from sqlalchemy.dialects import postgresql

    dialect = _dialect()
    t = _resolved(type_, dialect)
    if isinstance(t, sqltypes.NullType):
        return None
    if isinstance(t, sqltypes.Enum):
        if getattr(t, "native_enum", True):
            return TypeShape("enum", labels=tuple(t.enums))
        return TypeShape("text", size=t.length, labels=tuple(t.enums))
    if isinstance(t, sqltypes.ARRAY):
        return TypeShape("array", item=shape_of(t.item_type))
    if isinstance(t, sqltypes.JSON):
        return TypeShape("json")
    if isinstance(t, sqltypes.Uuid):
        return TypeShape("uuid") if getattr(t, "native_uuid", True) else TypeShape("char", size=32)
    if isinstance(t, sqltypes.Boolean):
        return TypeShape("bool")
    if isinstance(t, sqltypes.Integer):
        size = 8 if isinstance(t, sqltypes.BigInteger) else 2 if isinstance(t, sqltypes.SmallInteger) else 4
        return TypeShape("int", size=size)
    if isinstance(t, sqltypes.Float):
        if isinstance(t, sqltypes.Double):
            return TypeShape("float", size=8)
        if isinstance(t, sqltypes.REAL):
            return TypeShape("float", size=4)
        # FLOAT(p) is real up to 24 binary digits, double precision beyond (and without p).
        return TypeShape("float", size=4 if t.precision is not None and t.precision <= 24 else 8)
    if isinstance(t, sqltypes.Numeric):
        scale = t.scale if t.scale is not None or t.precision is None else 0
        return TypeShape("numeric", size=t.precision, scale=scale)
    if isinstance(t, sqltypes.DateTime):
        return TypeShape("timestamp", timezone=bool(t.timezone))
    if isinstance(t, sqltypes.Date):
        return TypeShape("date")
    if isinstance(t, sqltypes.Time):
        return TypeShape("time", timezone=bool(t.timezone))
    if isinstance(t, (sqltypes.Interval, postgresql.INTERVAL)):
        return TypeShape("interval")
    if isinstance(t, sqltypes._Binary):
        return TypeShape("bytes")
    if isinstance(t, (sqltypes.CHAR, sqltypes.NCHAR)):
        return TypeShape("char", size=t.length or 1)
    if isinstance(t, sqltypes.String):
        return TypeShape("text", size=t.length)
    try:
        ddl = str(t.compile(dialect=dialect))
    except Exception:  # nothing to compare it by
        return None
    return TypeShape("other", ddl=" ".join(ddl.upper().split()))


def _text_problem(expected: TypeShape, found: TypeShape) -> str | None:
    if found.size is None:
        return None
    if expected.labels:
        longest = max((len(label) for label in expected.labels), default=0)
        return None if found.size >= longest else f"holds {found.size} characters, a label has {longest}"
    if expected.size is None:
        return f"holds at most {found.size} characters; the models set no limit"
    if found.size < expected.size:
        return f"holds at most {found.size} characters; the models allow {expected.size}"
    return None


def _numeric_problem(expected: TypeShape, found: TypeShape) -> str | None:
    if found.family == "int":
        return "an integer column drops the fraction digits the models keep"
    if found.size is None:
        return None
    if expected.size is None:
        return f"numeric({found.size}, {found.scale}) rounds or overflows; the models set no precision"
    expected_scale, found_scale = expected.scale or 0, found.scale or 0
    if found_scale < expected_scale:
        return f"keeps {found_scale} fraction digits; the models keep {expected_scale}"
    if found.size - found_scale < expected.size - expected_scale:
        return (
            f"has room for {found.size - found_scale} integer digits; the models allow {expected.size - expected_scale}"
        )
    return None


def type_problem(expected_type: Any, found_type: Any) -> str | None:
    """Why a column of ``found_type`` cannot hold what ``expected_type`` (the models') writes; ``None`` if it can."""
    expected, found = shape_of(expected_type), shape_of(found_type)
    if expected is None or found is None:
        return None
    return _problem(expected, found)


def _problem(expected: TypeShape, found: TypeShape) -> str | None:
    family, other = expected.family, found.family
    if family == "enum":
        if other == "enum":
            missing = [label for label in expected.labels if label not in found.labels]
            return f"the database's enum lacks {', '.join(map(repr, missing))}" if missing else None
        if other == "text":
            return _text_problem(expected, found)
    elif family == "text" and other == "text":
        return _text_problem(expected, found)
    elif family == "text" and expected.labels and other == "enum":  # a non-native enum stored in a native one
        missing = [label for label in expected.labels if label not in found.labels]
        return f"the database's enum lacks {', '.join(map(repr, missing))}" if missing else None
    elif family == "char" and other in ("char", "text"):
        return _text_problem(expected, found) if other == "text" or found.size != expected.size else None
    elif family == "int" and other == "int":
        return (
            None
            if (found.size or 0) >= (expected.size or 0)
            else f"a {found.size}-byte integer; the models write {expected.size}-byte ones"
        )
    elif family == "int" and other == "numeric":
        digits = _INTEGER_DIGITS.get(expected.size or 4, 19)
        room = None if found.size is None else found.size - (found.scale or 0)
        return (
            None if room is None or room >= digits else f"has room for {room} digits; the models write up to {digits}"
        )
    elif family == "float" and other == "float":
        return (
            None if (found.size or 0) >= (expected.size or 0) else "single precision; the models write double precision"
        )
    elif family == "numeric" and other in ("numeric", "int"):
        return _numeric_problem(expected, found)
    elif family in ("timestamp", "time") and other == family:
        return (
            "without time zone; the models write zone-aware values"
            if expected.timezone and not found.timezone
            else None
        )
    elif family == "array" and other == "array":
        if expected.item is None or found.item is None:
            return None
        inner = _problem(expected.item, found.item)
        return f"items: {inner}" if inner else None
    elif family == "other" and other == "other":
        return None if expected.ddl == found.ddl else "a different type"
    elif family == other:
        return None
    return "a different kind of type"
