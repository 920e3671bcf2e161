"""What the wallboard shows, built from the engine's live state: one view per queue and per agent.

Pure functions of engine state (no I/O), like :mod:`controller.api.views`. Views are built once
per change for everyone; :func:`scoped_agent` then hides what a supervisor of other queues must
not see (a call of a queue it does not supervise, memberships there).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controller.acd.engine import LIVE_OFFER_STATES, CallState, Engine, Presence

__all__ = ["agent_view", "member_ids", "queue_views", "scoped_agent"]

Wall = Callable[[float | None], str | None]
_WAITING = (CallState.WAITING, CallState.OFFERING)


def _caller(engine: Engine, call_id: str | None, wall: Wall, at: float | None) -> dict[str, Any] | None:
    call = engine.calls.get(call_id) if call_id else None
    if call is None:
        return None
    return {
        "id": call.id,
        "queue": call.queue,
        "caller_number": call.caller_number,
        "caller_name": call.caller_name,
        "since": wall(at),
    }


def agent_view(engine: Engine, agent_id: str, wall: Wall, since: str | None) -> dict[str, Any]:
    """An agent's row: state and since when, pause reason, calls taken, who is on the line or ringing."""
    agent = engine.agents[agent_id]
    offer = engine.offers.get(agent.live_offer) if agent.live_offer else None
    if offer is not None and offer.state not in LIVE_OFFER_STATES:
        offer = None
    call = engine.calls.get(agent.call) if agent.call else None
    return {
        "id": agent.id,
        "name": agent.name,
        "queues": sorted(agent.penalties),
        "state": agent.status,
        "since": since,
        "pause_reason": agent.pause_reason or None,
        "calls_taken": agent.calls_taken,
        "misses": agent.misses,
        "not_responding": agent.presence is Presence.NOT_RESPONDING,
        "reachable": agent.reachable,
        "call": _caller(engine, agent.call, wall, call.connected_at if call is not None else None),
        "offer": _caller(engine, offer.call_id, wall, offer.started_at) if offer is not None else None,
    }


def scoped_agent(view: dict[str, Any], queues: frozenset[str] | None) -> dict[str, Any] | None:
    """The agent's row as a supervisor of ``queues`` sees it (None: not one of its agents)."""
    if queues is None:
        return view
    mine = [q for q in view["queues"] if q in queues]
    if not mine:
        return None
    out = dict(view, queues=mine)
    for key in ("call", "offer"):
        if out[key] is not None and out[key]["queue"] not in queues:
            out[key] = {"id": None, "queue": None, "caller_number": None, "caller_name": None, "since": None}
    return out


def member_ids(engine: Engine) -> dict[str, set[str]]:
    """Queue -> ids of its member agents."""
    out: dict[str, set[str]] = {}
    for agent in engine.agents.values():
        for q in agent.penalties:
            out.setdefault(q, set()).add(agent.id)
    return out


def queue_views(
    engine: Engine,
    names: Iterable[str],
    states: Mapping[str, str],
    wall: Wall,
    members: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per queue: callers waiting (priority first, then arrival), offers ringing now and to whom,
    calls being talked, agents by state. ``states``: agent id -> state word and ``members``:
    queue -> agent ids (the hub's caches; without them, read from the engine)."""
    wanted = {n for n in names if n in engine.setup.queues}
    waiting: dict[str, list[Any]] = {n: [] for n in wanted}
    talking: Counter[str] = Counter()
    for call in engine.calls.values():
        if call.queue not in wanted:
            continue
        if call.state in _WAITING:
            waiting[call.queue].append(call)
        elif call.state is CallState.CONNECTED:
            talking[call.queue] += 1
    if members is None:
        members = member_ids(engine)
    agents: dict[str, Counter[str]] = {}
    for n in wanted:
        ids = list(members.get(n, ()))
        agents[n] = Counter(states[a] if a in states else engine.agents[a].status for a in ids)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(wanted):
        calls = sorted(waiting[name], key=lambda c: c.rank)
        ringing = []
        for call in calls:
            for offer_id in sorted(call.live_offers):
                offer = engine.offers.get(offer_id)
                if offer is None or offer.state not in LIVE_OFFER_STATES:
                    continue
                agent = engine.agents.get(offer.agent_id)
                ringing.append(
                    {
                        "offer_id": offer.id,
                        "call_id": call.id,
                        "agent_id": offer.agent_id,
                        "agent_name": agent.name if agent is not None else offer.agent_id,
                        "caller_number": call.caller_number,
                        "since": wall(offer.started_at),
                    }
                )
        oldest = min((c.arrived_at for c in calls), default=None)
        out[name] = {
            "name": name,
            "waiting": [
                {
                    "call_id": c.id,
                    "caller_number": c.caller_number,
                    "caller_name": c.caller_name,
                    "priority": c.priority,
                    "arrived_at": wall(c.arrived_at),
                    "state": c.state.value,
                }
                for c in calls
            ],
            "longest_since": wall(oldest),
            "ringing": ringing,
            "talking": talking[name],
            "agents": dict(sorted(agents[name].items())),
            "members": sum(agents[name].values()),
        }
    return out
