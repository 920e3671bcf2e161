"""The lease row: one holder at a time, expiry on the database's clock, a fencing token per term."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import select, text

from controller.acd import commands as cmd
from controller.ari.errors import Fenced
from controller.config import load_settings
from controller.ha.lease import Lease
from controller.ha.replica import ha_engine
from controller.store.engine import writing
from controller.store.history import CallRow
from controller.store.writer import HistoryWriter
from tests.dbkit import PG_URL
from tests.timing import until


class FrozenClock:
    """A monotonic clock that only moves when the test says: a process that slept through time."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _expired(lease: Lease) -> None:
    """Wait (on the database's clock) until the row has expired."""
    async with asyncio.timeout(10):
        while (info := await lease.current()) is not None and info.live:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_one_holder_at_a_time_and_renewal_keeps_it(pg):
    a = Lease(pg, "acd", "a", "http://a:8080", ttl=5)
    b = Lease(pg, "acd", "b", "http://b:8080", ttl=5)
    first = await a.try_acquire()
    assert first is not None and first.token == 1 and first.previous == ""
    assert a.held()
    assert await b.try_acquire() is None
    assert not b.held()
    assert await a.renew()
    assert await b.try_acquire() is None
    info = await b.current()
    assert info is not None and info.holder == "a" and info.address == "http://a:8080" and info.live


async def test_silent_holder_expires_and_the_standby_takes_over_with_a_new_token(pg):
    a = Lease(pg, "acd", "a", ttl=0.3)
    b = Lease(pg, "acd", "b", ttl=0.3)
    assert await a.try_acquire() is not None
    await _expired(a)  # a stopped renewing (crashed or frozen)
    took = await b.try_acquire()
    assert took is not None and took.token == 2 and took.previous == "a"
    assert took.silent_for is not None and took.silent_for >= 0.3
    # the former holder wakes up: its renewal is refused and it knows it at once
    assert not await a.renew()
    assert not a.held()


async def test_frozen_holder_whose_local_clock_did_not_move_is_fenced_by_the_token(pg):
    """The local deadline is the first fence; the token in every write is the second, for a clock
    that did not see the time pass (a paused VM)."""
    clock = FrozenClock()
    a = Lease(pg, "acd", "a", ttl=0.3, monotonic=clock)
    b = Lease(pg, "acd", "b", ttl=0.3)
    assert await a.try_acquire() is not None
    await _expired(a)
    assert await b.try_acquire() is not None
    assert a.held()  # a believes it still holds the lease
    with pytest.raises(Fenced):
        async with writing(pg) as conn:
            await a.check(conn)
    assert not a.held()  # and now it knows
    async with writing(pg) as conn:
        await b.check(conn)  # the new holder writes


async def test_release_hands_over_without_waiting_for_the_ttl(pg):
    a = Lease(pg, "acd", "a", ttl=60)
    b = Lease(pg, "acd", "b", ttl=60)
    assert await a.try_acquire() is not None
    await a.release()
    assert not a.held()
    took = await b.try_acquire()
    assert took is not None and took.token == 2


async def test_leases_of_two_apps_are_independent(pg):
    assert await Lease(pg, "acd", "a").try_acquire() is not None
    assert await Lease(pg, "sales", "b").try_acquire() is not None


async def test_a_fenced_writer_writes_nothing(pg):
    """A former active's buffered history must not overwrite what the new active wrote."""
    clock = FrozenClock()
    old = Lease(pg, "acd", "old", ttl=0.3, monotonic=clock)
    new = Lease(pg, "acd", "new", ttl=0.3)
    assert await old.try_acquire() is not None
    writer = HistoryWriter(pg, epoch=0.0, linger=0, retry_initial=0.01, retry_max=0.02)
    writer.guard = old.check
    writer.start()
    await _expired(old)
    assert await new.try_acquire() is not None
    writer.listener(
        cmd.Record(
            "call.queued",
            {
                "call": "c1",
                "queue": "support",
                "at": 1.0,
                "caller_number": "1",
                "caller_name": "x",
                "priority": 0,
            },
        )
    )
    async with asyncio.timeout(10):
        while writer.stats["write_failures"] < 2:  # noqa: ASYNC110 - refused and retried
            await asyncio.sleep(0.01)
    async with pg.connect() as conn:
        assert (await conn.execute(select(CallRow.id))).all() == []
    writer._task.cancel()


async def test_a_transaction_frozen_with_the_lease_row_locked_does_not_block_the_takeover(pg_db):
    """A replica stopped (SIGSTOP) inside a write transaction keeps its ``for share`` lock on the
    lease row; PostgreSQL must end that session (``idle_in_transaction_session_timeout``, set by
    ``ha_engine``) or the standby's ``for update`` waits for as long as the freeze."""
    engine, _url, schema = pg_db
    settings = load_settings(env_file=None, ha=True, ha_ttl=1.0, ha_renew=0.2, database_url=PG_URL)
    frozen_db = ha_engine(settings, schema=schema, pool_size=1)
    pid = None
    try:
        a = Lease(frozen_db, "acd", "a", ttl=1.0)
        assert await a.try_acquire() is not None
        conn = await frozen_db.connect()
        await conn.begin()
        pid = (await conn.execute(text("select pg_backend_pid()"))).scalar()
        await a.check(conn)  # the writer's first statement; then the process is frozen
        b = Lease(engine, "acd", "b", ttl=1.0)

        async def took() -> bool:
            try:
                return await b.try_acquire() is not None
            except TimeoutError:  # still blocked behind the frozen lock
                return False

        await until(took, timeout=10, what="the standby takes the lease")
        with contextlib.suppress(Exception):
            await conn.close()
    finally:
        if pid is not None:  # a failed run: end the "frozen" session, or dropping the schema waits
            async with engine.connect() as admin:
                await admin.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})
        await frozen_db.dispose(close=False)


async def test_fence_is_asked_again_once_the_connection_is_there():
    """A request checked before it waited for a TCP connection must be checked again right before
    it is written: the process may have been frozen during the wait and lost the lease (seen with
    real processes: a POST /bridges went out after SIGCONT)."""
    from controller.ari.client import AriClient
    from controller.sim import SimAsterisk

    sim = SimAsterisk(user="acd", password="secret")
    await sim.start("127.0.0.1", 0)
    client = AriClient(sim.base_url, "acd", "secret", "acd")
    answers = iter([True, False])  # held when the request starts; lost while connecting
    client.fence = lambda: next(answers)
    try:
        with pytest.raises(Fenced):
            await client.ping()
        assert not [r for r in sim.rest_log if r.path.startswith("/asterisk")]  # nothing reached ARI
    finally:
        await client.close()
        await sim.stop()
