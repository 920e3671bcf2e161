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
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from controller.acd import events as ev
from controller.store.base import Base
from controller.store.engine import reading
from controller.store.history import as_utc

__all__ = ["AgentPresenceRow", "StoredAgentState", "load_agent_states", "restore_events"]


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
    stored: Iterable[StoredAgentState], agents: Mapping[str, Any], epoch: float
) -> list[ev.AgentStateRestored]:
    """Engine events for the configured ``agents`` (id -> engine agent): the stored state of
    those the store knows; the queue file's state, recorded as such, for the others (so the
    store has seen them from now on). Wall times -> engine times: engine time ``at`` is wall
    time ``epoch + at``, as the history writer stores it."""
    seen = {s.agent: s for s in stored}
    events = []
    for agent_id, agent in agents.items():
        s = seen.get(agent_id)
        if s is None:
            presence = getattr(agent.presence, "value", agent.presence)
            events.append(ev.AgentStateRestored(agent_id, presence, reason="queue_file"))
            continue
        wrapup = None if s.wrapup_until is None else s.wrapup_until.timestamp() - epoch
        events.append(ev.AgentStateRestored(agent_id, s.presence, s.pause_reason, s.misses, wrapup))
    return events
