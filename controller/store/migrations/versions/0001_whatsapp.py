"""WhatsApp sidecar tables (issue 5): inbox, conversations, messages, statuses, alerts, change log.

Revision ID: 0001_whatsapp
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_whatsapp"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wa_changes",
        sa.Column("cursor", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("cursor", name=op.f("pk_wa_changes")),
    )
    op.create_index(op.f("ix_wa_changes_conversation_id"), "wa_changes", ["conversation_id"], unique=False)

    op.create_table(
        "wa_channel_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("phone_number_id", sa.String(length=64), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("retry_class", sa.String(length=2), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("href", sa.Text(), nullable=True),
        sa.Column("fbtrace_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wa_channel_alerts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_wa_channel_alerts_dedupe_key")),
    )
    op.create_table(
        "wa_conversations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("phone_number_id", sa.String(length=64), nullable=False),
        sa.Column("customer_key", sa.String(length=160), nullable=False),
        sa.Column("wa_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=128), nullable=True),
        sa.Column("username", sa.String(length=128), nullable=True),
        sa.Column("display_name", sa.String(length=256), nullable=True),
        sa.Column("assigned_agent", sa.String(length=64), nullable=True),
        sa.Column("last_inbound_at", sa.Float(), nullable=True),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("last_cursor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wa_conversations")),
        sa.UniqueConstraint(
            "phone_number_id", "customer_key", name=op.f("uq_wa_conversations_phone_number_id_customer_key")
        ),
    )
    op.create_index(
        op.f("ix_wa_conversations_assigned_agent"), "wa_conversations", ["assigned_agent"], unique=False
    )

    counters = op.create_table(
        "wa_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_wa_counters")),
    )
    op.bulk_insert(counters, [{"name": "cursor", "value": 0}, {"name": "relay_cursor", "value": 0}])
    op.create_table(
        "wa_orphan_statuses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wamid", sa.String(length=255), nullable=False),
        sa.Column("dedupe_key", sa.String(length=400), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wa_orphan_statuses")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_wa_orphan_statuses_dedupe_key")),
    )
    op.create_index(
        op.f("ix_wa_orphan_statuses_received_at"), "wa_orphan_statuses", ["received_at"], unique=False
    )
    op.create_index(op.f("ix_wa_orphan_statuses_wamid"), "wa_orphan_statuses", ["wamid"], unique=False)

    op.create_table(
        "wa_webhook_inbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("processed_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wa_webhook_inbox")),
        sa.UniqueConstraint("body_sha256", name=op.f("uq_wa_webhook_inbox_body_sha256")),
    )
    op.create_index(
        op.f("ix_wa_webhook_inbox_processed_at"), "wa_webhook_inbox", ["processed_at"], unique=False
    )

    op.create_table(
        "wa_messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_ts", sa.Float(), nullable=False),
        sa.Column("wamid", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("content", sa.JSON(), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_ts", sa.Float(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_title", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_details", sa.Text(), nullable=True),
        sa.Column("error_href", sa.Text(), nullable=True),
        sa.Column("error_fbtrace_id", sa.String(length=128), nullable=True),
        sa.Column("error_ts", sa.Float(), nullable=True),
        sa.Column("error_source", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Boolean(), nullable=False),
        sa.Column("last_cursor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["wa_conversations.id"],
            name=op.f("fk_wa_messages_conversation_id_wa_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wa_messages")),
        sa.UniqueConstraint("conversation_id", "seq", name=op.f("uq_wa_messages_conversation_id_seq")),
        sa.UniqueConstraint("wamid", name=op.f("uq_wa_messages_wamid")),
    )
    op.create_index(
        "ix_wa_messages_conv_cursor", "wa_messages", ["conversation_id", "last_cursor"], unique=False
    )
    op.create_index(
        "ix_wa_messages_order", "wa_messages", ["conversation_id", "event_ts", "seq"], unique=False
    )

    op.create_table(
        "wa_status_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_title", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_details", sa.Text(), nullable=True),
        sa.Column("error_href", sa.Text(), nullable=True),
        sa.Column("error_fbtrace_id", sa.String(length=128), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["wa_messages.id"], name=op.f("fk_wa_status_history_message_id_wa_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wa_status_history")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_wa_status_history_dedupe_key")),
    )
    op.create_index(
        op.f("ix_wa_status_history_message_id"), "wa_status_history", ["message_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_wa_status_history_message_id"), table_name="wa_status_history")

    op.drop_table("wa_status_history")
    op.drop_index("ix_wa_messages_order", table_name="wa_messages")
    op.drop_index("ix_wa_messages_conv_cursor", table_name="wa_messages")

    op.drop_table("wa_messages")
    op.drop_index(op.f("ix_wa_webhook_inbox_processed_at"), table_name="wa_webhook_inbox")

    op.drop_table("wa_webhook_inbox")
    op.drop_index(op.f("ix_wa_orphan_statuses_wamid"), table_name="wa_orphan_statuses")
    op.drop_index(op.f("ix_wa_orphan_statuses_received_at"), table_name="wa_orphan_statuses")

    op.drop_table("wa_orphan_statuses")
    op.drop_table("wa_counters")
    op.drop_index(op.f("ix_wa_conversations_assigned_agent"), table_name="wa_conversations")

    op.drop_table("wa_conversations")
    op.drop_table("wa_channel_alerts")
    op.drop_index(op.f("ix_wa_changes_conversation_id"), table_name="wa_changes")

    op.drop_table("wa_changes")
