"""The planner's models: plans, their tasks and tags."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
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
    Uuid,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

metadata = MetaData()


class Base(DeclarativeBase):
    metadata = metadata


class TaskStatus(enum.Enum):
    PENDING = "pending"
    IN_PROGRESS = "in progress"
    DONE = "done"


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str | None] = mapped_column(String)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    budget: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id"))
    title: Mapped[str] = mapped_column("name", Text)
    status: Mapped[TaskStatus] = mapped_column(Enum(TaskStatus, name="task_status"))
    position: Mapped[int] = mapped_column(Integer)
    estimate_hours: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


plan_tags = Table(
    "plan_tags",
    metadata,
    Column("plan_id", Uuid, ForeignKey("plans.id"), primary_key=True),
    Column("tag", String(50), primary_key=True),
    schema="planning",
)
