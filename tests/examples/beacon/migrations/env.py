"""Alembic environment for beacon: async engine, URL from BEACON_DB_URL."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from beacon.settings import async_database_url
from beacon.tables import metadata
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    url = os.environ.get("BEACON_DB_URL")
    if not url:
        raise RuntimeError("BEACON_DB_URL is not set")
    engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool, connect_args={"connect_timeout": 10})
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("beacon migrations run online only")
asyncio.run(run_async_migrations())
