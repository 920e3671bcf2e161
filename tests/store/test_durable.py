"""The writer's write-ahead API (hot standby) and single-node mode's promise that routing never
waits for the database."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from controller.sim import Answer
from controller.store.history import CallRow, OfferRow
from controller.store.writer import HistoryWriter
from tests.stack import make_stack
from tests.store.test_history_writer import EPOCH, call_records
from tests.telephony.conftest import make_setup


async def test_durable_returns_once_committed_and_skips_the_linger(db):
    # a linger far longer than the bound: only a writer that writes at once for a waiter passes
    writer = HistoryWriter(db, epoch=EPOCH, linger=60.0)
    writer.start()
    try:
        for c in call_records("c1")[:2]:  # call.queued, offer.created
            writer.listener(c)
        assert writer.queued_seq == 2 and writer.committed_seq == 0
        assert await writer.durable(timeout=10.0)
        assert writer.committed_seq == 2 and writer.waiting == 0
        async with db.connect() as conn:  # committed: another connection sees both rows
            assert (await conn.execute(select(CallRow.id))).scalars().all() == ["c1"]
            assert (await conn.execute(select(OfferRow.id))).scalars().all() == ["c1-1"]
        assert await writer.durable(1)  # already committed: at once
    finally:
        await writer.close()


async def test_durable_is_bounded_when_the_database_does_not_confirm(db):
    writer = HistoryWriter(db, epoch=EPOCH, linger=0.0, retry_initial=0.01, retry_max=0.05)

    async def down(_conn) -> None:
        raise ConnectionRefusedError("test: database unreachable")

    writer.guard = down
    writer.start()
    try:
        writer.listener(call_records("c1")[0])
        assert not await writer.durable(timeout=0.2)
        assert writer.stats["durable_timeouts"] == 1 and writer.committed_seq == 0 and writer.waiting == 0
        writer.guard = None  # back: the fact is written, a new wait succeeds
        assert await writer.durable(timeout=10.0)
    finally:
        await writer.close()
    assert not await writer.durable(writer.queued_seq + 1, timeout=10.0)  # stopped: never waits


async def test_single_node_rings_while_the_database_cannot_write(db):
    """ACD_HA=false: nothing waits for the database (no write-ahead): a writer stuck in its
    transaction does not keep the agent's phone from ringing or the caller from being connected."""
    stack = await make_stack(db, make_setup({"alice": "alice"}), {"alice": Answer(after=0.5)}, http=False)
    try:
        assert stack.controller.shell.durable is None
        stuck = asyncio.Event()

        async def hang(_conn) -> None:
            await stuck.wait()

        stack.writer.guard = hang
        caller = stack.call()
        await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)
        assert stack.writer.committed_seq < stack.writer.queued_seq  # nothing of it committed yet
        stuck.set()
        stack.writer.guard = None
    finally:
        await stack.close()
