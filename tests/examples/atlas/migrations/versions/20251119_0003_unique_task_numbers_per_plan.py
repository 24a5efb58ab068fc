"""Task numbers are unique within a plan; tasks are looked up by milestone.

Revision ID: 20251119_0003_unique_task_numbers_per_plan
Revises: 20251112_0002_record_llm_usage_and_generation_cost
Create Date: 2025-11-19 11:05:27
"""

from __future__ import annotations

from alembic import op

revision = "20251119_0003_unique_task_numbers_per_plan"
down_revision = "20251112_0002_record_llm_usage_and_generation_cost"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_unique_constraint("uq_masterplan_tasks_plan_number", "masterplan_tasks", ["masterplan_id", "task_number"])
    op.create_index("ix_masterplan_tasks_milestone_id", "masterplan_tasks", ["milestone_id"])


def downgrade() -> None:
    op.drop_index("ix_masterplan_tasks_milestone_id", table_name="masterplan_tasks")
    op.drop_constraint("uq_masterplan_tasks_plan_number", "masterplan_tasks", type_="unique")
