"""Hot standby: the lease row that names the one active controller of an ARI app.

Revision ID: 0005_ha_lease
Revises: 0004_agent_state_by
Create Date: 2026-12-04 19:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_ha_lease"
down_revision = "0004_agent_state_by"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acd_ha_lease",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_acd_ha_lease")),
    )


def downgrade() -> None:
    op.drop_table("acd_ha_lease")
