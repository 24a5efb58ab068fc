"""Tasks carry an estimate in hours.

Revision ID: planner_0002_add_task_estimate_hours
Revises: planner_0001_create_plans_tasks_and_tags
"""

import sqlalchemy as sa
from alembic import op

revision = "planner_0002_add_task_estimate_hours"
down_revision = "planner_0001_create_plans_tasks_and_tags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("estimate_hours", sa.Numeric(8, 2), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "estimate_hours")
