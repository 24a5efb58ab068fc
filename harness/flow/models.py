"""SQLAlchemy 2 models for the seed's tables.

``discovery_documents`` → ``masterplans`` → ``masterplan_phases`` →
``masterplan_milestones`` → ``masterplan_tasks``, plus ``masterplan_task_dependencies``
(task → task it depends on). The migration in ``harness/flow/migrations`` creates
exactly these; the db probe compares a live database against this metadata.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "DiscoveryDocument",
    "MasterPlan",
    "MasterPlanMilestone",
    "MasterPlanPhase",
    "MasterPlanStatus",
    "MasterPlanTask",
    "metadata",
    "task_dependencies",
]

#: Constraint names are predictable so migrations and drift reports can name them.
metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now())


class MasterPlanStatus(str, enum.Enum):
    """Where a masterplan is in its life."""

    #: Being generated; not complete, must not be used.
    GENERATING = "generating"
    #: Complete and saved, waiting for approval.
    DRAFT = "draft"
    #: Approved by the user.
    APPROVED = "approved"
    #: Tasks are being executed.
    IN_PROGRESS = "in_progress"
    #: Every task done.
    COMPLETED = "completed"
    #: Generation failed; ``error_message`` says why.
    FAILED = "failed"
    #: Abandoned by the user.
    CANCELLED = "cancelled"


class DiscoveryDocument(Base):
    """A domain-driven discovery produced from one user request."""

    __tablename__ = "discovery_documents"

    discovery_id: Mapped[uuid.UUID] = _uuid_pk()
    session_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    user_request: Mapped[str] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(String(255))
    bounded_contexts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    aggregates: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    value_objects: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    domain_events: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    services: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    assumptions: Mapped[list[str] | None] = mapped_column(JSONB)
    risks: Mapped[list[str] | None] = mapped_column(JSONB)
    llm_model: Mapped[str | None] = mapped_column(String(100))
    llm_cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 6))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    masterplans: Mapped[list[MasterPlan]] = relationship(back_populates="discovery")

    def __repr__(self) -> str:
        return f"<DiscoveryDocument {self.discovery_id} domain={self.domain!r}>"


class MasterPlan(Base):
    """A plan of phases, milestones and tasks built from one discovery."""

    __tablename__ = "masterplans"

    masterplan_id: Mapped[uuid.UUID] = _uuid_pk()
    discovery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("discovery_documents.discovery_id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    project_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[MasterPlanStatus] = mapped_column(
        Enum(
            MasterPlanStatus,
            name="masterplan_status",
            values_callable=lambda members: [member.value for member in members],
        ),
        default=MasterPlanStatus.GENERATING,
    )
    error_message: Mapped[str | None] = mapped_column(Text)
    tech_stack: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    architecture_style: Mapped[str | None] = mapped_column(String(100))
    total_tasks: Mapped[int] = mapped_column(Integer, default=0)
    total_phases: Mapped[int] = mapped_column(Integer, default=0)
    total_milestones: Mapped[int] = mapped_column(Integer, default=0)
    llm_model: Mapped[str | None] = mapped_column(String(100))
    generation_cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 6))
    estimated_cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    estimated_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    #: ``"batched"`` or ``"single"``: how the plan was generated.
    generation_mode: Mapped[str | None] = mapped_column(String(20))
    #: The skeleton (phases, milestones, task counts) a batched plan is filled from; kept for resuming.
    skeleton: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: Batches the plan is generated in, and how many of them are committed.
    batches_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    batches_committed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The batch whose generation failed (status ``failed``); ``None`` otherwise.
    failed_batch: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    discovery: Mapped[DiscoveryDocument] = relationship(back_populates="masterplans")
    phases: Mapped[list[MasterPlanPhase]] = relationship(
        back_populates="masterplan", cascade="all, delete-orphan", order_by="MasterPlanPhase.phase_number"
    )
    tasks: Mapped[list[MasterPlanTask]] = relationship(
        back_populates="masterplan", cascade="all, delete-orphan", order_by="MasterPlanTask.task_number"
    )

    def __repr__(self) -> str:
        return f"<MasterPlan {self.masterplan_id} {self.project_name!r} status={self.status.value}>"


class MasterPlanPhase(Base):
    """A phase of a masterplan."""

    __tablename__ = "masterplan_phases"
    __table_args__ = (UniqueConstraint("masterplan_id", "phase_number"),)

    phase_id: Mapped[uuid.UUID] = _uuid_pk()
    masterplan_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("masterplans.masterplan_id", ondelete="CASCADE"), index=True
    )
    phase_number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()

    masterplan: Mapped[MasterPlan] = relationship(back_populates="phases")
    milestones: Mapped[list[MasterPlanMilestone]] = relationship(
        back_populates="phase", cascade="all, delete-orphan", order_by="MasterPlanMilestone.milestone_number"
    )

    def __repr__(self) -> str:
        return f"<MasterPlanPhase {self.phase_number} {self.name!r}>"


class MasterPlanMilestone(Base):
    """A milestone inside a phase."""

    __tablename__ = "masterplan_milestones"
    __table_args__ = (UniqueConstraint("phase_id", "milestone_number"),)

    milestone_id: Mapped[uuid.UUID] = _uuid_pk()
    phase_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("masterplan_phases.phase_id", ondelete="CASCADE"), index=True
    )
    milestone_number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()

    phase: Mapped[MasterPlanPhase] = relationship(back_populates="milestones")
    tasks: Mapped[list[MasterPlanTask]] = relationship(
        back_populates="milestone", order_by="MasterPlanTask.task_number"
    )

    def __repr__(self) -> str:
        return f"<MasterPlanMilestone {self.milestone_number} {self.name!r}>"


task_dependencies = Table(
    "masterplan_task_dependencies",
    metadata,
    Column("task_id", UUID(as_uuid=True), ForeignKey("masterplan_tasks.task_id", ondelete="CASCADE"), primary_key=True),
    Column(
        "depends_on_task_id",
        UUID(as_uuid=True),
        ForeignKey("masterplan_tasks.task_id", ondelete="CASCADE"),
        primary_key=True,
    ),
)


class MasterPlanTask(Base):
    """One atomic task; ``task_number`` is unique within its masterplan."""

    __tablename__ = "masterplan_tasks"
    __table_args__ = (UniqueConstraint("masterplan_id", "task_number"),)

    task_id: Mapped[uuid.UUID] = _uuid_pk()
    masterplan_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("masterplans.masterplan_id", ondelete="CASCADE"), index=True
    )
    milestone_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("masterplan_milestones.milestone_id", ondelete="CASCADE"), index=True
    )
    task_number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    complexity: Mapped[str] = mapped_column(String(20), default="medium")
    target_files: Mapped[list[str]] = mapped_column(JSONB, default=list)
    estimated_tokens: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    #: The batch that generated the task (batched mode); ``None`` for a single-call plan.
    batch_number: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()

    masterplan: Mapped[MasterPlan] = relationship(back_populates="tasks")
    milestone: Mapped[MasterPlanMilestone] = relationship(back_populates="tasks")
    depends_on: Mapped[list[MasterPlanTask]] = relationship(
        secondary=task_dependencies,
        primaryjoin=lambda: MasterPlanTask.task_id == task_dependencies.c.task_id,
        secondaryjoin=lambda: MasterPlanTask.task_id == task_dependencies.c.depends_on_task_id,
    )

    def __repr__(self) -> str:
        return f"<MasterPlanTask {self.task_number} {self.title!r}>"
