"""Read side of the history: call lists, one call with its offers, today's queue figures.

Plain SQLAlchemy Core queries that run the same on SQLite and PostgreSQL; the HTTP API turns
their dicts into JSON. Times come back as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.store.engine import reading
from controller.store.history import AgentRow, CallRow, OfferRow, as_utc

__all__ = [
    "CALL_OUTCOMES",
    "OFFER_OUTCOMES",
    "agent_rows",
    "get_call",
    "list_calls",
    "offer_outcomes_today",
    "queue_intervals",
    "queue_today",
]

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


OFFER_OUTCOMES = ("accepted", "rejected", "no_answer", "busy", "unreachable")
INTERVAL = timedelta(minutes=15)


async def queue_intervals(
    db: AsyncEngine,
    since: datetime,
    until: datetime,
    service_level: float,
    queues: list[str] | None = None,
    *,
    total: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Per queue, one row per 15 minutes from ``since`` (aligned to it) to ``until``: calls
    offered (arrived), answered, abandoned, overflowed, and the running service level and ASA
    from ``since`` up to the end of that interval — the wallboard's charts. ``total``: also
    these figures for all the queues together, under that key.

    Calls are bucketed by arrival. A day holds a few thousand calls at most, so the rows are
    read once and counted here rather than with date arithmetic each database spells its own way.
    """
    c = _calls.c
    query = select(c.queue, c.arrived_at, c.answered_at, c.wait, c.outcome).where(
        c.arrived_at >= since, c.arrived_at < until
    )
    if queues is not None:
        query = query.where(c.queue.in_(queues))
    async with reading(db) as conn:
        rows = (await conn.execute(query)).all()
    slots = max(1, -(-int((until - since).total_seconds()) // int(INTERVAL.total_seconds())))
    out: dict[str, list[dict[str, Any]]] = {}
    raw: dict[str, list[list[float]]] = {}

    def table(queue: str) -> list[list[float]]:
        if queue not in raw:
            # offered, answered, abandoned, overflowed, ended, answered within SL, wait sum of answered
            raw[queue] = [[0.0] * 7 for _ in range(slots)]
        return raw[queue]

    for q in queues or ():
        table(q)
    for r in rows:
        arrived = as_utc(r.arrived_at)
        if arrived is None or r.queue is None:
            continue
        i = min(slots - 1, int((arrived - since) / INTERVAL))
        cell = table(r.queue)[i]
        cell[0] += 1
        if r.answered_at is not None:
            cell[1] += 1
            cell[6] += float(r.wait or 0.0)
            if r.wait is not None and r.wait <= service_level:
                cell[5] += 1
        if r.outcome == "abandoned":
            cell[2] += 1
        elif r.outcome == "overflowed":
            cell[3] += 1
        if r.outcome is not None:
            cell[4] += 1
    if total is not None:
        together = [[0.0] * 7 for _ in range(slots)]
        for cells in raw.values():
            for i, cell in enumerate(cells):
                together[i] = [a + b for a, b in zip(together[i], cell, strict=True)]
        raw[total] = together
    for queue, cells in raw.items():
        ended = in_sl = answered = waited = 0.0
        rows_out = []
        for i, cell in enumerate(cells):
            ended, in_sl = ended + cell[4], in_sl + cell[5]
            answered, waited = answered + cell[1], waited + cell[6]
            rows_out.append(
                {
                    "start": since + i * INTERVAL,
                    "offered": int(cell[0]),
                    "answered": int(cell[1]),
                    "abandoned": int(cell[2]),
                    "overflowed": int(cell[3]),
                    "service_level": round(in_sl / ended, 4) if ended else None,
                    "average_speed_of_answer": round(waited / answered, 3) if answered else None,
                }
            )
        out[queue] = rows_out
    return out


async def offer_outcomes_today(
    db: AsyncEngine, since: datetime, queues: list[str] | None = None
) -> dict[str, dict[str, int]]:
    """Agent -> offers since ``since`` by outcome (accepted, rejected, no_answer, busy,
    unreachable), over the given queues: how agents answer what they are offered."""
    o = _offers.c
    query = (
        select(o.agent, o.outcome, func.count().label("n"))
        .where(o.started_at >= since, o.outcome.in_(OFFER_OUTCOMES))
        .group_by(o.agent, o.outcome)
    )
    if queues is not None:
        query = query.where(o.queue.in_(queues))
    async with reading(db) as conn:
        rows = (await conn.execute(query)).all()
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.agent is None:
            continue
        out.setdefault(r.agent, dict.fromkeys(OFFER_OUTCOMES, 0))[r.outcome] += int(r.n)
    return out
