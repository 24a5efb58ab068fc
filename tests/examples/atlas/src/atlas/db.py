"""Database engine, sessions and the unit-of-work context manager.

The tables live in the ``planning`` schema. Models name no schema: the database's
``search_path`` (``planning, public``, set by the first migration) finds them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from atlas.config import psycopg2_url

__all__ = ["Base", "SessionLocal", "close_db", "get_db_context", "init_db"]

logger = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Declarative base of every atlas model."""


# Bound to an engine by init_db(); objects stay readable after their session commits.
SessionLocal = sessionmaker(autoflush=False, expire_on_commit=False)

_engine: Engine | None = None


def init_db(database_url: str, *, echo: bool = False) -> Engine:
    """Create the engine for ``database_url`` and bind the session factory to it."""
    global _engine
    engine = create_engine(
        psycopg2_url(database_url),
        echo=echo,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=10,
        connect_args={"connect_timeout": 10, "application_name": "atlas"},
    )
    SessionLocal.configure(bind=engine)
    _engine = engine
    return engine


def close_db() -> None:
    """Close every pooled connection."""
    global _engine
    if _engine is not None:
        _engine.dispose()
        _engine = None


@contextmanager
def get_db_context() -> Iterator[Session]:
    """A session for one unit of work: committed on exit, rolled back on error."""
    db = SessionLocal()
    try:
        yield db
        db.commit()
    except Exception as exc:
        logger.error("Database error, rolling back: %s", exc)
        db.rollback()
        raise
    finally:
        db.close()
