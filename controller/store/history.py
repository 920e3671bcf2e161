"""Call, offer and agent history tables (issue: keep every call, offer and agent change).

Rows are keyed by the engine's own ids (call id = the customer's channel id, offer id
``<call>-<n>``), so writing the same fact twice is an upsert of the same row: a batch retried
after a database outage can never duplicate anything. Append-only tables (agent state changes,
outbox) carry an ``event_key`` (writer run + sequence) with a unique constraint for the same reason.
Times are UTC datetimes (``DateTime(timezone=True)``); durations are seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base

__all__ = ["AgentRow", "AgentStateRow", "CallRow", "OfferRow", "OutboxRow", "as_utc"]


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AgentRow(Base):
    """An agent's latest runtime state (one row per agent)."""

    __tablename__ = "acd_agents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str | None] = mapped_column(String(32))  # ready, ringing, talking, paused, ...
    presence: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(200))
    misses: Mapped[int] = mapped_column(Integer, default=0)
    calls_taken: Mapped[int] = mapped_column(Integer, default=0)
    last_call_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallRow(Base):
    """One customer call, from arrival to its end."""

    __tablename__ = "acd_calls"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    queue: Mapped[str | None] = mapped_column(String(64))
    caller_number: Mapped[str | None] = mapped_column(String(64))
    caller_name: Mapped[str | None] = mapped_column(String(128))
    priority: Mapped[int | None] = mapped_column(Integer)
    requeued: Mapped[bool | None] = mapped_column(Boolean)
    arrived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(16))  # completed, abandoned, overflowed
    detail: Mapped[str | None] = mapped_column(String(64))  # overflow reason: max_wait, empty, ...
    hung_up_by: Mapped[str | None] = mapped_column(String(16))  # caller, agent
    overflowed: Mapped[bool | None] = mapped_column(Boolean)
    agent: Mapped[str | None] = mapped_column(String(64))
    wait: Mapped[float | None] = mapped_column(Float)
    talk: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_acd_calls_queue_arrived", "queue", "arrived_at"),
        Index("ix_acd_calls_arrived", "arrived_at"),
        Index("ix_acd_calls_agent", "agent"),
    )


class OfferRow(Base):
    """One attempt to give a call to one agent."""

    __tablename__ = "acd_offers"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128))
    queue: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # rang
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(16))  # accepted, rejected, busy, no_answer, ...
    detail: Mapped[str | None] = mapped_column(String(64))
    cause: Mapped[int | None] = mapped_column(Integer)
    tech_cause: Mapped[int | None] = mapped_column(Integer)
    ring_time: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index("ix_acd_offers_call", "call_id"),
        Index("ix_acd_offers_agent_started", "agent", "started_at"),
        Index("ix_acd_offers_started", "started_at"),
    )


class AgentStateRow(Base):
    """Every agent state change with its reason (append-only)."""

    __tablename__ = "acd_agent_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(String(64), unique=True)
    agent: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    presence: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(200))
    misses: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    by: Mapped[str | None] = mapped_column(String(80))  # "supervisor:ID", "admin", ... for API actions

    __table_args__ = (Index("ix_acd_agent_states_agent_at", "agent", "at"),)


class OutboxRow(Base):
    """An outgoing event (webhook) written with the history it describes, delivered at least once."""

    __tablename__ = "acd_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_acd_outbox_pending", "delivered_at", "id"),)


def utcnow() -> datetime:
    return datetime.now(UTC)
