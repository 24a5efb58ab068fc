"""Alembic environment for atlas: online migrations against ATLAS_DATABASE_URL."""

from __future__ import annotations

import os

import atlas.models  # noqa: F401  (registers the tables on Base.metadata)
from alembic import context
from atlas.config import psycopg2_url
from atlas.db import Base
from sqlalchemy import create_engine, pool

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = os.environ.get("ATLAS_DATABASE_URL")
    if not url:
        raise RuntimeError("ATLAS_DATABASE_URL is not set; it names the database to migrate")
    engine = create_engine(psycopg2_url(url), poolclass=pool.NullPool, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("atlas migrations run online only")
run_migrations_online()
