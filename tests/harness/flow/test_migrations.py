"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from harness.config import sqlalchemy_url
from harness.flow.models import metadata


@pytest.mark.slow
def test_migrated_database_matches_the_models(flow_database_url) -> None:
    """compare_metadata finds no difference between a database at head and the models (columns, types, nullability)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(sqlalchemy_url(flow_database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []


@pytest.mark.slow
def test_batch_columns_exist_after_migration(flow_database_url) -> None:
    """Revision 0002 adds the generation mode, skeleton and batch progress columns."""
    engine = create_engine(sqlalchemy_url(flow_database_url))
    try:
        with engine.connect() as connection:
            names = set(
                connection.exec_driver_sql(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'masterplans'"
                ).scalars()
            )
    finally:
        engine.dispose()
    assert {"generation_mode", "skeleton", "batches_total", "batches_committed", "failed_batch"} <= names
