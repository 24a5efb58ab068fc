"""The schema, as SQLAlchemy Core tables (beacon has no ORM models)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

__all__ = ["PLAN_STATUSES", "discoveries", "metadata", "plan_milestones", "plan_phases", "plan_tasks", "plans"]

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

#: A plan is ``generating`` until its last batch is saved.
PLAN_STATUSES = ("generating", "ready", "failed")

discoveries = Table(
    "discoveries",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("user_id", String(64), nullable=False, index=True),
    Column("session_id", String(64), nullable=False),
    Column("request", Text, nullable=False),
    Column("domain", String(200), nullable=False),
    #: The whole discovery document as the model wrote it.
    Column("document", JSONB, nullable=False),
    Column("model", String(64)),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

plans = Table(
    "plans",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("discovery_id", ForeignKey("discoveries.id"), nullable=False),
    Column("user_id", String(64), nullable=False, index=True),
    Column("session_id", String(64), nullable=False),
    Column("project_name", String(200), nullable=False),
    Column("description", Text),
    Column("tech_stack", JSONB, nullable=False),
    Column("architecture_style", String(100)),
    Column("total_tasks", Integer, nullable=False),
    Column("estimated_cost_usd", Numeric(10, 2)),
    Column("estimated_duration_minutes", Integer),
    Column("status", String(16), nullable=False, server_default="generating"),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('generating', 'ready', 'failed')", name="status_known"),
)

plan_phases = Table(
    "plan_phases",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("plan_id", ForeignKey("plans.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text),
    UniqueConstraint("plan_id", "number"),
)

plan_milestones = Table(
    "plan_milestones",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("phase_id", ForeignKey("plan_phases.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text),
    Column("task_count", Integer, nullable=False),
    Column("scope", Text),
    UniqueConstraint("phase_id", "number"),
)

plan_tasks = Table(
    "plan_tasks",
    metadata,
    Column("plan_id", ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True),
    Column("task_number", Integer, primary_key=True),
    Column("milestone_id", ForeignKey("plan_milestones.id", ondelete="CASCADE"), nullable=False, index=True),
    #: Which generation call wrote the task.
    Column("batch", Integer, nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("complexity", String(10), nullable=False),
    #: Task numbers (in the same plan) this task depends on.
    Column("depends_on", ARRAY(Integer), nullable=False, server_default="{}"),
    Column("target_files", ARRAY(Text), nullable=False, server_default="{}"),
    Column("estimated_tokens", Integer),
)
