"""SQLAlchemy transaction events as debug log lines: begin, flush, commit, rollback, with row counts.

Attached to a session factory by :func:`log_transactions` (``make_session_factory`` does
it). Each unit of work then tells its story at debug level::

    db_transaction_begun   session=…
    db_flushed             session=… inserted=1 updated=0 deleted=0 tables=["masterplans"]
    db_committed           session=… inserted=126 updated=1 deleted=0
    db_rolled_back         session=… inserted=3 updated=0 deleted=0   (rows flushed, now undone)

Counts are rows flushed in the transaction so far; a rollback reports what it undid.
The log line never carries row contents, so nothing secret can leak through it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from harness.logs import get_logger

__all__ = ["log_transactions"]

_log = get_logger("harness.db")
_COUNTS = "harness_row_counts"


def log_transactions(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Log every transaction of sessions made by ``factory`` at debug level; returns ``factory``."""
    if not event.contains(factory, "after_begin", _after_begin):
        event.listen(factory, "after_begin", _after_begin)
        event.listen(factory, "after_flush", _after_flush)
        event.listen(factory, "after_commit", _after_commit)
        event.listen(factory, "after_rollback", _after_rollback)
    return factory


def _counts(session: Session) -> Counter:
    return session.info.setdefault(_COUNTS, Counter())


def _after_begin(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info[_COUNTS] = Counter()
    _debug("db_transaction_begun", session=_name(session))


def _after_flush(session: Session, _flush_context: Any) -> None:
    # In after_flush, new/dirty/deleted still hold what this flush wrote.
    flushed = Counter(inserted=len(session.new), updated=len(session.dirty), deleted=len(session.deleted))
    _counts(session).update(flushed)
    tables = sorted(
        {obj.__table__.name for obj in (*session.new, *session.dirty, *session.deleted) if hasattr(obj, "__table__")}
    )
    _debug("db_flushed", session=_name(session), tables=tables, **_as_dict(flushed))


def _after_commit(session: Session) -> None:
    _debug("db_committed", session=_name(session), **_as_dict(session.info.pop(_COUNTS, Counter())))


def _after_rollback(session: Session) -> None:
    _debug("db_rolled_back", session=_name(session), **_as_dict(session.info.pop(_COUNTS, Counter())))


def _debug(event_name: str, **fields: Any) -> None:
    if structlog.is_configured():  # a host that never set up logging does not want our lines on stdout
        _log.debug(event_name, **fields)


def _as_dict(counts: Counter) -> dict[str, int]:
    return {key: counts.get(key, 0) for key in ("inserted", "updated", "deleted")}


def _name(session: Session) -> str:
    return f"{id(session):x}"
