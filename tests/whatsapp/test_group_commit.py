"""Webhook groups: stored and processed in one transaction; a failed processing still stores.

Also the SQLite write path (a synchronous connection, never waiting inside SQLite on the loop).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from controller.store import writing
from controller.whatsapp.writer import SidecarWriter
from tests.timing import until


async def test_the_200_comes_after_the_body_is_stored_and_processed(sidecar) -> None:
    resp = await sidecar.post("webhook_inbound_text.json")
    assert resp.status == 200
    # no drain(): the group's transaction already holds the raw body and what it produced
    [row] = await sidecar.rows("SELECT processed_at FROM wa_webhook_inbox")
    assert row["processed_at"] is not None
    [msg] = await sidecar.messages()
    assert msg["body"].startswith("Olá")
    assert await sidecar.service.ingestor.pending() == 0


async def test_processing_failure_still_stores_and_the_worker_retries(sidecar, monkeypatch) -> None:
    """The group's processing fails: the body is stored unprocessed, the POST still gets its 200,
    and the running ingest worker (woken by the inbox, not a test's drain()) processes it."""
    calls = []

    async def broken(rows, docs):
        calls.append(len(rows))
        raise RuntimeError("bug while applying")

    service = sidecar.service
    monkeypatch.setattr(service.inbox, "processor", broken)
    woken = []
    wake = service.inbox.on_stored_unprocessed
    monkeypatch.setattr(service.inbox, "on_stored_unprocessed", lambda: (woken.append(1), wake()))
    async with service._process_lock:  # the worker cannot take the body before we looked at it
        resp = await sidecar.post("webhook_inbound_text.json")
        assert resp.status == 200 and calls == [1] and woken == [1]
        [row] = await sidecar.rows("SELECT processed_at FROM wa_webhook_inbox")
        assert row["processed_at"] is None  # stored alone, for the ingest worker
        assert await sidecar.messages() == []
    await until(sidecar.messages, what="the ingest worker processed the stored body")
    [msg] = await sidecar.messages()
    assert msg["body"].startswith("Olá")
    [row] = await sidecar.rows("SELECT processed_at, attempts FROM wa_webhook_inbox")
    assert row["processed_at"] is not None


async def test_nothing_stored_means_500(sidecar, monkeypatch) -> None:
    async def broken(rows, docs):
        raise RuntimeError("apply failed")

    class Down:
        def transaction(self):
            raise OSError("disk full")

    monkeypatch.setattr(sidecar.service.inbox, "processor", broken)
    monkeypatch.setattr(sidecar.service.inbox, "writer", Down())
    resp = await sidecar.post("webhook_inbound_text.json")
    assert resp.status == 500
    assert sidecar.service.metrics.get("webhook_store_failed") == 1
    assert sidecar.service.metrics.get("webhook_accepted") == 0


async def test_concurrent_posts_share_transactions(sidecar) -> None:
    import json

    from tests.whatsapp.conftest import fixture_bytes

    bodies = []
    for i in range(40):
        doc = json.loads(fixture_bytes("webhook_inbound_text.json"))
        msg = doc["entry"][0]["changes"][0]["value"]["messages"][0]
        msg["id"] = f"wamid.group.{i}"
        bodies.append(json.dumps(doc).encode())
    inbox = sidecar.service.inbox
    groups: list[int] = []  # bodies per store-and-process transaction
    process = inbox.processor

    async def counting(rows, docs):
        groups.append(len(rows))
        await process(rows, docs)

    inbox.processor = counting
    responses = await asyncio.gather(*(sidecar.post(b) for b in bodies))
    assert [r.status for r in responses] == [200] * 40
    assert len(await sidecar.messages()) == 40
    assert sum(groups) == 40 and len(groups) < 20, groups  # on SQLite and on PostgreSQL


async def test_sqlite_writer_waits_for_another_writer_without_blocking_the_loop(tmp_path) -> None:
    from controller.store import create_engine, upgrade

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/w.sqlite3")
    await upgrade(engine)
    writer = SidecarWriter(engine)
    assert writer.inline
    release = asyncio.Event()
    holding = asyncio.Event()

    async def other_writer() -> None:  # an aiosqlite connection holding SQLite's write lock
        async with writing(engine) as conn:
            await conn.execute(text("UPDATE wa_counters SET value = value + 1 WHERE name = 'cursor'"))
            holding.set()
            await release.wait()

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.002)

    other = asyncio.create_task(other_writer())
    tick = asyncio.create_task(ticker())
    await holding.wait()

    async def mine() -> None:
        async with writer.transaction() as conn:
            await conn.execute(text("UPDATE wa_counters SET value = value + 10 WHERE name = 'cursor'"))

    task = asyncio.create_task(mine())
    start = ticks
    # retrying, and the loop kept running meanwhile (the ticker ran between the retries)
    await until(lambda: writer.stats["busy_retries"] >= 3 and ticks - start >= 10, what="busy retries")
    assert not task.done()
    release.set()
    await asyncio.wait_for(task, 5)
    await other
    tick.cancel()
    async with engine.connect() as conn:
        assert (
            await conn.execute(text("SELECT value FROM wa_counters WHERE name = 'cursor'"))
        ).scalar_one() == 11

    with pytest.raises(RuntimeError):
        async with writer.transaction() as conn:
            await conn.execute(text("UPDATE wa_counters SET value = 0 WHERE name = 'cursor'"))
            raise RuntimeError("rolled back")
    async with engine.connect() as conn:
        assert (
            await conn.execute(text("SELECT value FROM wa_counters WHERE name = 'cursor'"))
        ).scalar_one() == 11
    await writer.checkpoint()
    await writer.close()
    await engine.dispose()


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
async def test_sqlite_writer_commits_in_both_modes(tmp_path, sync: str) -> None:
    from controller.store import create_engine, upgrade

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/s.sqlite3")
    await upgrade(engine)
    writer = SidecarWriter(engine, synchronous=sync)
    async with writer.transaction() as conn:
        await conn.execute(text("UPDATE wa_counters SET value = 7 WHERE name = 'cursor'"))
    async with engine.connect() as conn:
        assert (
            await conn.execute(text("SELECT value FROM wa_counters WHERE name = 'cursor'"))
        ).scalar_one() == 7
    await writer.close()
    await engine.dispose()
    with pytest.raises(ValueError, match="synchronous"):
        SidecarWriter(engine, synchronous="SOMETIMES")


async def test_cancelled_during_the_fsync_commit_the_connection_is_not_reused_until_it_is_done(
    tmp_path, monkeypatch
) -> None:
    """A shutdown (or a client gone) cancelling a write while its COMMIT runs in a thread must
    neither roll back under the running commit nor let the next transaction in on the same
    connection: the commit finishes, stays committed, and the next transaction follows it."""
    import threading

    from controller.store import create_engine, upgrade

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/c.sqlite3")
    await upgrade(engine)
    writer = SidecarWriter(engine, synchronous="FULL")
    conn = writer._connection()
    real_commit = conn.commit
    committing, release = threading.Event(), threading.Event()

    order: list[str] = []

    def slow_commit() -> None:
        committing.set()
        release.wait(5)
        real_commit()
        order.append("first committed")

    monkeypatch.setattr(conn, "commit", slow_commit)

    async def first() -> None:
        async with writer.transaction() as c:
            await c.execute(text("UPDATE wa_counters SET value = 1 WHERE name = 'cursor'"))

    task = asyncio.create_task(first())
    await asyncio.to_thread(committing.wait, 5)
    task.cancel()

    async def second() -> None:
        async with writer.transaction() as c:
            order.append("second in")
            await c.execute(text("UPDATE wa_counters SET value = value + 10 WHERE name = 'cursor'"))

    monkeypatch.setattr(conn, "commit", real_commit)
    other = asyncio.create_task(second())
    # the second transaction queues behind the writer's lock while the first commit runs
    await until(lambda: writer._lock.locked() and len(writer._lock._waiters or ()) == 1, what="queued")
    assert order == []
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(other, 5)
    assert order == ["first committed", "second in"]
    async with engine.connect() as c:
        value = (await c.execute(text("SELECT value FROM wa_counters WHERE name = 'cursor'"))).scalar_one()
        assert value == 11
    await writer.close()
    await engine.dispose()
