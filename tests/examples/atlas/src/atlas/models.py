"""Discovery documents and masterplans (phases, milestones, tasks).

Statuses are native PostgreSQL enums holding the Python enums' *names* (``'DRAFT'``),
SQLAlchemy's default for ``Enum(PlanStatus)``. A task's dependencies are a JSON list of
the ``task_id`` strings of the tasks it depends on.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from atlas.db import Base

__all__ = [
    "DiscoveryDocument",
    "MasterPlan",
    "MasterPlanMilestone",
    "MasterPlanPhase",
    "MasterPlanTask",
    "PlanStatus",
    "TaskComplexity",
    "TaskStatus",
]


class PlanStatus(str, enum.Enum):
    DRAFT = "draft"
    GENERATING = "generating"
    APPROVED = "approved"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class TaskStatus(str, enum.Enum):
    PENDING = "pending"
    READY = "ready"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class TaskComplexity(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class DiscoveryDocument(Base):
    __tablename__ = "discovery_documents"

    discovery_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[str] = mapped_column(String(100), index=True)
    user_id: Mapped[str] = mapped_column(String(100), index=True)
    user_request: Mapped[str] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(String(200))
    bounded_contexts: Mapped[list[Any]] = mapped_column(JSONB)
    aggregates: Mapped[list[Any]] = mapped_column(JSONB)
    value_objects: Mapped[list[Any]] = mapped_column(JSONB)
    domain_events: Mapped[list[Any]] = mapped_column(JSONB)
    services: Mapped[list[Any]] = mapped_column(JSONB)
    assumptions: Mapped[list[Any] | None] = mapped_column(JSONB)
    risks: Mapped[list[Any] | None] = mapped_column(JSONB)
    llm_model: Mapped[str | None] = mapped_column(String(100))
    llm_cost_usd: Mapped[float | None] = mapped_column(Float)
    llm_input_tokens: Mapped[int | None] = mapped_column(Integer)
    llm_output_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    masterplans: Mapped[list[MasterPlan]] = relationship(back_populates="discovery")

    def __repr__(self) -> str:
        return f"<DiscoveryDocument {self.discovery_id} {self.domain!r}>"


class MasterPlan(Base):
    __tablename__ = "masterplans"

    masterplan_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    discovery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("discovery_documents.discovery_id"))
    session_id: Mapped[str] = mapped_column(String(100), index=True)
    user_id: Mapped[str] = mapped_column(String(100), index=True)
    project_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[PlanStatus] = mapped_column(Enum(PlanStatus), default=PlanStatus.DRAFT)
    tech_stack: Mapped[dict[str, Any]] = mapped_column(JSONB)
    architecture_style: Mapped[str | None] = mapped_column(String(100))
    total_tasks: Mapped[int] = mapped_column(Integer)
    total_phases: Mapped[int | None] = mapped_column(Integer)
    total_milestones: Mapped[int | None] = mapped_column(Integer)
    llm_model: Mapped[str | None] = mapped_column(String(100))
    generation_cost_usd: Mapped[float | None] = mapped_column(Float)
    estimated_cost_usd: Mapped[float | None] = mapped_column(Float)
    estimated_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    discovery: Mapped[DiscoveryDocument] = relationship(back_populates="masterplans")
    phases: Mapped[list[MasterPlanPhase]] = relationship(
        back_populates="masterplan", cascade="all, delete-orphan", order_by="MasterPlanPhase.phase_number"
    )

    def __repr__(self) -> str:
        return f"<MasterPlan {self.masterplan_id} {self.project_name!r} {self.status.name}>"


class MasterPlanPhase(Base):
    __tablename__ = "masterplan_phases"

    phase_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    masterplan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("masterplans.masterplan_id", ondelete="CASCADE"))
    phase_number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)

    masterplan: Mapped[MasterPlan] = relationship(back_populates="phases")
    milestones: Mapped[list[MasterPlanMilestone]] = relationship(
        back_populates="phase", cascade="all, delete-orphan", order_by="MasterPlanMilestone.milestone_number"
    )

    def __repr__(self) -> str:
        return f"<MasterPlanPhase {self.phase_number} {self.name!r}>"


class MasterPlanMilestone(Base):
    __tablename__ = "masterplan_milestones"

    milestone_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    masterplan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("masterplans.masterplan_id", ondelete="CASCADE"))
    phase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("masterplan_phases.phase_id", ondelete="CASCADE"))
    milestone_number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)

    phase: Mapped[MasterPlanPhase] = relationship(back_populates="milestones")
    tasks: Mapped[list[MasterPlanTask]] = relationship(
        back_populates="milestone", cascade="all, delete-orphan", order_by="MasterPlanTask.task_number"
    )

    def __repr__(self) -> str:
        return f"<MasterPlanMilestone {self.milestone_number} {self.name!r}>"


class MasterPlanTask(Base):
    __tablename__ = "masterplan_tasks"
    __table_args__ = (
        UniqueConstraint("masterplan_id", "task_number", name="uq_masterplan_tasks_plan_number"),
        Index("ix_masterplan_tasks_milestone_id", "milestone_id"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    masterplan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("masterplans.masterplan_id", ondelete="CASCADE"))
    phase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("masterplan_phases.phase_id", ondelete="CASCADE"))
    milestone_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("masterplan_milestones.milestone_id", ondelete="CASCADE")
    )
    task_number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    complexity: Mapped[TaskComplexity] = mapped_column(Enum(TaskComplexity))
    status: Mapped[TaskStatus] = mapped_column(Enum(TaskStatus), default=TaskStatus.PENDING)
    #: ``task_id`` strings of the tasks this one depends on.
    depends_on_tasks: Mapped[list[str]] = mapped_column(JSON, default=list)
    target_files: Mapped[list[str] | None] = mapped_column(JSONB)
    estimated_tokens: Mapped[int | None] = mapped_column(Integer)

    phase: Mapped[MasterPlanPhase] = relationship()
    milestone: Mapped[MasterPlanMilestone] = relationship(back_populates="tasks")

    def __repr__(self) -> str:
        return f"<MasterPlanTask {self.task_number} {self.name!r}>"
