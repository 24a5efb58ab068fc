"""Record the LLM's token usage on discoveries and the generation cost on masterplans.

Revision ID: 20251112_0002_record_llm_usage_and_generation_cost
Revises: 20251104_0001_create_planning_schema_and_tables
Create Date: 2025-11-12 16:40:03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20251112_0002_record_llm_usage_and_generation_cost"
down_revision = "20251104_0001_create_planning_schema_and_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("discovery_documents", sa.Column("llm_input_tokens", sa.Integer(), nullable=True))
    op.add_column("discovery_documents", sa.Column("llm_output_tokens", sa.Integer(), nullable=True))
    op.add_column("masterplans", sa.Column("generation_cost_usd", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("masterplans", "generation_cost_usd")
    op.drop_column("discovery_documents", "llm_output_tokens")
    op.drop_column("discovery_documents", "llm_input_tokens")
