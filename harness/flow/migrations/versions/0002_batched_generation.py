"""Batched generation: how a plan was generated, its skeleton, batch progress and the failing batch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("masterplans", sa.Column("generation_mode", sa.String(length=20), nullable=True))
    op.add_column("masterplans", sa.Column("skeleton", postgresql.JSONB(), nullable=True))
    op.add_column("masterplans", sa.Column("batches_total", sa.Integer(), server_default="0", nullable=False))
    op.add_column("masterplans", sa.Column("batches_committed", sa.Integer(), server_default="0", nullable=False))
    op.add_column("masterplans", sa.Column("failed_batch", sa.Integer(), nullable=True))
    op.add_column("masterplan_tasks", sa.Column("batch_number", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("masterplan_tasks", "batch_number")
    for column in ("failed_batch", "batches_committed", "batches_total", "skeleton", "generation_mode"):
        op.drop_column("masterplans", column)
