"""Initial schema: discoveries, plans, phases, milestones, tasks.

Revision ID: 3c1f9a2e7b40
Revises:
Create Date: 2025-10-02 14:21:09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "3c1f9a2e7b40"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discoveries",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(200), nullable=False),
        sa.Column("document", postgresql.JSONB(), nullable=False),
        sa.Column("model", sa.String(64), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_discoveries"),
    )
    op.create_index("ix_discoveries_user_id", "discoveries", ["user_id"])
    op.create_table(
        "plans",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("discovery_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("project_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tech_stack", postgresql.JSONB(), nullable=False),
        sa.Column("architecture_style", sa.String(100), nullable=True),
        sa.Column("total_tasks", sa.Integer(), nullable=False),
        sa.Column("estimated_cost_usd", sa.Numeric(10, 2), nullable=True),
        sa.Column("estimated_duration_minutes", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), server_default="generating", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('generating', 'ready', 'failed')", name="ck_plans_status_known"),
        sa.ForeignKeyConstraint(["discovery_id"], ["discoveries.id"], name="fk_plans_discovery_id"),
        sa.PrimaryKeyConstraint("id", name="pk_plans"),
    )
    op.create_index("ix_plans_user_id", "plans", ["user_id"])
    op.create_table(
        "plan_phases",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name="fk_plan_phases_plan_id", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_plan_phases"),
        sa.UniqueConstraint("plan_id", "number", name="uq_plan_phases_plan_id"),
    )
    op.create_table(
        "plan_milestones",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("phase_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("task_count", sa.Integer(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["phase_id"], ["plan_phases.id"], name="fk_plan_milestones_phase_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_plan_milestones"),
        sa.UniqueConstraint("phase_id", "number", name="uq_plan_milestones_phase_id"),
    )
    op.create_table(
        "plan_tasks",
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("task_number", sa.Integer(), nullable=False),
        sa.Column("milestone_id", sa.BigInteger(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("complexity", sa.String(10), nullable=False),
        sa.Column("depends_on", postgresql.ARRAY(sa.Integer()), server_default="{}", nullable=False),
        sa.Column("target_files", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("estimated_tokens", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name="fk_plan_tasks_plan_id", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["milestone_id"], ["plan_milestones.id"], name="fk_plan_tasks_milestone_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("plan_id", "task_number", name="pk_plan_tasks"),
    )
    op.create_index("ix_plan_tasks_milestone_id", "plan_tasks", ["milestone_id"])


def downgrade() -> None:
    op.drop_table("plan_tasks")
    op.drop_table("plan_milestones")
    op.drop_table("plan_phases")
    op.drop_table("plans")
    op.drop_table("discoveries")
