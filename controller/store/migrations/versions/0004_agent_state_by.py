"""Who changed an agent's state from the API or the wallboard (``acd_agent_states.by``).

Revision ID: 0004_agent_state_by
Revises: 0003_agent_presence
Create Date: 2026-12-04 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_agent_state_by"
down_revision = "0003_agent_presence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("acd_agent_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("by", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("acd_agent_states", schema=None) as batch_op:
        batch_op.drop_column("by")
