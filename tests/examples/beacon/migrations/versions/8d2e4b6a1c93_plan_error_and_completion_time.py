"""A failed plan keeps its error; a finished one its completion time.

Revision ID: 8d2e4b6a1c93
Revises: 3c1f9a2e7b40
Create Date: 2025-10-20 09:47:51
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "8d2e4b6a1c93"
down_revision = "3c1f9a2e7b40"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plans", sa.Column("error", sa.Text(), nullable=True))
    op.add_column("plans", sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("plans", "completed_at")
    op.drop_column("plans", "error")
