"""WhatsApp tables. Hot paths use Core statements on ``Model.__table__`` (set-based, fast).

``wa_changes`` is the change log: one row per visible change with a gap-free cursor taken from
``wa_counters`` inside the writing transaction. It feeds the live stream's resume
(``?after=<cursor>``) and doubles as the outbox of the outgoing webhook.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base

__all__ = [
    "ChannelAlert",
    "Change",
    "Conversation",
    "Counter",
    "Message",
    "OrphanStatus",
    "StatusHistory",
    "WebhookInbox",
]


class WebhookInbox(Base):
    """Raw signed webhook bodies, stored before answering 200 and processed from here."""

    __tablename__ = "wa_webhook_inbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    body_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[float] = mapped_column(Float)
    processed_at: Mapped[float | None] = mapped_column(Float, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[float | None] = mapped_column(Float)  # after a processing failure (backoff)
    last_error: Mapped[str | None] = mapped_column(Text)


class Conversation(Base):
    """One customer on one business number."""

    __tablename__ = "wa_conversations"
    __table_args__ = (UniqueConstraint("phone_number_id", "customer_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    phone_number_id: Mapped[str] = mapped_column(String(64))
    customer_key: Mapped[str] = mapped_column(String(160))  # wa_id, else "user:<user_id>"
    wa_id: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(256))
    assigned_agent: Mapped[str | None] = mapped_column(String(64), index=True)
    last_inbound_at: Mapped[float | None] = mapped_column(Float)
    next_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[float] = mapped_column(Float)


class Message(Base):
    """Inbound and outbound chat messages; ``id`` is ours (and the send's biz_opaque_callback_data)."""

    __tablename__ = "wa_messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq"),
        Index("ix_wa_messages_order", "conversation_id", "event_ts", "seq"),
        Index("ix_wa_messages_conv_cursor", "conversation_id", "last_cursor"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("wa_conversations.id"))
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    seq: Mapped[int] = mapped_column(Integer)  # per-conversation arrival sequence (tie-breaker)
    event_ts: Mapped[float] = mapped_column(Float)  # Meta's timestamp (in) / send time (out)
    wamid: Mapped[str | None] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[str | None] = mapped_column(Text)
    content: Mapped[dict | None] = mapped_column(JSON)
    agent_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    status_ts: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_details: Mapped[str | None] = mapped_column(Text)
    error_href: Mapped[str | None] = mapped_column(Text)
    error_fbtrace_id: Mapped[str | None] = mapped_column(String(128))
    error_ts: Mapped[float | None] = mapped_column(Float)
    error_source: Mapped[str | None] = mapped_column(String(16))  # webhook | send | local
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    in_flight: Mapped[bool] = mapped_column(Boolean, default=False)
    last_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class StatusHistory(Base):
    """Every distinct status report of an outbound message, failures with all their fields."""

    __tablename__ = "wa_status_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("wa_messages.id"), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    ts: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))  # webhook | send | local
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_title: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_details: Mapped[str | None] = mapped_column(Text)
    error_href: Mapped[str | None] = mapped_column(Text)
    error_fbtrace_id: Mapped[str | None] = mapped_column(String(128))
    raw: Mapped[dict | None] = mapped_column(JSON)
    recorded_at: Mapped[float] = mapped_column(Float)


class OrphanStatus(Base):
    """A status for a wamid we don't know yet (it beat the send response); applied later or expired."""

    __tablename__ = "wa_orphan_statuses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wamid: Mapped[str] = mapped_column(String(255), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(400), unique=True)
    raw: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[float] = mapped_column(Float, index=True)


class ChannelAlert(Base):
    """Account/channel problems for admins (token expired, account locked, value.errors, ...)."""

    __tablename__ = "wa_channel_alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    phone_number_id: Mapped[str | None] = mapped_column(String(64))
    code: Mapped[int | None] = mapped_column(Integer)
    retry_class: Mapped[str] = mapped_column(String(2))
    source: Mapped[str] = mapped_column(String(16))  # webhook | send
    title: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str | None] = mapped_column(Text)
    href: Mapped[str | None] = mapped_column(Text)
    fbtrace_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)


class Change(Base):
    """The change log (cursor order == commit order); what the stream pushes and the outbox forwards."""

    __tablename__ = "wa_changes"
    cursor: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    conversation_id: Mapped[int | None] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)


class Counter(Base):
    """Named counters; ``cursor`` hands out change cursors (its row lock orders concurrent writers)."""

    __tablename__ = "wa_counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
