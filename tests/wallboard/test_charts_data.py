"""Today's figures behind the wallboard's charts, from known history rows (SQLite and PostgreSQL),
and the charts frame a supervisor gets from them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import insert

from controller.store import reports
from controller.store.history import CallRow, OfferRow
from tests.dbkit import BACKENDS, migrated_db
from tests.stack import ADMIN
from tests.wallboard.conftest import SALES_SUP, open_board

DAY = datetime(2026, 12, 4, tzinfo=UTC)


def _call(cid: str, queue: str, minute: int, *, wait: float, outcome: str, answered: bool = True):
    arrived = DAY + timedelta(hours=8, minutes=minute)
    return {
        "id": cid,
        "queue": queue,
        "arrived_at": arrived,
        "answered_at": arrived + timedelta(seconds=wait) if answered else None,
        "ended_at": arrived + timedelta(seconds=wait + 60),
        "outcome": outcome,
        "wait": wait,
    }


KNOWN_CALLS = [
    # 08:00-08:15: three sales calls: answered in 5 s, answered in 30 s, abandoned
    _call("c1", "sales", 1, wait=5, outcome="completed"),
    _call("c2", "sales", 7, wait=30, outcome="completed"),
    _call("c3", "sales", 9, wait=40, outcome="abandoned", answered=False),
    # 08:30-08:45: one sales call overflowed, one support call answered in 2 s
    _call("c4", "sales", 31, wait=90, outcome="overflowed", answered=False),
    _call("c5", "support", 33, wait=2, outcome="completed"),
]
KNOWN_OFFERS = [
    {"id": "c1-1", "call_id": "c1", "queue": "sales", "agent": "alice", "outcome": "rejected"},
    {"id": "c1-2", "call_id": "c1", "queue": "sales", "agent": "carol", "outcome": "accepted"},
    {"id": "c2-1", "call_id": "c2", "queue": "sales", "agent": "alice", "outcome": "no_answer"},
    {"id": "c2-2", "call_id": "c2", "queue": "sales", "agent": "alice", "outcome": "accepted"},
    {"id": "c3-1", "call_id": "c3", "queue": "sales", "agent": "carol", "outcome": "busy"},
    {"id": "c4-1", "call_id": "c4", "queue": "sales", "agent": "carol", "outcome": "unreachable"},
    {"id": "c5-1", "call_id": "c5", "queue": "support", "agent": "bob", "outcome": "accepted"},
]


async def _load(db, shift: timedelta = timedelta(0)) -> None:
    offers = [
        o | {"started_at": DAY + shift + timedelta(hours=8, minutes=i)} for i, o in enumerate(KNOWN_OFFERS)
    ]
    calls = [
        c | {k: c[k] + shift for k in ("arrived_at", "answered_at", "ended_at") if c[k] is not None}
        for c in KNOWN_CALLS
    ]
    async with db.begin() as conn:
        await conn.execute(insert(CallRow.__table__), calls)
        await conn.execute(insert(OfferRow.__table__), offers)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_intervals_and_offer_outcomes_from_known_rows(backend, tmp_path):
    async with migrated_db(backend, tmp_path) as (db, _url, _schema):
        await _load(db)
        since, until = DAY + timedelta(hours=8), DAY + timedelta(hours=9)
        out = await reports.queue_intervals(db, since, until, 20, ["sales", "support", "empty"], total="*")
        sales = out["sales"]
        assert [r["start"] for r in sales] == [since + timedelta(minutes=15 * i) for i in range(4)]
        assert [(r["offered"], r["answered"], r["abandoned"], r["overflowed"]) for r in sales] == [
            (3, 2, 1, 0),
            (0, 0, 0, 0),
            (1, 0, 0, 1),
            (0, 0, 0, 0),
        ]
        # running figures: 1 of 3 ended calls within 20 s, then 1 of 4; ASA (5 + 30) / 2
        assert [r["service_level"] for r in sales] == [0.3333, 0.3333, 0.25, 0.25]
        assert [r["average_speed_of_answer"] for r in sales] == [17.5, 17.5, 17.5, 17.5]
        assert [r["offered"] for r in out["*"]] == [3, 0, 2, 0]
        assert out["*"][-1]["service_level"] == 0.4  # 2 of 5 within 20 s
        assert all(r["offered"] == 0 and r["service_level"] is None for r in out["empty"])

        outcomes = await reports.offer_outcomes_today(db, since, ["sales"])
        assert outcomes == {
            "alice": {"accepted": 1, "rejected": 1, "no_answer": 1, "busy": 0, "unreachable": 0},
            "carol": {"accepted": 1, "rejected": 0, "no_answer": 0, "busy": 1, "unreachable": 1},
        }


async def test_charts_frame_is_scoped_and_sent_again_only_when_it_changed(floor):
    hub = floor.services.wallboard
    # the hub's day is the engine clock's: the known rows move from 08:00 to its midnight
    now = floor.controller.clock.to_wall(floor.controller.clock.now())
    shift = datetime.combine(datetime.fromtimestamp(now, UTC).date(), DAY.timetz()) - DAY - timedelta(hours=8)
    await _load(floor.services.db, shift)
    # "now" at the day's end, so every known row (midnight to 01:00) is in the past whatever the hour
    hub.history_now = lambda: datetime.combine(datetime.fromtimestamp(now, UTC).date(), time(23, 59), UTC)
    sales = await open_board(floor, SALES_SUP)
    admin = await open_board(floor, ADMIN)
    await sales.until(lambda: sales.charts is not None)
    await admin.until(lambda: admin.charts is not None)
    assert set(sales.charts["queues"]) == {"sales", "*"}
    assert set(sales.charts["outcomes"]) == {"alice", "carol"}
    assert set(admin.charts["queues"]) == {"sales", "support", "*"}
    assert admin.charts["outcomes"]["bob"]["accepted"] == 1
    assert sales.charts["queues"]["sales"][0]["offered"] == 3
    assert sales.charts["queues"]["sales"][0]["service_level"] == 0.3333
    sent = hub.stats["frames"]
    scope = next(s for s in hub.scopes.values() if s.queues == frozenset({"sales"}))
    await hub.refresh_charts(scope)
    assert scope.charts is not None and hub.stats["frames"] == sent  # nothing changed, nothing sent
