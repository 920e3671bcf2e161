"""The batching writer on SQLite and PostgreSQL: rows per call/offer/agent, idempotent retries."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from controller.acd import commands as cmd
from controller.store.base import Base, load_all_models
from controller.store.history import AgentRow, AgentStateRow, CallRow, OfferRow, OutboxRow, as_utc
from controller.store.migrate import alembic_config
from controller.store.writer import HistoryWriter

EPOCH = 1_800_000_000.0


def call_records(call: str = "c1", agent: str = "alice") -> list[cmd.Command]:
    """One call: rejected by bob, accepted by alice, talked 30 s, caller hung up."""
    q = {"call": call, "queue": "support"}
    return [
        cmd.Record("call.queued", q | {"at": 10.0, "requeued": False}),
        cmd.Record("offer.created", q | {"at": 10.0, "offer": f"{call}-1", "agent": "bob"}),
        cmd.Record(
            "offer.ended",
            q
            | {
                "at": 12.0,
                "offer": f"{call}-1",
                "agent": "bob",
                "outcome": "rejected",
                "detail": "",
                "cause": 21,
                "tech_cause": 603,
                "started_at": 10.0,
                "answered_at": None,
                "ring_time": 2.0,
            },
        ),
        cmd.Record(
            "agent.state",
            {
                "agent": "bob",
                "state": "delayed",
                "presence": "available",
                "reason": "",
                "misses": 0,
                "at": 12.0,
            },
        ),
        cmd.Record("offer.created", q | {"at": 12.0, "offer": f"{call}-2", "agent": agent}),
        cmd.Record(
            "offer.ended",
            q
            | {
                "at": 15.0,
                "offer": f"{call}-2",
                "agent": agent,
                "outcome": "accepted",
                "detail": "",
                "cause": None,
                "tech_cause": None,
                "started_at": 12.0,
                "answered_at": 15.0,
                "ring_time": 3.0,
            },
        ),
        cmd.Record("call.connected", q | {"at": 15.0, "offer": f"{call}-2", "agent": agent, "wait": 5.0}),
        cmd.Record(
            "call.ended",
            q
            | {
                "at": 45.0,
                "outcome": "completed",
                "detail": "",
                "hung_up_by": "caller",
                "arrived_at": 10.0,
                "connected_at": 15.0,
                "wait": 5.0,
                "talk": 30.0,
                "agent": agent,
            },
        ),
    ]


async def count(db, model) -> int:
    async with db.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(model))).scalar_one()


def test_migrations_have_one_head_and_match_the_models():
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads


async def test_migrated_schema_matches_models(db):
    load_all_models()

    def diff(sync_conn):
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        return [d for d in compare_metadata(ctx, Base.metadata) if "acd_" in repr(d)]

    async with db.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_batch_becomes_one_row_per_call_offer_and_agent(db):
    writer = HistoryWriter(db, epoch=EPOCH, events=True)
    for c in call_records():
        writer.listener(c)
    writer.start()
    await writer.flushed()
    await writer.close()
    async with db.connect() as conn:
        call = (await conn.execute(select(CallRow.__table__))).one()
        offers = (await conn.execute(select(OfferRow.__table__).order_by(OfferRow.id))).all()
        agents = {a.id: a for a in (await conn.execute(select(AgentRow.__table__))).all()}
        events = (await conn.execute(select(OutboxRow.__table__).order_by(OutboxRow.id))).all()
    assert call.queue == "support" and call.outcome == "completed" and call.hung_up_by == "caller"
    assert as_utc(call.arrived_at).timestamp() == EPOCH + 10
    assert as_utc(call.answered_at).timestamp() == EPOCH + 15
    assert as_utc(call.ended_at).timestamp() == EPOCH + 45
    assert (call.wait, call.talk, call.agent, call.overflowed) == (5.0, 30.0, "alice", False)
    assert [(o.id, o.agent, o.outcome, o.cause, o.tech_cause, o.ring_time) for o in offers] == [
        ("c1-1", "bob", "rejected", 21, 603, 2.0),
        ("c1-2", "alice", "accepted", None, None, 3.0),
    ]
    assert as_utc(offers[1].answered_at).timestamp() == EPOCH + 15
    assert agents["bob"].state == "delayed" and agents["bob"].misses == 0
    assert as_utc(agents["alice"].last_call_end).timestamp() == EPOCH + 45
    assert [e.kind for e in events] == ["call.queued", "agent.state", "call.connected", "call.ended"]
    assert events[-1].payload["data"]["call"] == "c1"
    assert events[-1].payload["data"]["arrived_at"].endswith("Z")


async def test_retrying_a_batch_never_duplicates(db):
    writer = HistoryWriter(db, epoch=EPOCH, events=True)
    for c in call_records():
        writer.listener(c)
    batch = list(writer.buffer)
    await writer.write(batch)
    await writer.write(batch)  # e.g. the commit succeeded but its answer was lost
    await writer.write(batch[:3])  # and an earlier part again
    assert await count(db, CallRow) == 1
    assert await count(db, OfferRow) == 2
    assert await count(db, AgentStateRow) == 1
    assert await count(db, OutboxRow) == 4
    async with db.connect() as conn:
        call = (await conn.execute(select(CallRow.__table__))).one()
    assert call.outcome == "completed"  # replaying older facts of a call keeps its later columns


async def test_many_calls_in_batches(db):
    writer = HistoryWriter(db, epoch=EPOCH, batch_size=100, linger=0)
    writer.start()
    for i in range(300):
        for c in call_records(f"c{i}"):
            writer.listener(c)
        if i % 50 == 0:
            await asyncio.sleep(0)
    await writer.flushed()
    await writer.close()
    assert await count(db, CallRow) == 300
    assert await count(db, OfferRow) == 600
    assert writer.stats["written"] == 300 * 8


async def test_a_malformed_record_is_rejected_and_counted_not_retried_forever(db):
    writer = HistoryWriter(db, epoch=EPOCH)
    good = (1, "call.queued", {"call": "c1", "queue": "support", "at": 1.0}, None)
    bad = (2, "offer.created", {"call": "c1"}, None)  # no offer id, no agent
    rows = writer._fold_checked([good, bad])
    assert "c1" in rows["calls"]
    assert writer.stats["rejected_records"] == 1
