"""Hot standby on the simulator: the standby takes over, callers keep their place, talking calls are
untouched, ringing offers are resolved, and the former active neither sends nor writes.

Evidence comes from the simulator's own records (what phones and callers saw, what is left in it)
and from the store's rows, not from the engines.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from controller.ari.errors import Fenced
from controller.sim import Answer, NoAnswer
from controller.store.history import CallRow, OfferRow
from tests.ha.conftest import alice_talking_bob_ringing
from tests.telephony.conftest import make_setup


async def _until(pred, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - replica state changes wake no waiter
            await asyncio.sleep(0.01)


async def test_standby_waits_and_answers_with_the_active_address(cluster_factory):
    c = await cluster_factory(make_setup({"alice": "alice"}), {"alice": Answer(after=0.5)})
    a = await c.replica("a")
    await _until(a.node.became_active.is_set)
    b = await c.replica("b")
    await _until(lambda: b.url is not None)
    status, body, _ = await c.get(b, "/healthz", token=None)
    assert status == 200 and body["role"] == "standby" and body["ha"]["active_holder"] == "a"
    status, body, headers = await c.get(b, "/api/queues")
    assert status == 503 and body["error"] == "standby"
    assert headers["X-ACD-Active"] == a.lease.address == body["active"]
    status, text, _ = await c.get(b, "/metrics")
    assert status == 200 and "acd_active 0.0" in text
    status, text, _ = await c.get(a, "/metrics")
    assert status == 200 and "acd_active 1.0" in text
    status, body, _ = await c.get(a, "/healthz", token=None)
    assert body["role"] == "active" and body["ha"]["active_holder"] == "a"
    # only the active one holds the app's websocket: a caller is routed by it
    caller = c.sim.place_call("101")
    await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)
    assert b.controller is None


async def test_clean_stop_hands_over_at_once(cluster_factory):
    c = await cluster_factory(
        make_setup({"alice": "alice"}), {"alice": Answer(after=0.5)}, ha_ttl=60, ha_renew=1
    )
    a = await c.replica("a")
    await _until(a.node.became_active.is_set)
    b = await c.replica("b")
    assert await a.stop() == "stopped"
    await _until(b.node.became_active.is_set, timeout=10)  # long before the 60 s TTL
    caller = c.sim.place_call("101")
    await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)


async def test_killed_active_standby_takes_over_callers_keep_their_place(cluster_factory):
    setup = make_setup({"alice": "alice", "bob": "bob"}, ring_timeout=600)
    phones = {"alice": Answer(after=0.5), "bob": [NoAnswer(), Answer(after=0.5)]}
    c = await cluster_factory(setup, phones)
    sim = c.sim
    a = await c.replica("a")
    await _until(a.node.became_active.is_set)
    b = await c.replica("b")
    first, second, ringing = await alice_talking_bob_ringing(sim, timeout=30)
    third = sim.place_call("101", caller_number="1003")
    await third.wait_for(lambda r: r.hearing_moh, timeout=30)

    await a.services.writer.flushed()  # what a kill loses from memory is not this test's subject
    await a.kill()  # kill -9: no release, the lease expires on the database's clock
    await _until(b.node.became_active.is_set)

    # the ringing offer of the dead active is resolved (its INVITE cancelled), the caller it
    # rang for is offered again before the caller who came after
    await ringing.wait_for(lambda r: r.outcome == "cancelled", timeout=30)
    await second.wait_for(lambda r: r.bridged_with == "bob", timeout=30)
    assert third.bridged_with is None and third.channel is not None and third.outcome != "abandoned"
    # the talking call was never touched
    assert first.bridged_with == "alice" and len(first.media) == 1
    alice_call = sim.phones["alice"].last_invite
    assert alice_call.outcome == "answered" and len(alice_call.media) == 1
    # stored once: each INVITE a phone got is exactly one offer row
    await b.services.writer.flushed()
    async with b.services.db.connect() as conn:
        offers = (await conn.execute(select(OfferRow.id, OfferRow.agent, OfferRow.detail))).all()
        calls = {r.id for r in (await conn.execute(select(CallRow.id))).all()}
    rung = [o for o in offers if o.detail != "restored"]
    assert len({o.id for o in offers}) == len(offers)
    assert sorted(o.agent for o in rung) == ["alice", "bob", "bob"]
    assert {first.channel_id, second.channel_id, third.channel_id} <= calls
    assert b.node.stats["takeovers"] == 1 and b.node.takeover_seconds


async def test_frozen_active_is_fenced_and_sends_nothing_after_the_takeover(cluster_factory):
    """A frozen active (renewals paused, as under SIGSTOP) that comes back acts on nothing: its ARI
    requests are refused before they leave, Asterisk gave the app to the new one (ApplicationReplaced)."""
    setup = make_setup({"alice": "alice"})
    c = await cluster_factory(setup, {"alice": Answer(after=0.5)})
    a = await c.replica("a")
    await _until(a.node.became_active.is_set)
    b = await c.replica("b")
    caller = c.sim.place_call("101", caller_number="1001")
    await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)
    old_client = a.controller.client
    a.node.paused = True  # frozen: no renewal, no deadline timer
    await _until(b.node.became_active.is_set)
    await _until(lambda: a.ended.done())
    assert a.ended.result() in ("replaced", "deadline")
    # the former active wakes up and tries to act on the call
    with pytest.raises(Fenced):
        await old_client.hangup(caller.channel_id)
    assert caller.channel is not None and caller.bridged_with == "alice"
    assert a.node.role == "fenced"


async def test_active_that_cannot_renew_is_fenced_at_its_deadline_and_the_standby_takes_over(cluster_factory):
    """The database is unreachable from the active (renewals fail, not refused): the watchdog fences
    it when its local deadline passes, before the row expires, and a standby takes over."""
    c = await cluster_factory(make_setup({"alice": "alice"}), {"alice": Answer(after=0.5)})
    a = await c.replica("a")
    await _until(a.node.became_active.is_set)
    b = await c.replica("b")

    async def unreachable() -> bool:
        raise ConnectionRefusedError("database down")

    a.lease.renew = unreachable  # type: ignore[method-assign]
    await _until(lambda: a.ended.done())
    assert a.ended.result() == "deadline" and a.node.stats["renew_failures"] >= 1
    await _until(b.node.became_active.is_set)
    caller = c.sim.place_call("101")
    await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)


async def test_active_cut_off_from_ari_hands_the_app_over(cluster_factory):
    """The active's events websocket stays down longer than the grace: it releases the lease; a
    replica that can reach Asterisk takes the app."""
    c = await cluster_factory(make_setup({"alice": "alice"}), {"alice": Answer(after=0.5)})
    a = await c.replica("a")
    await _until(a.node.became_active.is_set)
    b = await c.replica("b")
    await c.sim.drop_connections("acd", refuse_for=3 * 20.0)  # 3 wall s > ACD_HA_TTL (1 s)
    await _until(lambda: a.ended.done())
    assert a.ended.result() == "ari" and a.node.stats["ari_lost"] == 1
    await _until(b.node.became_active.is_set)
    caller = c.sim.place_call("101")
    await caller.wait_for(lambda r: r.bridged_with == "alice", timeout=30)


async def test_a_term_whose_websocket_never_connects_gives_the_lease_up(cluster_factory):
    """Won the lease but Asterisk refuses the events websocket: it must not keep the app."""
    c = await cluster_factory(make_setup({"alice": "alice"}), {"alice": Answer(after=0.5)})
    c.sim.refuse_websockets()  # until further notice
    a = await c.replica("a")
    a.node.start_grace = 0.2
    await _until(lambda: a.ended.done())
    assert a.ended.result() == "ari" and a.node.stats["takeovers"] == 1
    info = await a.lease.current()
    assert info is not None and not info.live  # released: the next replica need not wait


async def test_standby_api_says_starting_once_the_lease_is_won():
    """The node is "active" while its term starts and the standby API still answers: /healthz must
    not send clients there yet (found by tests/ha/test_processes.py)."""
    from collections import Counter
    from types import SimpleNamespace

    from aiohttp.test_utils import TestClient, TestServer

    from controller.api.auth import Auth
    from controller.ha.standby_api import build_standby_app

    node = SimpleNamespace(role="standby", stats=Counter(), takeover_seconds=[], lease=None)

    async def status():
        return {"active": None}

    async with TestClient(TestServer(build_standby_app(node, Auth("x" * 16, {}), status))) as client:
        assert (await (await client.get("/healthz")).json())["role"] == "standby"
        node.role = "active"
        assert (await (await client.get("/healthz")).json())["role"] == "starting"
