"""Create plans, tasks and tags in the planning schema.

Revision ID: planner_0001_create_plans_tasks_and_tags
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "planner_0001_create_plans_tasks_and_tags"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Revision ids here are longer than Alembic's default VARCHAR(32).
    op.alter_column("alembic_version", "version_num", type_=sa.String(128), schema="planning")
    op.create_table(
        "plans",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("title", sa.VARCHAR(200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("document", postgresql.JSONB(), nullable=False),
        sa.Column("budget", sa.Numeric(12, 2), nullable=True),
        sa.Column("created_at", postgresql.TIMESTAMP(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("legacy_notes", sa.Text(), nullable=True),
    )
    status = postgresql.ENUM("PENDING", "IN_PROGRESS", "DONE", name="task_status")
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plan_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", status, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "plan_tags",
        sa.Column("plan_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("plans.id"), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
        schema="planning",
    )
    # A table of the application's the models do not map: never judged.
    op.create_table("audit_log", sa.Column("id", sa.BigInteger(), primary_key=True), sa.Column("entry", sa.Text()))


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("plan_tags", schema="planning")
    op.drop_table("tasks")
    op.drop_table("plans")
    postgresql.ENUM(name="task_status").drop(op.get_bind())
