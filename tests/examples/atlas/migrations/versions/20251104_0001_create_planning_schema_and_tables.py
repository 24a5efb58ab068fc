"""Create the planning schema and the discovery and masterplan tables.

The tables live in the ``planning`` schema and are found through the database's
search_path, which this migration sets (the migrating role must own the database).

Revision ID: 20251104_0001_create_planning_schema_and_tables
Revises:
Create Date: 2025-11-04 09:12:44
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20251104_0001_create_planning_schema_and_tables"
down_revision = None
branch_labels = None
depends_on = None

PLAN_STATUSES = ("DRAFT", "GENERATING", "APPROVED", "IN_PROGRESS", "COMPLETED", "FAILED")
TASK_STATUSES = ("PENDING", "READY", "IN_PROGRESS", "COMPLETED", "FAILED")
COMPLEXITIES = ("LOW", "MEDIUM", "HIGH")


def upgrade() -> None:
    # Our revision ids are longer than alembic's default VARCHAR(32).
    op.alter_column(
        "alembic_version",
        "version_num",
        type_=sa.String(128),
        existing_type=sa.String(32),
        existing_nullable=False,
    )
    op.execute("CREATE SCHEMA IF NOT EXISTS planning")
    op.execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = planning, public', current_database()); END $$"
    )
    op.execute("SET search_path = planning, public")

    op.create_table(
        "discovery_documents",
        sa.Column("discovery_id", sa.Uuid(), primary_key=True),
        sa.Column("session_id", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(100), nullable=False),
        sa.Column("user_request", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(200), nullable=False),
        sa.Column("bounded_contexts", postgresql.JSONB(), nullable=False),
        sa.Column("aggregates", postgresql.JSONB(), nullable=False),
        sa.Column("value_objects", postgresql.JSONB(), nullable=False),
        sa.Column("domain_events", postgresql.JSONB(), nullable=False),
        sa.Column("services", postgresql.JSONB(), nullable=False),
        sa.Column("assumptions", postgresql.JSONB(), nullable=True),
        sa.Column("risks", postgresql.JSONB(), nullable=True),
        sa.Column("llm_model", sa.String(100), nullable=True),
        sa.Column("llm_cost_usd", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_discovery_documents_session_id", "discovery_documents", ["session_id"])
    op.create_index("ix_discovery_documents_user_id", "discovery_documents", ["user_id"])

    op.create_table(
        "masterplans",
        sa.Column("masterplan_id", sa.Uuid(), primary_key=True),
        sa.Column("discovery_id", sa.Uuid(), sa.ForeignKey("discovery_documents.discovery_id"), nullable=False),
        sa.Column("session_id", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(100), nullable=False),
        sa.Column("project_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.Enum(*PLAN_STATUSES, name="planstatus"), nullable=False),
        sa.Column("tech_stack", postgresql.JSONB(), nullable=False),
        sa.Column("architecture_style", sa.String(100), nullable=True),
        sa.Column("total_tasks", sa.Integer(), nullable=False),
        sa.Column("total_phases", sa.Integer(), nullable=True),
        sa.Column("total_milestones", sa.Integer(), nullable=True),
        sa.Column("llm_model", sa.String(100), nullable=True),
        sa.Column("estimated_cost_usd", sa.Float(), nullable=True),
        sa.Column("estimated_duration_minutes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_masterplans_session_id", "masterplans", ["session_id"])
    op.create_index("ix_masterplans_user_id", "masterplans", ["user_id"])

    op.create_table(
        "masterplan_phases",
        sa.Column("phase_id", sa.Uuid(), primary_key=True),
        sa.Column(
            "masterplan_id",
            sa.Uuid(),
            sa.ForeignKey("masterplans.masterplan_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("phase_number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
    )
    op.create_table(
        "masterplan_milestones",
        sa.Column("milestone_id", sa.Uuid(), primary_key=True),
        sa.Column(
            "masterplan_id",
            sa.Uuid(),
            sa.ForeignKey("masterplans.masterplan_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "phase_id", sa.Uuid(), sa.ForeignKey("masterplan_phases.phase_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("milestone_number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
    )
    op.create_table(
        "masterplan_tasks",
        sa.Column("task_id", sa.Uuid(), primary_key=True),
        sa.Column(
            "masterplan_id",
            sa.Uuid(),
            sa.ForeignKey("masterplans.masterplan_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "phase_id", sa.Uuid(), sa.ForeignKey("masterplan_phases.phase_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "milestone_id",
            sa.Uuid(),
            sa.ForeignKey("masterplan_milestones.milestone_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("task_number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("complexity", sa.Enum(*COMPLEXITIES, name="taskcomplexity"), nullable=False),
        sa.Column("status", sa.Enum(*TASK_STATUSES, name="taskstatus"), nullable=False),
        sa.Column("depends_on_tasks", sa.JSON(), nullable=False),
        sa.Column("target_files", postgresql.JSONB(), nullable=True),
        sa.Column("estimated_tokens", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("masterplan_tasks")
    op.drop_table("masterplan_milestones")
    op.drop_table("masterplan_phases")
    op.drop_table("masterplans")
    op.drop_table("discovery_documents")
    for name in ("taskstatus", "taskcomplexity", "planstatus"):
        op.execute(f"DROP TYPE IF EXISTS {name}")
    op.execute("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET search_path', current_database()); END $$")
    op.execute("DROP SCHEMA IF EXISTS planning")
