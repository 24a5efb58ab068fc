"""Engine, sessions and the unit-of-work scope of the flow.

:func:`session_scope` is the seed's ``get_db_context`` done right: it commits once on
success, and on error rolls back **and re-raises** — an exception is never swallowed,
so a failed save can never look like a successful one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from harness.config import TIMEOUTS, Timeouts, sqlalchemy_url

__all__ = ["make_engine", "make_session_factory", "migrate", "migrations_config", "migrations_ini", "session_scope"]


def make_engine(database_url: str, *, timeouts: Timeouts = TIMEOUTS, **kwargs: Any) -> Engine:
    """An engine whose connections give up after the connect timeout."""
    connect_args = {"connect_timeout": max(2, int(timeouts.db_connect))}
    connect_args.update(kwargs.pop("connect_args", {}))
    return create_engine(
        sqlalchemy_url(database_url),
        connect_args=connect_args,
        pool_pre_ping=True,
        **kwargs,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (``expire_on_commit=False``).

    Their transactions are logged at debug level (begin, flush, commit, rollback, row counts).
    """
    from harness.flow.dblog import log_transactions

    return log_transactions(sessionmaker(bind=engine, expire_on_commit=False))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success; on error roll back and re-raise."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrations_ini() -> Path:
    """The reference flow's ``alembic.ini`` (its ``script_location`` is the ``migrations`` folder beside it)."""
    return Path(str(resources.files("harness.flow") / "alembic.ini"))


def migrations_config(database_url: str) -> Any:
    """An Alembic config for the flow's migrations against ``database_url``."""
    from alembic.config import Config

    config = Config(str(migrations_ini()))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the schema at ``database_url`` to ``revision`` with Alembic."""
    from alembic import command

    command.upgrade(migrations_config(database_url), revision)
