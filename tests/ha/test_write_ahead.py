"""Hot standby's write-ahead and the closing of the books at takeover.

Nothing a caller or an agent can perceive happens before the row behind it is committed: with the
history tables locked by another session (rows cannot commit), the simulator's REST log shows no
ring and no answer; a database that does not confirm within the bound means no ring at all. A
killed active leaves its ringing offer's row, which the new active closes (``interrupted`` /
``takeover``), and the call of a caller who left meanwhile (``abandoned`` / ``no_controller``).
Evidence: the simulator's records and the store's rows.
"""

from __future__ import annotations

from sqlalchemy import select, text

from controller.sim import Answer, NoAnswer
from controller.store.history import CallRow, OfferRow
from tests.telephony.conftest import make_setup
from tests.timing import until


def _acts(log, since: int) -> list[str]:
    """Requests a caller or an agent would perceive: a leg originated (or created, dialled), a
    caller answered or given ringback."""
    return [
        f"{r.method} {r.path}"
        for r in list(log)[since:]
        if r.method == "POST"
        and (r.path in ("/channels", "/channels/create") or r.path.endswith(("/dial", "/answer", "/ring")))
    ]


async def _rows(db, *cols):
    async with db.connect() as conn:
        return (await conn.execute(select(*cols))).all()


async def test_no_ring_and_no_answer_leaves_before_the_rows_are_committed(cluster_factory, pg_db):
    engine, _url, _schema = pg_db
    # a long TTL: the held lock also holds the writer's lease check, so renewals wait behind it
    c = await cluster_factory(
        make_setup({"alice": "alice"}), {"alice": Answer(after=0.5)}, ha_ttl=20, ha_renew=2
    )
    a = await c.replica("a")
    await until(a.node.became_active.is_set)
    writer = a.services.writer
    start = len(c.sim.rest_log)
    async with engine.connect() as locker:
        trans = await locker.begin()
        await locker.execute(text("lock table acd_calls, acd_offers in exclusive mode"))
        caller = c.sim.place_call("101", caller_number="1001")
        # the new caller's first action is held by the write-ahead (before: it went out at once)
        await until(lambda: getattr(writer, "waiting", 0) > 0 or _acts(c.sim.rest_log, start))
        assert _acts(c.sim.rest_log, start) == []
        assert caller.answered_at is None and not c.sim.phones["alice"].invites
        await trans.rollback()
    await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)
    # every INVITE's offer row and the caller's row are there
    invite = c.sim.phones["alice"].last_invite
    offers = {r.id for r in await _rows(a.services.db, OfferRow.id)}
    assert invite.channel_id.rpartition(".")[0] in offers
    assert caller.channel_id in {r.id for r in await _rows(a.services.db, CallRow.id)}
    assert a.controller.shell.stats["ring_not_stored"] == 0


async def test_database_not_confirming_in_time_means_no_ring(cluster_factory):
    """The active's history writes fail (its lease renewals do not): past the bound the phone is
    not rung, the offer ends ``canceled``/``not_stored`` and the caller is rung once the database
    is back."""
    c = await cluster_factory(
        make_setup({"alice": "alice"}), {"alice": Answer(after=0.5)}, ha_ttl=4, ha_renew=0.5
    )
    a = await c.replica("a")
    await until(a.node.became_active.is_set)
    a.durable_wait = 0.3
    writer = a.services.writer
    guard = writer.guard

    async def down(_conn) -> None:
        raise ConnectionRefusedError("test: database unreachable")

    writer.guard = down
    caller = c.sim.place_call("101", caller_number="1001")
    shell = a.controller.shell
    await until(lambda: shell.stats["ring_not_stored"] >= 1 or c.sim.phones["alice"].invites)
    assert not c.sim.phones["alice"].invites and caller.answered_at is None
    assert shell.stats["park_not_stored"] == 1 and writer.stats["durable_timeouts"] >= 2
    assert a.node.role == "active"  # its lease is fine: only the history could not be written
    writer.guard = guard
    await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)
    await writer.flushed()
    rows = {r.id: r for r in await _rows(a.services.db, OfferRow.id, OfferRow.outcome, OfferRow.detail)}
    invited = {i.channel_id.rpartition(".")[0] for i in c.sim.phones["alice"].invites}
    unrung = [r for oid, r in rows.items() if oid not in invited]
    assert unrung and {(r.outcome, r.detail) for r in unrung} == {("canceled", "not_stored")}
    assert invited <= set(rows)


async def test_killed_active_right_after_ringing_leaves_rows_the_new_active_closes(cluster_factory):
    setup = make_setup({"alice": "alice"}, ring_timeout=600)
    c = await cluster_factory(setup, {"alice": [NoAnswer(), Answer(after=0.5)]})
    sim = c.sim
    a = await c.replica("a")
    await until(a.node.became_active.is_set)
    b = await c.replica("b")
    waiting = sim.place_call("101", caller_number="1001")
    alice = sim.phones["alice"]
    await alice.wait_for_invite(timeout=30)
    ringing = alice.last_invite
    leaver = sim.place_call("101", caller_number="1002")
    await leaver.wait_for(lambda r: r.hearing_moh, timeout=30)
    await a.kill()  # kill -9 right after ringing: nothing flushed, no release
    leaver.hangup()  # gone while no controller is active
    assert not b.node.became_active.is_set()
    await until(b.node.became_active.is_set)
    await ringing.wait_for(lambda r: r.outcome == "cancelled", timeout=30)
    await waiting.wait_for(lambda r: r.bridged_with == "alice", timeout=30)
    await until(b.services.books.done.is_set)
    await b.services.writer.flushed()
    db = b.services.db
    offers = {
        r.id: r for r in await _rows(db, OfferRow.id, OfferRow.outcome, OfferRow.detail, OfferRow.ended_at)
    }
    old = offers[ringing.channel_id.rpartition(".")[0]]
    assert (old.outcome, old.detail) == ("interrupted", "takeover") and old.ended_at is not None
    calls = {r.id: r for r in await _rows(db, CallRow.id, CallRow.outcome, CallRow.detail, CallRow.ended_at)}
    gone = calls[leaver.channel_id]
    assert (gone.outcome, gone.detail) == ("abandoned", "no_controller") and gone.ended_at is not None
    # the caller the new active took back is its own: not closed by the books
    assert calls[waiting.channel_id].detail != "no_controller"
    assert b.services.books.closed == {"offers_interrupted": 1, "calls_abandoned": 1}
