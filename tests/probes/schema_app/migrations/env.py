"""The planner's Alembic environment: its own database variable, its version table in ``planning``."""

import os
from logging.config import fileConfig

from alembic import context
from planner_app.models import metadata
from sqlalchemy import create_engine, pool, text

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)


def run_migrations_online() -> None:
    url = os.environ.get("PLANNER_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("CREATE SCHEMA IF NOT EXISTS planning"))
            connection.commit()
            context.configure(connection=connection, target_metadata=metadata, version_table_schema="planning")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
