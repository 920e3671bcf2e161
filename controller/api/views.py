"""What an agent sees, built from the engine's live state: the agent, its offer card, its call.

Shared by the HTTP API (``GET /api/agents/{id}``) and the panel's live stream, so the page
shows exactly what the API answers. Times are ISO UTC strings made by ``wall`` (engine clock
time -> wall time). Pure functions of engine state: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.acd.engine import LIVE_OFFER_STATES, Engine, Offer

if TYPE_CHECKING:
    from controller.clock import Clock

__all__ = ["agent_view", "call_view", "offer_card", "wall_for"]

Wall = Callable[[float | None], str | None]


def wall_for(clock: Clock) -> Wall:
    """Engine clock time -> ISO UTC as people read it (the demo's fast clock included)."""

    def wall(at: float | None) -> str | None:
        if at is None or at != at or at in (float("inf"), float("-inf")):
            return None
        when = datetime.fromtimestamp(clock.to_wall(at), UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return wall

_CRM_OFF: Mapping[str, Any] = {"status": "off", "data": None, "error": None}


def offer_card(
    engine: Engine, offer: Offer, wall: Wall, crm: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The card an agent gets for an offer: who is waiting, where, since when, who had it before."""
    call = engine.calls.get(offer.call_id)
    queue = engine.setup.queues.get(call.queue) if call is not None else None
    previous = []
    if call is not None:
        # the call's history of ended offers, without this agent's own current one
        previous = [{"agent": agent, "outcome": outcome} for agent, outcome in call.history]
    return {
        "id": offer.id,
        "call_id": offer.call_id,
        "agent_id": offer.agent_id,
        "state": offer.state.value,
        "acceptance": queue.acceptance.value if queue is not None else None,
        "queue": call.queue if call is not None else None,
        "caller_number": call.caller_number if call is not None else None,
        "caller_name": call.caller_name if call is not None else None,
        "priority": call.priority if call is not None else 0,
        "arrived_at": wall(call.arrived_at) if call is not None else None,
        "started_at": wall(offer.started_at),
        "expires_at": wall(offer.ring_deadline),
        "ring_timeout": round(offer.ring_deadline - offer.started_at, 3),
        "previous_offers": previous,
        "info": dict(call.info) if call is not None else {},
        "crm": dict(crm or _CRM_OFF),
    }


def call_view(engine: Engine, call_id: str | None, wall: Wall) -> dict[str, Any] | None:
    call = engine.calls.get(call_id) if call_id else None
    if call is None:
        return None
    return {
        "id": call.id,
        "queue": call.queue,
        "caller_number": call.caller_number,
        "caller_name": call.caller_name,
        "info": dict(call.info),
        "arrived_at": wall(call.arrived_at),
        "connected_at": wall(call.connected_at),
    }


def live_offer(engine: Engine, agent_id: str) -> Offer | None:
    agent = engine.agents[agent_id]
    offer = engine.offers.get(agent.live_offer) if agent.live_offer else None
    return offer if offer is not None and offer.state in LIVE_OFFER_STATES else None


def agent_view(
    engine: Engine, agent_id: str, wall: Wall, crm: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The agent's state in one word plus everything the panel's state bar shows."""
    agent = engine.agents[agent_id]
    offer = live_offer(engine, agent_id)
    return {
        "id": agent.id,
        "name": agent.name,
        "endpoint": agent.endpoint,
        "state": agent.status,
        "presence": agent.presence.value,
        "pause_reason": agent.pause_reason or None,
        "reachable": agent.reachable,
        "misses": agent.misses,
        "calls_taken": agent.calls_taken,
        "queues": dict(agent.penalties),
        "call": agent.call,
        "wrapup_until": wall(agent.wrapup_until) if agent.in_wrapup else None,
        "offer": offer_card(engine, offer, wall, crm) if offer is not None else None,
    }
