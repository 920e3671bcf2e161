"""Read side of the history: call lists, one call with its offers, today's queue figures.

Plain SQLAlchemy Core queries that run the same on SQLite and PostgreSQL; the HTTP API turns
their dicts into JSON. Times come back as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.store.engine import reading
from controller.store.history import AgentRow, CallRow, OfferRow, as_utc

__all__ = ["CALL_OUTCOMES", "agent_rows", "get_call", "list_calls", "queue_today"]

CALL_OUTCOMES = ("completed", "abandoned", "overflowed")
_calls = CallRow.__table__
_offers = OfferRow.__table__
_agents = AgentRow.__table__


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = as_utc(value)
    return out


async def list_calls(
    db: AsyncEngine,
    *,
    queue: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    outcome: str | None = None,
    agent: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], bool]:
    """Calls newest first; ``agent`` = calls offered to that agent (answered or not).

    Returns (calls, more): ``more`` says another page follows.
    """
    query = select(_calls)
    if queue is not None:
        query = query.where(_calls.c.queue == queue)
    if since is not None:
        query = query.where(_calls.c.arrived_at >= since)
    if until is not None:
        query = query.where(_calls.c.arrived_at < until)
    if outcome is not None:
        query = query.where(_calls.c.outcome == outcome)
    if agent is not None:
        offered = exists().where(and_(_offers.c.call_id == _calls.c.id, _offers.c.agent == agent))
        query = query.where(offered)
    query = query.order_by(_calls.c.arrived_at.desc(), _calls.c.id.desc()).limit(limit + 1).offset(offset)
    async with reading(db) as conn:
        rows = (await conn.execute(query)).all()
    return [_row(r) for r in rows[:limit]], len(rows) > limit


async def get_call(db: AsyncEngine, call_id: str) -> dict[str, Any] | None:
    """One call with every offer, in the order they rang."""
    async with reading(db) as conn:
        row = (await conn.execute(select(_calls).where(_calls.c.id == call_id))).first()
        offers = (
            await conn.execute(
                select(_offers)
                .where(_offers.c.call_id == call_id)
                .order_by(_offers.c.started_at, func.length(_offers.c.id), _offers.c.id)
            )
        ).all()
    if row is None:
        if not offers:
            return None
        call = {"id": call_id}
    else:
        call = _row(row)
    call["offers"] = [_row(o) for o in offers]
    return call


async def queue_today(db: AsyncEngine, since: datetime, service_level: float) -> dict[str, dict[str, Any]]:
    """Per queue since ``since``: offered/answered/abandoned/overflowed, service level, ASA, AHT,
    and per agent the offers rejected, missed (rang out) and busy.

    Service level = calls answered within ``service_level`` s / calls that ended (answered,
    abandoned or overflowed); ASA = mean wait of answered calls; AHT = mean talk time of
    answered calls that ended.
    """
    c = _calls.c
    answered = c.answered_at.is_not(None)
    ended = c.outcome.is_not(None)

    def count_if(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    calls_q = (
        select(
            c.queue,
            func.count().label("offered"),
            count_if(answered).label("answered"),
            count_if(c.outcome == "abandoned").label("abandoned"),
            count_if(c.outcome == "overflowed").label("overflowed"),
            count_if(ended).label("ended"),
            count_if(and_(answered, c.wait <= service_level)).label("answered_in_sl"),
            func.avg(case((answered, c.wait))).label("asa"),
            func.avg(case((and_(answered, c.outcome == "completed"), c.talk))).label("aht"),
        )
        .where(c.arrived_at >= since)
        .group_by(c.queue)
    )
    o = _offers.c
    offers_q = (
        select(o.queue, o.agent, o.outcome, func.count().label("n"))
        .where(o.started_at >= since, o.outcome.in_(("rejected", "no_answer", "busy")))
        .group_by(o.queue, o.agent, o.outcome)
    )
    async with reading(db) as conn:
        call_rows = (await conn.execute(calls_q)).all()
        offer_rows = (await conn.execute(offers_q)).all()
    out: dict[str, dict[str, Any]] = {}
    for r in call_rows:
        ended_n = int(r.ended or 0)
        out[r.queue] = {
            "offered": int(r.offered),
            "answered": int(r.answered or 0),
            "abandoned": int(r.abandoned or 0),
            "overflowed": int(r.overflowed or 0),
            "service_level": round(int(r.answered_in_sl or 0) / ended_n, 4) if ended_n else None,
            "average_speed_of_answer": round(float(r.asa), 3) if r.asa is not None else None,
            "average_handle_time": round(float(r.aht), 3) if r.aht is not None else None,
            "agents": {},
        }
    key = {"rejected": "rejected", "no_answer": "missed", "busy": "busy"}
    for r in offer_rows:
        queue = out.setdefault(r.queue, _empty_today())
        agent = queue["agents"].setdefault(r.agent, {"rejected": 0, "missed": 0, "busy": 0})
        agent[key[r.outcome]] += int(r.n)
    return out


def _empty_today() -> dict[str, Any]:
    return {
        "offered": 0,
        "answered": 0,
        "abandoned": 0,
        "overflowed": 0,
        "service_level": None,
        "average_speed_of_answer": None,
        "average_handle_time": None,
        "agents": {},
    }


async def agent_rows(db: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with reading(db) as conn:
        rows = (await conn.execute(select(_agents))).all()
    return {r.id: _row(r) for r in rows}


def empty_today() -> dict[str, Any]:
    return _empty_today()
