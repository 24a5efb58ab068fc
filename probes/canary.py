"""Canary rows: what ``harness diagnose`` writes to a real database, found and removed — also a killed run's.

Every row a diagnose run makes the flow write carries a canary session id,
``harness-canary-<UTC time it was made>-<random>`` (:func:`new_session_id`). The run removes
what it wrote by key afterwards (:func:`probes.persist.remove_rows`); a run killed outright
(``kill -9``, power loss, a lost container) cannot, so the next run sweeps (:func:`sweep`):

1. **roots** — rows of the application's tables whose session column holds a canary id
   (columns named ``session_id`` / ``sid`` or ending so, string-typed, and any column this
   run saw holding its own canary id);
2. **children** — rows that reference a root through the metadata's foreign keys, and
   theirs in turn (a plan's phases, milestones, tasks and dependency rows carry no session
   id of their own). Only rows provably a canary's are deleted: when a child's own session
   column holds anything but a canary id, that canary is left in place whole (deleting its
   root could cascade to the other session's row) and reported;
3. **live runs are left alone** — a run holds a PostgreSQL advisory lock keyed by its canary
   id while it runs (:func:`holding`); a canary whose lock is free belongs to a run that is
   gone (the server releases a dead client's locks with its connection).

The sweep deletes children first (:func:`probes.persist.remove_rows`) and then counts the
canary rows left anywhere: PERSIST008 judges every canary row in the database, not only
this run's, and PERSIST014 names each earlier run whose rows were found, with when it wrote them.
"""

from __future__ import annotations

import re
import secrets
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness.config import TIMEOUTS, Timeouts
from probes.persist import CANARY_PREFIX

__all__ = [
    "CANARY_PREFIX",
    "Leftover",
    "SweepResult",
    "canary_columns",
    "holding",
    "new_session_id",
    "sweep",
    "written_at",
]

_STAMP = "%Y%m%dT%H%M%SZ"
_WITH_TIME = re.compile(rf"^{re.escape(CANARY_PREFIX)}(\d{{8}}T\d{{6}}Z)-[0-9a-f]+$")
#: Column names that hold the chat session a row belongs to (besides those seen holding this run's id).
_SESSION_NAMES = re.compile(r"^(?:.*_)?(?:session_id|sid)$", re.IGNORECASE)
#: First key of the advisory locks live runs hold ("HRNS"); the second is a CRC of the session id.
_LOCK_CLASS = 0x48524E53
#: Parent keys per query when following foreign keys.
_CHUNK = 500


def new_session_id(now: datetime | None = None) -> str:
    """A fresh canary session id carrying the UTC time it was made (``harness-canary-20261130T152047Z-1a2b3c4d``)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{CANARY_PREFIX}{moment.strftime(_STAMP)}-{secrets.token_hex(4)}"


def written_at(session_id: str) -> datetime | None:
    """When the canary id was made (its run started writing); ``None`` for ids without a time (older harnesses)."""
    match = _WITH_TIME.match(session_id)
    if match is None:
        return None
    return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)


def _lock_key(session_id: str) -> int:
    value = zlib.crc32(session_id.encode())
    return value - 2**32 if value >= 2**31 else value


@contextmanager
def holding(database_url: str | None, session_id: str, timeouts: Timeouts = TIMEOUTS) -> Iterator[bool]:
    """Hold the advisory lock that marks ``session_id`` as a live run's for the block; yields whether it is held.

    Without it another diagnose's sweep could take this run's rows for a dead run's. When the
    lock cannot be taken (no database, a pooler in transaction mode) the run goes on: the
    flow's own checks will say what is wrong with the database.
    """
    if not database_url:
        yield False
        return
    from sqlalchemy import text

    from probes.db import probe_engine

    engine = probe_engine(database_url, timeouts)
    connection = None
    try:
        try:
            connection = engine.connect()
            connection.execute(text("SELECT pg_advisory_lock(:a, :b)"), {"a": _LOCK_CLASS, "b": _lock_key(session_id)})
            connection.commit()
        except Exception:  # noqa: BLE001 - the lock protects against other sweeps; its absence is no failure
            if connection is not None:
                connection.close()
                connection = None
        yield connection is not None
    finally:
        if connection is not None:
            connection.close()  # ends the session: the lock goes with it
        engine.dispose()


def canary_columns(metadata: Any, seen: Iterable[tuple[str, str]] = ()) -> list[tuple[Any, Any]]:
    """(table, column) pairs that may hold a canary session id: session-named string columns, and ``seen`` ones."""
    from sqlalchemy import String

    if metadata is None:
        return []
    wanted = set(seen)
    found = []
    for table in metadata.sorted_tables:
        for column in table.columns:
            named = bool(_SESSION_NAMES.match(column.name)) and isinstance(column.type, String)
            if named or (table.fullname, column.name) in wanted:
                found.append((table, column))
    return found


@dataclass(frozen=True)
class Leftover:
    """The canary rows of one earlier run that never removed them."""

    session_id: str
    #: When its canary id was made (``None``: an id from an older harness, without a time).
    written_at: datetime | None
    #: Rows found per table: its own rows and the children hanging from them.
    rows: dict[str, int]
    #: Whether the sweep removed them (no: rows of another session hang from them, or the delete failed).
    removed: bool = True

    def describe(self) -> str:
        when = f"written {self.written_at:%Y-%m-%d %H:%M:%S} UTC" if self.written_at else "written at an unknown time"
        return f"{self.session_id} ({when}): {sum(self.rows.values())} row(s)"


@dataclass
class SweepResult:
    """What a sweep found, removed and left."""

    #: Earlier runs' canaries found (not this run's, not a live run's).
    leftovers: list[Leftover] = field(default_factory=list)
    #: This run's own canary rows the sweep still found (written where the watcher could not see).
    own_rows: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    #: Canary rows still there afterwards, per session id (live runs' excluded).
    remaining: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Sessions skipped because a live run holds their lock.
    live: list[str] = field(default_factory=list)
    #: Canaries left in place, per session id: rows of another session hang from them (table → count),
    #: and deleting the canary could take those along.
    kept: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Why the sweep could not finish (a database error), if it could not.
    error: str | None = None
    sqlstate: str | None = None


def _roots(connection: Any, columns: list[tuple[Any, Any]]) -> dict[str, dict[str, set[tuple[Any, ...]]]]:
    """Session id → table → primary keys of the rows whose session column holds a canary id."""
    from sqlalchemy import select

    found: dict[str, dict[str, set[tuple[Any, ...]]]] = {}
    for table, column in columns:
        pk = list(table.primary_key.columns)
        if not pk:
            continue
        rows = connection.execute(
            select(column, *pk).where(column.startswith(CANARY_PREFIX, autoescape=True))
        ).all()
        for row in rows:
            found.setdefault(row[0], {}).setdefault(table.fullname, set()).add(tuple(row[1:]))
    return found


def _children(
    connection: Any, metadata: Any, keys: dict[str, set[tuple[Any, ...]]], columns: list[tuple[Any, Any]]
) -> tuple[dict[str, set[tuple[Any, ...]]], dict[str, int]]:
    """``keys`` with every row hanging from them through foreign keys, to a fixed point; and the children kept."""
    from sqlalchemy import and_, not_, or_, select, tuple_

    session_columns: dict[str, list[Any]] = {}
    for table, column in columns:
        session_columns.setdefault(table.fullname, []).append(column)
    closure = {name: set(found) for name, found in keys.items()}
    kept: dict[str, int] = {}
    frontier = {name: set(found) for name, found in keys.items()}
    while frontier:
        added: dict[str, set[tuple[Any, ...]]] = {}
        for child in metadata.sorted_tables:
            child_pk = list(child.primary_key.columns)
            if not child_pk:
                continue
            for constraint in child.foreign_key_constraints:
                parent = constraint.referred_table
                parent_keys = frontier.get(parent.fullname)
                if not parent_keys:
                    continue
                parent_pk = list(parent.primary_key.columns)
                local = [element.parent for element in constraint.elements]
                remote = [element.column for element in constraint.elements]
                listed = sorted(parent_keys, key=repr)
                for start in range(0, len(listed), _CHUNK):
                    chunk = listed[start : start + _CHUNK]
                    which = (
                        parent_pk[0].in_([key[0] for key in chunk])
                        if len(parent_pk) == 1
                        else tuple_(*parent_pk).in_(chunk)
                    )
                    referenced = select(*remote).where(which)
                    match = (
                        local[0].in_(referenced) if len(local) == 1 else tuple_(*local).in_(referenced)
                    )
                    own = session_columns.get(child.fullname, [])
                    foreign = (
                        or_(*(and_(c.is_not(None), not_(c.startswith(CANARY_PREFIX, autoescape=True))) for c in own))
                        if own
                        else None
                    )
                    query = select(*child_pk).where(match)
                    if foreign is not None:
                        kept_count = len(connection.execute(select(*child_pk).where(match, foreign)).all())
                        if kept_count:
                            kept[child.fullname] = kept.get(child.fullname, 0) + kept_count
                        query = query.where(not_(foreign))
                    for row in connection.execute(query).all():
                        key = tuple(row)
                        if key not in closure.setdefault(child.fullname, set()):
                            closure[child.fullname].add(key)
                            added.setdefault(child.fullname, set()).add(key)
        frontier = added
    return closure, kept


def sweep(
    database_url: str,
    metadata: Any,
    *,
    own_session: str | None = None,
    seen: Iterable[tuple[str, str]] = (),
    timeouts: Timeouts = TIMEOUTS,
) -> SweepResult:
    """Find every canary's rows (this run's left over, and dead runs'), remove them children first, count what is left.

    Canaries whose advisory lock a live run holds are left alone and not counted.
    """
    from sqlalchemy import text

    from probes.db import probe_engine
    from probes.dberrors import describe_db_error
    from probes.persist import remove_rows

    result = SweepResult()
    columns = canary_columns(metadata, seen)
    if not columns:
        return result
    engine = probe_engine(database_url, timeouts)
    try:
        with engine.connect() as connection:
            roots = _roots(connection, columns)
            for session_id in sorted(roots):
                if session_id == own_session:
                    continue
                free = connection.execute(
                    text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": _LOCK_CLASS, "b": _lock_key(session_id)}
                ).scalar()
                if not free:
                    result.live.append(session_id)
                    continue
                connection.execute(
                    text("SELECT pg_advisory_unlock(:a, :b)"), {"a": _LOCK_CLASS, "b": _lock_key(session_id)}
                )
            connection.commit()
            removing: dict[str, set[tuple[Any, ...]]] = {}
            by_session: dict[str, dict[str, set[tuple[Any, ...]]]] = {}
            for session_id, tables in roots.items():
                if session_id in result.live:
                    continue
                rows, kept = _children(connection, metadata, tables, columns)
                by_session[session_id] = rows
                if kept:
                    # Rows of another session hang from this canary: deleting it could take them along
                    # (ON DELETE CASCADE), so none of this canary's rows is touched.
                    result.kept[session_id] = kept
                    continue
                for name, keys in rows.items():
                    removing.setdefault(name, set()).update(keys)
            connection.commit()
        failed = False
        if removing:
            findings, result.deleted = remove_rows(
                database_url, metadata, {name: sorted(keys, key=repr) for name, keys in removing.items()}, timeouts
            )
            if findings:
                failed = True
                evidence = findings[0].evidence
                result.error = str(evidence.get("error") or findings[0].message)
                result.sqlstate = evidence.get("sqlstate")
        for session_id, rows in sorted(by_session.items()):
            counts = {name: len(keys) for name, keys in sorted(rows.items()) if keys}
            if session_id == own_session:
                result.own_rows = counts
            else:
                removed = not failed and session_id not in result.kept
                result.leftovers.append(Leftover(session_id, written_at(session_id), counts, removed))
        with engine.connect() as connection:
            after = _roots(connection, columns)
        for session_id, tables in after.items():
            if session_id not in result.live:
                result.remaining[session_id] = {name: len(keys) for name, keys in sorted(tables.items())}
    except Exception as exc:  # noqa: BLE001 - a failed sweep is a finding naming why, never a crash
        failure = describe_db_error(exc)
        result.error = failure.message if failure else f"{type(exc).__name__}: {str(exc)[:300]}"
        result.sqlstate = failure.sqlstate if failure else None
    finally:
        engine.dispose()
    return result
