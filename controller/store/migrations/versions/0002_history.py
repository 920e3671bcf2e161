"""Call, offer and agent history, agent state changes, events outbox (issue: reporting API).

Revision ID: 0002_history
Revises: 0001_whatsapp
Create Date: 2026-11-25 17:52:48.450389
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_history"
down_revision = "0001_whatsapp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acd_agent_states",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("presence", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("misses", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_agent_states")),
        sa.UniqueConstraint("event_key", name=op.f("uq_acd_agent_states_event_key")),
    )
    with op.batch_alter_table("acd_agent_states", schema=None) as batch_op:
        batch_op.create_index("ix_acd_agent_states_agent_at", ["agent", "at"], unique=False)

    op.create_table(
        "acd_agents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("presence", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("misses", sa.Integer(), nullable=False),
        sa.Column("calls_taken", sa.Integer(), nullable=False),
        sa.Column("last_call_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_agents")),
    )
    op.create_table(
        "acd_calls",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("caller_number", sa.String(length=64), nullable=True),
        sa.Column("caller_name", sa.String(length=128), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("requeued", sa.Boolean(), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.String(length=64), nullable=True),
        sa.Column("hung_up_by", sa.String(length=16), nullable=True),
        sa.Column("overflowed", sa.Boolean(), nullable=True),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("wait", sa.Float(), nullable=True),
        sa.Column("talk", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_calls")),
    )
    with op.batch_alter_table("acd_calls", schema=None) as batch_op:
        batch_op.create_index("ix_acd_calls_agent", ["agent"], unique=False)
        batch_op.create_index("ix_acd_calls_arrived", ["arrived_at"], unique=False)
        batch_op.create_index("ix_acd_calls_queue_arrived", ["queue", "arrived_at"], unique=False)

    op.create_table(
        "acd_offers",
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.String(length=64), nullable=True),
        sa.Column("cause", sa.Integer(), nullable=True),
        sa.Column("tech_cause", sa.Integer(), nullable=True),
        sa.Column("ring_time", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_offers")),
    )
    with op.batch_alter_table("acd_offers", schema=None) as batch_op:
        batch_op.create_index("ix_acd_offers_agent_started", ["agent", "started_at"], unique=False)
        batch_op.create_index("ix_acd_offers_call", ["call_id"], unique=False)
        batch_op.create_index("ix_acd_offers_started", ["started_at"], unique=False)

    op.create_table(
        "acd_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acd_outbox")),
        sa.UniqueConstraint("event_key", name=op.f("uq_acd_outbox_event_key")),
    )
    with op.batch_alter_table("acd_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_acd_outbox_pending", ["delivered_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("acd_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_acd_outbox_pending")

    op.drop_table("acd_outbox")
    with op.batch_alter_table("acd_offers", schema=None) as batch_op:
        batch_op.drop_index("ix_acd_offers_started")
        batch_op.drop_index("ix_acd_offers_call")
        batch_op.drop_index("ix_acd_offers_agent_started")

    op.drop_table("acd_offers")
    with op.batch_alter_table("acd_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_acd_calls_queue_arrived")
        batch_op.drop_index("ix_acd_calls_arrived")
        batch_op.drop_index("ix_acd_calls_agent")

    op.drop_table("acd_calls")
    op.drop_table("acd_agents")
    with op.batch_alter_table("acd_agent_states", schema=None) as batch_op:
        batch_op.drop_index("ix_acd_agent_states_agent_at")

    op.drop_table("acd_agent_states")
