"""Closing the books at start: rows an earlier run or term left open get an end, rows of this run
and of callers it holds are never touched. SQLite and PostgreSQL; then a single-node restart on
the simulator."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from controller.acd import commands as cmd
from controller.app import Controller
from controller.clock import Clock
from controller.config import load_settings
from controller.service import Services
from controller.sim import NoAnswer, SimAsterisk
from controller.store.books import Books
from controller.store.history import CallRow, OfferRow
from controller.store.writer import HistoryWriter
from tests.store.test_history_writer import EPOCH, call_records
from tests.telephony.conftest import make_setup
from tests.timing import until


def _records(call: str, *, answered: bool = False, offers: int = 1) -> list[cmd.Record]:
    q = {"call": call, "queue": "support"}
    out = [_queued(call, at=10.0)]
    for n in range(1, offers + 1):
        out.append(_created(q, f"{call}-{n}", 11.0))
    if answered:
        out.append(call_records(call)[6])  # call.connected at 15.0
    return out


def _queued(call: str, at: float) -> cmd.Record:
    return cmd.Record("call.queued", {"call": call, "queue": "support", "at": at, "requeued": False})


def _created(q: dict, offer: str, at: float) -> cmd.Record:
    return cmd.Record("offer.created", q | {"at": at, "offer": offer, "agent": "alice"})


async def _rows(db, table):
    async with db.connect() as conn:
        return {r.id: r for r in (await conn.execute(select(table))).all()}


async def test_open_rows_of_an_earlier_run_are_closed_and_ours_are_not(db):
    earlier = HistoryWriter(db, epoch=EPOCH, linger=0.0)
    earlier.start()
    for call in ("gone", "talked", "held", "mine"):
        for c in _records(call, answered=call == "talked"):
            earlier.listener(c)
    for c in call_records("done"):  # a complete call: never touched
        earlier.listener(c)
    await earlier.close()

    writer = HistoryWriter(db, epoch=EPOCH, linger=0.0)
    writer.touched = set()
    writer.start()
    writer.listener(_queued("mine", at=50.0))  # this run took "mine" back (same call id)
    await writer.flushed()
    books = Books(
        writer,
        in_app=_in_app({"held"}),  # still in the app: not gone
        known_calls=lambda: set(),
        restored={"talked-1": "talked-t2.1"},  # its leg was found answered and kept
        now=lambda: 100.0,
        detail="restart",
        ids_reused=True,
    )
    books.start()
    await until(books.done.is_set)
    assert writer.touched is None  # collecting stops once the books are closed
    await writer.close()

    offers, calls = await _rows(db, OfferRow), await _rows(db, CallRow)
    now = earlier.ts(100.0)
    assert (offers["gone-1"].outcome, offers["gone-1"].detail) == ("interrupted", "restart")
    assert offers["gone-1"].ended_at.replace(tzinfo=None) == now.replace(tzinfo=None)
    assert (offers["talked-1"].outcome, offers["talked-1"].detail) == ("accepted", "restart")
    assert offers["held-1"].outcome == "interrupted"  # its call is in the app, its leg is not ours
    assert offers["mine-1"].outcome is None  # ids reused (single node): the call is ours now
    assert (calls["gone"].outcome, calls["gone"].detail) == ("abandoned", "no_controller")
    assert calls["gone"].wait == 90.0 and calls["gone"].talk == 0.0
    assert (calls["talked"].outcome, calls["talked"].detail) == ("completed", "no_controller")
    assert calls["talked"].wait == 5.0 and calls["talked"].talk == 85.0
    assert calls["held"].outcome is None and calls["mine"].outcome is None
    assert (calls["done"].outcome, offers["done-1"].outcome) == ("completed", "rejected")
    assert books.closed == {
        "offers_interrupted": 2,
        "offers_accepted": 1,
        "calls_abandoned": 1,
        "calls_completed": 1,
    }


async def test_a_fenced_replica_closes_nothing(db):
    earlier = HistoryWriter(db, epoch=EPOCH, linger=0.0)
    earlier.start()
    for c in _records("gone"):
        earlier.listener(c)
    await earlier.close()
    writer = HistoryWriter(db, epoch=EPOCH, linger=0.0)

    async def fenced(_conn) -> None:
        raise RuntimeError("test: not the lease holder")

    writer.guard = fenced
    books = Books(
        writer,
        in_app=_in_app(set()),
        known_calls=set,
        restored={},
        now=lambda: 100.0,
        detail="takeover",
        ids_reused=False,
    )
    books.start()
    await until(lambda: books.failures >= 1)
    await books.stop()
    assert not books.done.is_set()
    assert (await _rows(db, OfferRow))["gone-1"].outcome is None


def _in_app(ids: set[str]):
    async def in_app() -> set[str]:
        return set(ids)

    return in_app


async def test_single_node_restart_closes_what_the_previous_run_left_open(db):
    """A single-node controller dies while an agent's phone rings for a caller and another caller
    waits; both callers hang up before the next start. The next run hangs the orphan leg up and
    closes the offer (``interrupted``/``restart``) and both calls (``abandoned``/``no_controller``);
    a third caller it takes back keeps its own row."""
    clock = Clock(speed=20)
    sim = SimAsterisk(clock=clock, seed=1, user="acd", password="secret")
    await sim.start("127.0.0.1", 0)
    setup = make_setup({"alice": "alice"}, ring_timeout=600)
    sim.add_phone("alice", NoAnswer())
    settings = load_settings(env_file=None, database_url="sqlite+aiosqlite:///unused", admin_token="x" * 16)
    options = {"linger": 0.005, "retry_initial": 0.05, "retry_max": 0.2}
    kw = dict(ari_url=sim.base_url, ari_user="acd", ari_password="secret", clock=clock, seed=1)
    runs: list[tuple[Controller, Services]] = []

    async def run() -> tuple[Controller, Services]:
        controller = Controller(setup, **kw)
        services = Services(controller, settings, db=db, writer_options=options)
        runs.append((controller, services))
        await services.attach()
        await controller.start()
        services.close_books("restart")  # as ``acdctl run`` does once resynced
        return controller, services

    try:
        first, first_services = await run()
        ringing_for = sim.place_call("101", caller_number="1001")
        await sim.phones["alice"].wait_for_invite(timeout=30)
        invite = sim.phones["alice"].last_invite
        waiting = sim.place_call("101", caller_number="1002")
        stays = sim.place_call("101", caller_number="1003")
        await stays.wait_for(lambda r: r.hearing_moh, timeout=30)
        await waiting.wait_for(lambda r: r.hearing_moh, timeout=30)
        await first_services.writer.flushed()
        await first.stop()  # the process dies: Asterisk keeps every channel
        await first_services.close()
        ringing_for.hangup()
        waiting.hangup()
        await sim.wait_for(lambda: ringing_for.ended and waiting.ended, timeout=30, what="callers gone")

        second, services = await run()
        await invite.wait_for(lambda r: r.outcome == "cancelled", timeout=30)  # the orphan leg
        assert services.books is not None
        await until(services.books.done.is_set, timeout=30)
        offers, calls = await _rows(db, OfferRow), await _rows(db, CallRow)
        old = offers[invite.channel_id.rpartition(".")[0]]
        assert (old.outcome, old.detail) == ("interrupted", "restart")
        for caller in (ringing_for, waiting):
            row = calls[caller.channel_id]
            assert (row.outcome, row.detail) == ("abandoned", "no_controller")
            assert row.ended_at is not None and row.ended_at - row.arrived_at >= timedelta(0)
        assert calls[stays.channel_id].outcome is None  # taken back: its own, still waiting
    finally:
        for controller, services in reversed(runs):
            await controller.stop()
            await services.close()
        await sim.stop()
