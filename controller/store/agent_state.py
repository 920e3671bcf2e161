"""What a restart must not forget about each agent: presence (with its reason), misses, wrap-up end.

One row per agent (``acd_agent_presence``), upserted by the history writer from every engine
``agent.state`` record, so it is as current as the history and survives a database outage the
same way (buffered, written when the database is back). At start ``load_agent_states`` reads it
and ``restore_events`` turns it into engine events for the agents of the current queue file, before
the first ARI event: an agent the store has never seen keeps the queue file's ``state``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from controller.acd import events as ev
from controller.store.base import Base
from controller.store.engine import reading, writing
from controller.store.history import as_utc

__all__ = ["AgentPresenceRow", "StoredAgentState", "load_agent_states", "restore_events", "save_first_seen"]


class AgentPresenceRow(Base):
    """An agent's restorable state (latest ``agent.state`` record)."""

    __tablename__ = "acd_agent_presence"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # agent id
    presence: Mapped[str] = mapped_column(String(32))  # available, paused, logged_out, not_responding
    pause_reason: Mapped[str | None] = mapped_column(String(200))
    misses: Mapped[int] = mapped_column(Integer, default=0)
    wrapup_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class StoredAgentState:
    agent: str
    presence: str
    pause_reason: str
    misses: int
    wrapup_until: datetime | None


async def load_agent_states(db: AsyncEngine) -> list[StoredAgentState]:
    """Every agent the store has seen (raises if the database is unreachable)."""
    table = AgentPresenceRow.__table__
    async with reading(db) as conn:
        rows = (await conn.execute(select(table).order_by(table.c.id))).mappings().all()
    return [
        StoredAgentState(
            r["id"], r["presence"], r["pause_reason"] or "", r["misses"] or 0, as_utc(r["wrapup_until"])
        )
        for r in rows
    ]


def restore_events(
    stored: Iterable[StoredAgentState], agents: Iterable[str], epoch: float
) -> list[ev.AgentStateRestored]:
    """Engine events for the configured ``agents`` the store knows. Wall times -> engine times:
    engine time ``at`` is wall time ``epoch + at``, as the history writer stores it."""
    known = set(agents)
    return [
        ev.AgentStateRestored(
            s.agent,
            s.presence,
            s.pause_reason,
            s.misses,
            None if s.wrapup_until is None else s.wrapup_until.timestamp() - epoch,
        )
        for s in stored
        if s.agent in known
    ]


async def save_first_seen(db: AsyncEngine, snapshots: Iterable[Mapping[str, Any]]) -> int:
    """Remember the queue-file state of agents the store has never seen (``Engine.agent_snapshot``
    of each), so that state is their first one only: a later file change does not override what
    they became. A row written meanwhile by the history writer wins. Returns the rows offered."""
    rows = [
        {
            "id": snap["agent"],
            "presence": snap["presence"],
            "pause_reason": snap["pause_reason"] or None,
            "misses": snap["misses"],
            "wrapup_until": None,
            "updated_at": datetime.now(UTC),
        }
        for snap in snapshots
    ]
    if rows:
        table = AgentPresenceRow.__table__
        insert = postgresql.insert if db.dialect.name == "postgresql" else sqlite.insert
        async with writing(db) as conn:
            await conn.execute(insert(table).on_conflict_do_nothing(index_elements=["id"]), rows)
    return len(rows)
