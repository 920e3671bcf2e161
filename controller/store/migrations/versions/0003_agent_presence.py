"""Agent state that survives a restart: presence with its reason, misses, wrap-up end.

Revision ID: 0003_agent_presence
Revises: 0002_history
Create Date: 2026-12-04 18:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_agent_presence"
down_revision = "0002_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acd_agent_presence",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("presence", sa.String(length=32), nullable=False),
        sa.Column("pause_reason", sa.String(length=200), nullable=True),
        sa.Column("misses", sa.Integer(), nullable=False),
        sa.Column("wrapup_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_agent_presence")),
    )


def downgrade() -> None:
    op.drop_table("acd_agent_presence")
