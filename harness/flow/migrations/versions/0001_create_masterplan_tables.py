"""Create the discovery and masterplan tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUS_VALUES = ("generating", "draft", "approved", "in_progress", "completed", "failed", "cancelled")


def upgrade() -> None:
    op.create_table(
        "discovery_documents",
        sa.Column("discovery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("user_request", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("bounded_contexts", postgresql.JSONB(), nullable=False),
        sa.Column("aggregates", postgresql.JSONB(), nullable=False),
        sa.Column("value_objects", postgresql.JSONB(), nullable=False),
        sa.Column("domain_events", postgresql.JSONB(), nullable=False),
        sa.Column("services", postgresql.JSONB(), nullable=False),
        sa.Column("assumptions", postgresql.JSONB(), nullable=True),
        sa.Column("risks", postgresql.JSONB(), nullable=True),
        sa.Column("llm_model", sa.String(length=100), nullable=True),
        sa.Column("llm_cost_usd", sa.Numeric(10, 6), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("discovery_id", name="pk_discovery_documents"),
    )
    op.create_index("ix_discovery_documents_session_id", "discovery_documents", ["session_id"])
    op.create_index("ix_discovery_documents_user_id", "discovery_documents", ["user_id"])

    status = postgresql.ENUM(*STATUS_VALUES, name="masterplan_status")
    op.create_table(
        "masterplans",
        sa.Column("masterplan_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("discovery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("project_name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", status, nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("tech_stack", postgresql.JSONB(), nullable=False),
        sa.Column("architecture_style", sa.String(length=100), nullable=True),
        sa.Column("total_tasks", sa.Integer(), nullable=False),
        sa.Column("total_phases", sa.Integer(), nullable=False),
        sa.Column("total_milestones", sa.Integer(), nullable=False),
        sa.Column("llm_model", sa.String(length=100), nullable=True),
        sa.Column("generation_cost_usd", sa.Numeric(10, 6), nullable=True),
        sa.Column("estimated_cost_usd", sa.Numeric(10, 2), nullable=True),
        sa.Column("estimated_duration_minutes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["discovery_id"],
            ["discovery_documents.discovery_id"],
            name="fk_masterplans_discovery_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("masterplan_id", name="pk_masterplans"),
    )
    op.create_index("ix_masterplans_discovery_id", "masterplans", ["discovery_id"])
    op.create_index("ix_masterplans_session_id", "masterplans", ["session_id"])
    op.create_index("ix_masterplans_user_id", "masterplans", ["user_id"])

    op.create_table(
        "masterplan_phases",
        sa.Column("phase_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("masterplan_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("phase_number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["masterplan_id"],
            ["masterplans.masterplan_id"],
            name="fk_masterplan_phases_masterplan_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("phase_id", name="pk_masterplan_phases"),
        sa.UniqueConstraint("masterplan_id", "phase_number", name="uq_masterplan_phases_masterplan_id"),
    )
    op.create_index("ix_masterplan_phases_masterplan_id", "masterplan_phases", ["masterplan_id"])

    op.create_table(
        "masterplan_milestones",
        sa.Column("milestone_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("phase_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("milestone_number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["phase_id"],
            ["masterplan_phases.phase_id"],
            name="fk_masterplan_milestones_phase_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("milestone_id", name="pk_masterplan_milestones"),
        sa.UniqueConstraint("phase_id", "milestone_number", name="uq_masterplan_milestones_phase_id"),
    )
    op.create_index("ix_masterplan_milestones_phase_id", "masterplan_milestones", ["phase_id"])

    op.create_table(
        "masterplan_tasks",
        sa.Column("task_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("masterplan_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("milestone_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("task_number", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("complexity", sa.String(length=20), nullable=False),
        sa.Column("target_files", postgresql.JSONB(), nullable=False),
        sa.Column("estimated_tokens", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["masterplan_id"],
            ["masterplans.masterplan_id"],
            name="fk_masterplan_tasks_masterplan_id",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["milestone_id"],
            ["masterplan_milestones.milestone_id"],
            name="fk_masterplan_tasks_milestone_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", name="pk_masterplan_tasks"),
        sa.UniqueConstraint("masterplan_id", "task_number", name="uq_masterplan_tasks_masterplan_id"),
    )
    op.create_index("ix_masterplan_tasks_masterplan_id", "masterplan_tasks", ["masterplan_id"])
    op.create_index("ix_masterplan_tasks_milestone_id", "masterplan_tasks", ["milestone_id"])

    op.create_table(
        "masterplan_task_dependencies",
        sa.Column("task_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("depends_on_task_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["masterplan_tasks.task_id"],
            name="fk_masterplan_task_dependencies_task_id",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["depends_on_task_id"],
            ["masterplan_tasks.task_id"],
            name="fk_masterplan_task_dependencies_depends_on_task_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "depends_on_task_id", name="pk_masterplan_task_dependencies"),
    )


def downgrade() -> None:
    op.drop_table("masterplan_task_dependencies")
    op.drop_table("masterplan_tasks")
    op.drop_table("masterplan_milestones")
    op.drop_table("masterplan_phases")
    op.drop_table("masterplans")
    postgresql.ENUM(name="masterplan_status").drop(op.get_bind(), checkfirst=True)
    op.drop_table("discovery_documents")
