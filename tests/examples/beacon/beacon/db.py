"""The async engine and the one way beacon writes: a transaction that commits or rolls back."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from beacon.settings import async_database_url

__all__ = ["make_engine", "write_transaction"]

logger = logging.getLogger(__name__)


def make_engine(database_url: str) -> AsyncEngine:
    return create_async_engine(
        async_database_url(database_url),
        pool_size=5,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 10, "application_name": "beacon"},
    )


@asynccontextmanager
async def write_transaction(engine: AsyncEngine, what: str) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction: committed when the block ends, rolled back if it raises."""
    try:
        async with engine.begin() as conn:
            yield conn
    except DBAPIError as exc:
        logger.error("write failed (%s): %s", what, exc.orig)
        raise
