"""Database outage while the simulator routes calls: records are buffered, flushed, never lost or doubled."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import func, select

from controller.acd.events import AgentPause
from controller.sim import Answer, Decline
from controller.store import create_engine
from controller.store.history import AgentStateRow, CallRow, OfferRow
from tests.dbkit import BACKENDS, PG_URL, migrated_db
from tests.stack import make_stack
from tests.telephony.conftest import make_setup


class TcpProxy:
    """127.0.0.1:<port> -> PostgreSQL; ``down()`` cuts every connection and refuses new ones."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@asynccontextmanager
async def outage_db(backend, tmp_path):
    """(writer's engine, down(), up()) for a database that can be made unavailable."""
    if backend == "sqlite":
        async with migrated_db("sqlite", tmp_path, busy_timeout_ms=20) as (engine, url, _):
            path = url.split("///", 1)[1]
            holder: list[sqlite3.Connection] = []

            async def down():
                conn = sqlite3.connect(path, isolation_level=None)
                conn.execute("BEGIN EXCLUSIVE")  # every other writer gets "database is locked"
                holder.append(conn)

            async def up():
                conn = holder.pop()
                conn.execute("ROLLBACK")
                conn.close()

            yield engine, down, up
        return
    async with migrated_db("postgresql", tmp_path) as (_admin, _url, schema):
        proxy = TcpProxy()
        await proxy.up()
        url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        engine = create_engine(url, schema=schema, connect_args={"timeout": 2})
        try:
            yield engine, proxy.down, proxy.up
        finally:
            await engine.dispose()
            if proxy.server is not None:
                proxy.server.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_outage_buffers_then_flushes_every_record_exactly_once(backend, tmp_path):
    setup = make_setup({"alice": "agent1", "bob": "agent2", "carol": "agent3"}, wrapup=0.5, ring_timeout=5)
    phones = {
        "agent1": Answer(after=0.3),
        "agent2": [Decline(after=0.2), Answer(after=0.3)],
        "agent3": Answer(after=0.5),
    }
    async with outage_db(backend, tmp_path) as (db, down, up):
        stack = await make_stack(db, setup, phones, http=False)
        try:

            async def calls(n: int) -> list:
                placed = [stack.call(caller_number=f"555{i:04d}", talk_time=1.0) for i in range(n)]
                await asyncio.gather(*(c.wait_for(lambda c: c.bridged_with is not None, 200) for c in placed))
                return placed

            await calls(3)
            await stack.writer.flushed()
            await down()
            before = len(stack.records)
            await calls(6)  # routed while the database is down
            stack.controller.shell.feed(AgentPause("carol", "lunch"))
            await stack.until(lambda: stack.writer.stats["write_failures"] > 0)
            connected = [r for r in stack.records[before:] if r.kind == "call.connected"]
            assert len(connected) >= 6, "calls kept flowing during the outage"
            assert stack.writer.depth > 0 and not stack.writer.db_up
            await up()
            await stack.until(lambda: not stack.controller.engine.calls, timeout=20)
            await stack.writer.flushed(timeout=20)
            assert stack.writer.db_up and stack.writer.stats["dropped"] == 0
        finally:
            await stack.close()
        records = stack.records
        call_ids = {r.data["call"] for r in records if r.kind == "call.queued"}
        offer_ids = {r.data["offer"] for r in records if r.kind == "offer.created"}
        states = [r for r in records if r.kind == "agent.state"]
        ended = {r.data["call"]: r.data["outcome"] for r in records if r.kind == "call.ended"}
        async with db.connect() as conn:
            rows = (await conn.execute(select(CallRow.id, CallRow.outcome, CallRow.caller_number))).all()
            offers = (await conn.execute(select(OfferRow.id, OfferRow.outcome))).all()
            n_states = (await conn.execute(select(func.count()).select_from(AgentStateRow))).scalar_one()
            pause = (
                (await conn.execute(select(AgentStateRow.reason).where(AgentStateRow.agent == "carol")))
                .scalars()
                .all()
            )
    assert len(call_ids) == 9
    assert {r.id for r in rows} == call_ids and len(rows) == 9
    assert {r.id: r.outcome for r in rows} == ended
    assert all(r.caller_number.startswith("555") for r in rows)
    assert {o.id for o in offers} == offer_ids and len(offers) == len(offer_ids)
    assert all(o.outcome is not None for o in offers)
    assert n_states == len(states)
    assert "lunch" in pause
