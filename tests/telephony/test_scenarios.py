"""The product's behaviour, call by call, on the simulated Asterisk over real HTTP/WebSocket.

Times are simulated seconds (the clock runs at ``SPEED``); each test reads as a spec line.
"""

from __future__ import annotations

import asyncio

from controller.acd.engine import Presence
from controller.acd.setup import Acceptance, DialplanTarget, HoldMode, Strategy
from controller.sim import DND, Answer, Busy, Decline, NoAnswer
from tests.telephony.conftest import make_setup

TWO = {"alice": "agent1", "bob": "agent2"}


def outcomes(w, call) -> list[tuple[str, str]]:
    """(agent, outcome) of every ended offer of a caller's call, from the controller's history."""
    return [
        (r.data["agent"], r.data["outcome"])
        for r in w.records
        if r.kind == "offer.ended" and r.data["call"] == call.channel_id
    ]


async def test_accept_on_first_offer(world_factory):
    w = await world_factory(make_setup(TWO), {"agent1": Answer(after=1), "agent2": Answer()})
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with is not None, timeout=30)
    assert caller.bridged_with == "agent1"
    invite = w.sim.phones["agent1"].last_invite
    name, number = invite.display
    assert name.startswith("[support 0:0") and name.endswith("] Maria") and number == "5551234"
    assert not invite.auto_answer, "never auto-answer in answer mode"
    assert invite.headers["X-Acd-Queue"] == "support"
    assert invite.headers["X-Acd-Caller"] == "5551234"
    assert caller.moh, "the caller heard music while parked"
    assert not w.sim.phones["agent2"].invites


async def test_reject_moves_to_next_agent_at_once(world_factory):
    w = await world_factory(make_setup(TWO), {"agent1": Decline(after=1), "agent2": Answer(after=1)})
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with is not None, timeout=30)
    assert caller.bridged_with == "agent2"
    first, second = w.sim.phones["agent1"].last_invite, w.sim.phones["agent2"].last_invite
    assert first.final_code == 603
    assert second.at >= first.ended_at
    # "at once": bob's offer is made in the very engine step that ends alice's (the same `at`),
    # not after a timer; wall-clock gaps on a loaded machine say nothing about that.
    ended = [r for r in w.records if r.kind == "offer.ended" and r.data["agent"] == "alice"]
    created = [r for r in w.records if r.kind == "offer.created" and r.data["agent"] == "bob"]
    assert ended and created and created[0].data["at"] == ended[0].data["at"]
    assert outcomes(w, caller) == [("alice", "rejected"), ("bob", "accepted")]


async def test_busy_moves_to_next_and_applies_busy_delay(world_factory):
    w = await world_factory(
        make_setup(TWO, busy_delay=10), {"agent1": Busy(after=0.5), "agent2": Answer(after=1)}
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    assert outcomes(w, caller)[0] == ("alice", "busy")
    alice = w.engine.agents["alice"]
    assert alice.delayed and alice.status == "delayed"


async def test_no_answer_moves_on_after_ring_timeout(world_factory):
    w = await world_factory(
        make_setup(TWO, ring_timeout=5), {"agent1": NoAnswer(), "agent2": Answer(after=1)}
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=20)
    first = w.sim.phones["agent1"].last_invite
    assert first.outcome == "cancelled"
    # the controller's ring timeout (5 s), never Asterisk's backstop (5 s later): late is fine
    assert 4.5 <= first.ended_at - first.at < 10.0, "rang for the ring timeout, not Asterisk's backstop"
    assert outcomes(w, caller)[0] == ("alice", "no_answer")
    assert w.engine.agents["alice"].misses == 1


async def test_offline_agent_is_never_rung(world_factory):
    w = await world_factory(
        make_setup(TWO), {"agent1": Answer(), "agent2": Answer(after=1)}, offline=("agent1",)
    )
    await w.until(lambda: not w.engine.agents["alice"].reachable)
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    assert not w.sim.phones["agent1"].invites


async def test_agent_going_offline_is_skipped_and_back_online_rung_again(world_factory):
    w = await world_factory(make_setup({"alice": "agent1"}), {"agent1": Answer(after=0.5, hangup_after=2)})
    w.sim.phones["agent1"].unregister()
    await w.until(lambda: not w.engine.agents["alice"].reachable)
    caller = w.call()
    await asyncio.sleep(0.1)
    assert not w.sim.phones["agent1"].invites
    w.sim.phones["agent1"].register()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)


async def test_allocation_failure_is_unreachable_and_next_agent_rung(world_factory):
    # registered as far as the controller knows, but gone when the offer is made
    w = await world_factory(
        make_setup(TWO, unreachable_delay=5), {"agent1": Answer(), "agent2": Answer(after=1)}
    )
    w.controller.engine.agents["alice"].reachable = True
    w.sim.phones["agent1"].unregister()
    w.controller.shell.feed = _drop_endpoint_events(w.controller.shell.feed)
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    assert outcomes(w, caller)[0] == ("alice", "unreachable")


def _drop_endpoint_events(feed):
    from controller.acd import events as ev

    def wrapped(event):
        if not isinstance(event, ev.EndpointState):
            feed(event)

    return wrapped


async def test_dnd_480_is_unavailable_and_next_agent(world_factory):
    w = await world_factory(make_setup(TWO), {"agent1": DND(after=0.3), "agent2": Answer(after=1)})
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    offer = next(r.data for r in w.records if r.kind == "offer.ended" and r.data["agent"] == "alice")
    assert (offer["outcome"], offer["detail"], offer["cause"], offer["tech_cause"]) == (
        "unreachable",
        "unavailable",
        19,
        480,
    )


async def test_caller_hangs_up_while_agent_rings(world_factory):
    w = await world_factory(
        make_setup(TWO, reject_delay=30, no_answer_delay=30), {"agent1": NoAnswer(), "agent2": Answer()}
    )
    caller = w.call(hangup_after=2)
    await caller.wait_for(lambda c: c.outcome == "hung_up", timeout=30)  # answered by the park, then BYE
    invite = w.sim.phones["agent1"].last_invite
    await invite.wait_for(lambda i: i.outcome == "cancelled", timeout=30)
    await w.until(lambda: w.engine.agents["alice"].eligible)
    assert w.engine.agents["alice"].misses == 0 and not w.engine.agents["alice"].delayed, "no penalty"
    assert outcomes(w, caller) == [("alice", "canceled")]
    ended = [r.data for r in w.records if r.kind == "call.ended"]
    assert ended[0]["outcome"] == "abandoned"


async def test_caller_hangs_up_while_connected_agent_leg_hung_up(world_factory):
    w = await world_factory(make_setup(TWO, wrapup=3), {"agent1": Answer(after=0.5), "agent2": Answer()})
    caller = w.call(hangup_after_answer=2)
    await caller.wait_for(lambda c: c.outcome == "hung_up", timeout=30)
    invite = w.sim.phones["agent1"].last_invite
    await invite.wait_for(lambda i: i.outcome == "ended", timeout=30)
    assert invite.ended_by == "asterisk"
    ended = [r.data for r in w.records if r.kind == "call.ended"][0]
    assert ended["outcome"] == "completed" and ended["hung_up_by"] == "caller"
    await w.until(lambda: not w.sim.bridges)


async def test_agent_hangs_up_connected_call_caller_hung_up(world_factory):
    w = await world_factory(
        make_setup(TWO), {"agent1": Answer(after=0.5, hangup_after=2), "agent2": Answer()}
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.outcome in ("disconnected", "hung_up"), timeout=30)
    ended = [r.data for r in w.records if r.kind == "call.ended"][0]
    assert ended["hung_up_by"] == "agent"
    await w.until(lambda: not w.sim.bridges)


async def test_wrapup_is_honoured(world_factory):
    w = await world_factory(
        make_setup({"alice": "agent1"}, wrapup=5), {"agent1": Answer(after=0.2, hangup_after=1)}
    )
    c1 = w.call()
    await c1.wait_for(lambda c: c.outcome in ("disconnected", "hung_up"), timeout=30)
    ended_at = w.controller.clock.now()
    c2 = w.call()
    await c2.wait_for(lambda c: c.bridged_with == "agent1", timeout=20)
    second = w.sim.phones["agent1"].invites[1]
    assert second.at - w.sim.phones["agent1"].invites[0].ended_at >= 4.9
    assert w.controller.clock.now() - ended_at >= 4.9


async def test_not_responding_after_max_no_answer(world_factory):
    w = await world_factory(
        make_setup({"alice": "agent1"}, ring_timeout=2, max_no_answer=2, retry=0), {"agent1": NoAnswer()}
    )
    w.call()
    await w.until(lambda: w.engine.agents["alice"].presence is Presence.NOT_RESPONDING, timeout=20)
    count = len(w.sim.phones["agent1"].invites)
    assert count == 2
    await asyncio.sleep(0.3)
    assert len(w.sim.phones["agent1"].invites) == count, "no offers while not responding"


async def test_confirm_mode_accept_with_1(world_factory):
    setup = make_setup(TWO, acceptance=Acceptance.CONFIRM)
    w = await world_factory(setup, {"agent1": Answer(after=0.5, dtmf=((1.5, "1"),)), "agent2": Answer()})
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    invite = w.sim.phones["agent1"].last_invite
    assert invite.playbacks, "the agent heard the call's details before accepting"
    assert caller.media[0].start >= invite.answered_at + 1.4, "the customer is connected only after the 1"


async def test_confirm_mode_reject_with_2(world_factory):
    setup = make_setup(TWO, acceptance=Acceptance.CONFIRM)
    w = await world_factory(
        setup,
        {"agent1": Answer(after=0.5, dtmf=((1.0, "2"),)), "agent2": Answer(after=0.5, dtmf=((1.0, "1"),))},
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    assert outcomes(w, caller)[0] == ("alice", "rejected")


async def test_confirm_mode_no_digit_is_no_answer(world_factory):
    setup = make_setup(TWO, acceptance=Acceptance.CONFIRM, confirm_timeout=3)
    w = await world_factory(
        setup, {"agent1": Answer(after=0.5), "agent2": Answer(after=0.5, dtmf=((1.0, "1"),))}
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=20)
    assert outcomes(w, caller)[0] == ("alice", "no_answer")
    assert not w.sim.phones["agent1"].invites[0].media, "alice never talked to the customer"


async def test_caller_hangs_up_during_confirm(world_factory):
    setup = make_setup(TWO, acceptance=Acceptance.CONFIRM)
    w = await world_factory(setup, {"agent1": Answer(after=0.5, dtmf=((3.0, "1"),)), "agent2": Answer()})
    caller = w.call(hangup_after=2)
    await caller.wait_for(lambda c: c.outcome == "hung_up", timeout=30)  # answered by the park, then BYE
    invite = w.sim.phones["agent1"].last_invite
    await invite.wait_for(lambda i: i.outcome == "ended", timeout=30)
    await asyncio.sleep(0.3)
    assert caller.bridged_with is None
    assert outcomes(w, caller) == [("alice", "canceled")]


async def test_answer_racing_the_ring_timer_is_never_connected(world_factory):
    w = await world_factory(
        make_setup(TWO, ring_timeout=3), {"agent1": NoAnswer(), "agent2": Answer(after=1)}
    )
    client = w.controller.client
    real_hangup = client.hangup
    phone = w.sim.phones["agent1"]

    async def slow_hangup(channel_id, reason="normal"):
        # the ring timer fired and the DELETE is slow: the agent answers meanwhile
        invite = phone.last_invite
        if invite is not None and invite.outcome == "ringing":
            invite.answer()
            await asyncio.sleep(0.05)
        return await real_hangup(channel_id, reason)

    client.hangup = slow_hangup
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with is not None, timeout=20)
    assert caller.bridged_with == "agent2"
    late = phone.invites[0]
    await late.wait_for(lambda i: i.outcome == "ended", timeout=30)
    assert not late.media, "the late answer never reached the customer"
    assert w.engine.stats["late_answer"] == 1


async def test_two_calls_racing_for_one_agent(world_factory):
    w = await world_factory(
        make_setup({"alice": "agent1"}, wrapup=0), {"agent1": Answer(after=0.5, hangup_after=2)}
    )
    c1, c2 = w.call(caller_number="5550001"), w.call(caller_number="5550002")
    await c1.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    assert len(w.sim.phones["agent1"].active_calls) == 1
    await c2.wait_for(lambda c: c.bridged_with == "agent1", timeout=20)
    invites = w.sim.phones["agent1"].invites
    assert [i.display[1] for i in invites] == ["5550001", "5550002"]
    assert invites[1].at >= invites[0].ended_at, "never two offers on one agent's phone"


async def test_ring_all_first_answer_wins(world_factory):
    setup = make_setup({"alice": "agent1", "bob": "agent2", "carol": "agent3"}, strategy=Strategy.RING_ALL)
    w = await world_factory(
        setup, {"agent1": Answer(after=2), "agent2": Answer(after=1), "agent3": NoAnswer()}
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    for name in ("agent1", "agent3"):
        invite = w.sim.phones[name].last_invite
        await invite.wait_for(lambda i: i.outcome in ("cancelled", "ended"), timeout=30)
        assert invite.outcome == "cancelled", f"{name}: {invite.outcome}"
        assert any("Call completed elsewhere" in r for r in invite.cancel_reasons)


async def test_max_wait_overflow_continues_in_dialplan(world_factory):
    target = DialplanTarget("acd-overflow", "s", 1)
    w = await world_factory(
        make_setup({"alice": "agent1"}, max_wait=4, overflow=target), {"agent1": NoAnswer()}
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.outcome == "continued", timeout=20)
    assert caller.continued_to == ("acd-overflow", "s", 1)
    await w.sim.phones["agent1"].last_invite.wait_for(lambda i: i.outcome == "cancelled", timeout=30)
    await w.until(lambda: not w.sim.bridges)


async def test_unknown_queue_continues_to_dialplan_fallback(world_factory):
    w = await world_factory(make_setup({"alice": "agent1"}), {"agent1": Answer()})
    w.sim.dialplan["102"] = ("acd", ["nosuch"])
    caller = w.sim.place_call("102", caller_number="5551234", caller_name="Maria")
    await caller.wait_for(lambda c: c.outcome == "continued", timeout=30)
    assert not w.sim.phones["agent1"].invites


async def test_hold_moh_answers_and_plays_music(world_factory):
    w = await world_factory(make_setup({"alice": "agent1"}, hold=HoldMode.MOH), {"agent1": Answer(after=2)})
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    assert caller.moh and not caller.ringback
    assert caller.answered_at < w.sim.phones["agent1"].last_invite.answered_at


async def test_hold_ring_leaves_caller_unanswered_until_accept(world_factory):
    w = await world_factory(make_setup({"alice": "agent1"}, hold=HoldMode.RING), {"agent1": Answer(after=2)})
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    assert caller.ringback and not caller.moh
    assert caller.answered_at >= w.sim.phones["agent1"].last_invite.answered_at


async def test_websocket_dropped_mid_call_reconnects_and_nothing_is_lost(world_factory):
    w = await world_factory(
        make_setup(TWO, ring_timeout=30), {"agent1": Answer(after=1), "agent2": Answer(after=1)}
    )
    talking = w.call(caller_number="5550001")
    await talking.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    stream = w.controller.stream
    await w.sim.drop_connections()
    # during the gap: the talking caller hangs up (its events are lost for good)
    talking.hangup()
    await w.until(lambda: stream.stats["reconnects"] >= 1 and stream.connected)
    await w.until(lambda: not w.engine.calls.get(talking.channel_id))
    ended = [r.data for r in w.records if r.kind == "call.ended"]
    assert ended and ended[0]["call"] == talking.channel_id
    # alice's leg was hung up and she takes the next call once wrap-up is over
    waiting = w.call(caller_number="5550002")
    await waiting.wait_for(lambda c: c.bridged_with is not None, timeout=20)


async def test_caller_waiting_during_reconnect_is_still_served(world_factory):
    w = await world_factory(make_setup({"alice": "agent1"}), {"agent1": Answer(after=1)}, offline=("agent1",))
    caller = w.call()
    await w.until(lambda: caller.channel_id in w.engine.calls)
    await w.sim.drop_connections()
    w.sim.phones["agent1"].register()  # its EndpointStateChange is lost in the gap
    await w.until(lambda: w.controller.stream.stats["reconnects"] >= 1 and w.controller.stream.connected)
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=20)


async def test_caller_hangs_up_while_the_agent_answers(world_factory):
    w = await world_factory(make_setup(TWO, wrapup=1), {"agent1": Answer(after=1.0), "agent2": Answer()})
    caller = w.call(hangup_after=1.0)  # the same instant the agent picks up
    invite = await w.sim.phones["agent1"].wait_for_invite()
    await invite.wait_for(lambda i: i.outcome in ("ended", "cancelled"), timeout=30)
    await caller.wait_for(lambda c: c.ended_at is not None, timeout=30)
    await w.until(lambda: not w.engine.calls and not w.controller.shell.legs and not w.sim.bridges)
    ended = [r.data for r in w.records if r.kind == "call.ended"]
    assert len(ended) == 1, "exactly one terminal outcome"
    assert not w.sim.phones["agent2"].invites, "nobody else is rung for a caller who left"
    await w.until(lambda: w.engine.agents["alice"].eligible)


async def test_desktop_accept_calls_the_phone_with_auto_answer_and_connects(world_factory):
    from controller.acd import events as ev

    setup = make_setup(TWO, acceptance=Acceptance.DESKTOP)
    w = await world_factory(setup, {"agent1": NoAnswer(), "agent2": NoAnswer()})
    w.sim.phones["agent1"].honor_auto_answer = True
    notes = []
    w.controller.shell.listeners.append(
        lambda c: notes.append(c) if getattr(c, "kind", "") == "offer.created" else None
    )
    caller = w.call()
    await w.until(lambda: notes)
    await asyncio.sleep(0.1)
    assert not w.sim.phones["agent1"].invites, "desktop: the phone does not ring before Accept"
    w.controller.shell.feed(ev.OfferAccepted(notes[0].data["offer_id"], "alice"))
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    invite = w.sim.phones["agent1"].last_invite
    assert invite.auto_answer and invite.auto_answer_headers


async def test_no_auto_answer_header_in_answer_or_confirm_mode(world_factory):
    setup = make_setup(TWO, acceptance=Acceptance.CONFIRM)
    w = await world_factory(
        setup, {"agent1": Decline(after=0.2), "agent2": Answer(after=0.2, dtmf=((0.5, "1"),))}
    )
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with == "agent2", timeout=30)
    invites = w.sim.phones["agent1"].invites + w.sim.phones["agent2"].invites
    assert invites and not any(i.auto_answer for i in invites)


async def test_an_agent_whose_endpoint_asterisk_does_not_know_does_not_stop_the_others(world_factory):
    # "agent9" is in the queue file but not in pjsip.conf: Asterisk refuses to subscribe to it
    setup = make_setup({"ghost": "agent9", "alice": "agent1"})
    w = await world_factory(setup, {"agent1": Answer(after=1)})
    assert w.controller.stream.connected
    assert not w.controller.engine.agents["ghost"].reachable
    caller = w.call()
    await caller.wait_for(lambda c: c.bridged_with is not None, timeout=30)
    assert caller.bridged_with == "agent1"
