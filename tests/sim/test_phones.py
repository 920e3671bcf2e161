"""Simulated phones and callers: each behaviour produces Asterisk's events and is recorded."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from controller.sim import DND, Answer, Busy, Dead, Decline, Invite, NoAnswer, SimAsterisk
from tests.sim.ari import Ari
from tests.sim.conftest import SPEED
from tests.timing import assert_duration


@pytest.fixture
async def ari(sim: SimAsterisk, http: aiohttp.ClientSession) -> Any:
    client = await Ari(sim, http).connect()
    yield client
    await client.close()


def destroyed(ari: Ari, channel_id: str) -> dict[str, Any]:
    return next(e for e in ari.of(channel_id) if e["type"] == "ChannelDestroyed")


async def test_answer_then_phone_hangs_up_not_bridged(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", Answer(after=1.0, hangup_after=2.0))
    agent = await ari.offer("agent1")
    await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == agent)
    assert ari.types(agent) == [
        "ChannelDialplan",
        "ChannelVarset:STASISSTATUS",
        "StasisStart",
        "Dial",
        "ChannelStateChange",
        "Dial",
        "ChannelStateChange",
        "Dial",
        *[f"ChannelVarset:RTPAUDIOQOS{s}" for s in ("", "JITTER", "LOSS", "RTT", "MES")],
        "ChannelHangupRequest",
        "StasisEnd",
        "ChannelVarset:STASISSTATUS",
        "ChannelDestroyed",
    ]
    request = next(e for e in ari.of(agent) if e["type"] == "ChannelHangupRequest")
    assert "cause" not in request and "soft" not in request
    assert destroyed(ari, agent)["cause"] == 0
    invite = phone.last_invite
    assert invite is not None and invite.outcome == "ended" and invite.ended_by == "phone"
    assert invite.final_code == 200 and invite.answered_at is not None


@pytest.mark.parametrize(
    ("behaviour", "cause", "code", "text"),
    [
        (Decline(after=0.5), 21, 603, "Call Rejected"),
        (Busy(after=0.5), 17, 486, "User busy"),
        (DND(after=0.5), 19, 480, "User alerting, no answer"),
    ],
)
async def test_rejections(
    sim: SimAsterisk, ari: Ari, behaviour: Any, cause: int, code: int, text: str
) -> None:
    phone = sim.add_phone("agent1", behaviour)
    agent = await ari.offer("agent1")
    await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == agent)
    request = next(e for e in ari.of(agent) if e["type"] == "ChannelHangupRequest")
    assert (request["cause"], request["tech_cause"]) == (cause, code)
    assert destroyed(ari, agent)["cause_txt"] == text
    assert [e["dialstatus"] for e in ari.of(agent) if e["type"] == "Dial"] == ["", "RINGING"]
    assert phone.last_invite.outcome == "rejected" and phone.last_invite.final_code == code


async def test_no_answer_until_dial_timeout(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", NoAnswer())
    t0 = sim.clock.now()
    agent = await ari.offer("agent1", timeout=2)
    ev = await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == agent)
    assert sim.clock.now() - t0 >= 2.0
    request = next(e for e in ari.of(agent) if e["type"] == "ChannelHangupRequest")
    assert request["cause"] == 32 and request["soft"] is True and "tech_cause" not in request
    assert (ev["cause"], ev["tech_cause"]) == (19, 480)
    invite = phone.last_invite
    assert (
        invite.outcome == "cancelled"
        and invite.final_code == 487
        and invite.cancel_reasons == ["Q.850;cause=19"]
    )


async def test_dead_phone_never_rings(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", Dead())
    agent = await ari.offer("agent1", timeout=1)
    ev = await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == agent)
    assert (ev["cause"], ev["tech_cause"], ev["channel"]["state"]) == (19, 480, "Down")
    assert not [e for e in ari.of(agent) if e["type"] == "ChannelStateChange"]
    assert phone.last_invite.ringing_at is None and phone.last_invite.outcome == "cancelled"


async def test_offline_phone_allocation_failed_until_registered(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", Answer(), registered=False)
    status, body = await ari.post("/channels/create", endpoint="PJSIP/agent1", app="acd")
    assert (status, body) == (500, {"error": "Allocation failed"})
    phone.register()
    status, body = await ari.post("/channels/create", endpoint="PJSIP/agent1", app="acd")
    assert status == 200 and body["state"] == "Down"
    phone.unregister()
    status, body = await ari.post("/channels", endpoint="PJSIP/agent1", app="acd")
    assert (status, body) == (500, {"error": "Allocation failed"})
    assert not [
        e
        for e in ari.events
        if e.get("channel", {}).get("id") not in (None, body and body.get("id"))
        and e["type"] == "ChannelCreated"
    ]


async def test_per_call_behaviour_sequence(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", [Decline(after=0.2), Answer(after=0.2)])
    first = await ari.offer("agent1")
    await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == first)
    second = await ari.offer("agent1")
    await ari.event("Dial", lambda e: e["peer"]["id"] == second and e["dialstatus"] == "ANSWER")
    third = await ari.offer("agent1")  # the last item repeats
    await ari.event("Dial", lambda e: e["peer"]["id"] == third and e["dialstatus"] == "ANSWER")
    assert [inv.outcome for inv in phone.invites] == ["rejected", "answered", "answered"]


async def test_callable_behaviour_sees_the_invite(sim: SimAsterisk, ari: Ari) -> None:
    def decide(invite: Invite) -> Any:
        return Answer(after=0.1) if invite.headers.get("X-Acd-Queue") == "vip" else Busy(after=0.1)

    phone = sim.add_phone("agent1", decide)
    a = await ari.offer("agent1", variables={"PJSIP_HEADER(add,X-Acd-Queue)": "support"})
    b = await ari.offer("agent1", variables={"PJSIP_HEADER(add,X-Acd-Queue)": "vip"})
    await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == a)
    await ari.event("Dial", lambda e: e["peer"]["id"] == b and e["dialstatus"] == "ANSWER")
    assert [inv.final_code for inv in phone.invites] == [486, 200]


async def test_phone_dtmf(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_phone("agent1", Answer(after=0.2, dtmf=((0.5, "12"),), dtmf_duration_ms=150))
    agent = await ari.offer("agent1")
    await ari.event("ChannelDtmfReceived", lambda e: e["digit"] == "2")
    digits = [(e["digit"], e["duration_ms"]) for e in ari.of(agent) if e["type"] == "ChannelDtmfReceived"]
    assert digits == [("1", 150), ("2", 150)]


async def test_auto_answer_headers_are_detected_and_optionally_honoured(sim: SimAsterisk, ari: Ari) -> None:
    plain = sim.add_phone("agent1", NoAnswer())
    eager = sim.add_phone("agent2", NoAnswer(), honor_auto_answer=True)
    await ari.offer("agent1", variables={"PJSIP_HEADER(add,Call-Info)": "<sip:x>;answer-after=0"})
    await ari.offer("agent1", variables={"PJSIP_HEADER(add,X-Foo)": "bar"})
    agent2 = await ari.offer(
        "agent2", variables={"PJSIP_HEADER(add,Alert-Info)": "info=alert-autoanswer;answer-after=0"}
    )
    await ari.event("Dial", lambda e: e["peer"]["id"] == agent2 and e["dialstatus"] == "ANSWER")
    assert [inv.auto_answer for inv in plain.invites] == [True, False]
    assert plain.invites[0].auto_answer_headers == ["Call-Info: <sip:x>;answer-after=0"]
    assert eager.last_invite.outcome == "answered"


async def test_bridged_call_records_and_connected_line(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", Answer(after=0.5))
    caller, customer = await ari.customer(talk_time=2.0)
    await ari.ok("POST", f"/channels/{customer}/answer")
    agent = await ari.offer("agent1", customer, variables={"CALLERID(name)": "[support 0:05] Maria"})
    await ari.event("Dial", lambda e: e["peer"]["id"] == agent and e["dialstatus"] == "ANSWER")
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{customer},{agent}")
    await caller.wait_for(lambda c: c.bridged_with == "agent1")
    assert caller.connected_line == ("[support 0:05] Maria", "agent1")
    assert phone.last_invite.bridged_with == "5551234"
    assert phone.last_invite.display == ("Maria", "5551234")  # CALLERID(name) is never shown to the agent
    await caller.wait_for(lambda c: c.outcome == "hung_up", timeout=10)  # talk_time: the customer BYEs
    request = await ari.event("ChannelHangupRequest", lambda e: e["channel"]["id"] == customer)
    assert request["cause"] == 16  # BYE while talking to a peer
    segment = caller.media[0]
    assert segment.peer == "agent1" and segment.duration is not None
    assert_duration(segment.duration, 2.0, SPEED, early=0.1, what="talk time")
    assert phone.last_invite.media[0].end is not None
    bridged = [e["variable"] for e in ari.of(agent) if e["type"] == "ChannelVarset"]
    assert "RTPAUDIOQOSBRIDGED" in bridged


async def test_caller_cancels_before_answer(sim: SimAsterisk, ari: Ari) -> None:
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/ring")
    caller.hangup()  # CANCEL now that it rings (not on a timer racing the ring request)
    await caller.wait_for(lambda c: c.ended, timeout=5)
    request = await ari.event("ChannelHangupRequest", lambda e: e["channel"]["id"] == customer)
    assert (request["cause"], request["tech_cause"]) == (127, 487)
    assert caller.outcome == "abandoned" and caller.sip_final == 487
    assert caller.ringback and caller.ringback[0].end is not None
    await ari.event("StasisEnd", lambda e: e["channel"]["id"] == customer)


async def test_caller_hears_moh_from_channel_and_bridge(sim: SimAsterisk, ari: Ari) -> None:
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    await ari.ok("POST", f"/channels/{customer}/moh")
    assert caller.hearing_moh
    await ari.ok("DELETE", f"/channels/{customer}/moh")
    assert not caller.hearing_moh
    bridge = await ari.ok("POST", "/bridges", type="holding")
    await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=customer)
    await ari.ok("POST", f"/bridges/{bridge['id']}/moh")
    assert caller.hearing_moh and len(caller.moh) == 2
    await ari.ok("POST", f"/bridges/{bridge['id']}/removeChannel", channel=customer)
    assert not caller.hearing_moh
    status, body = await ari.delete(f"/bridges/{bridge['id']}/moh")
    assert (status, body) == (409, {"message": "Bridge isn't playing music"})


async def test_controller_hangs_up_caller(sim: SimAsterisk, ari: Ari) -> None:
    ringing, ringing_id = await ari.customer()
    await ari.ok("DELETE", f"/channels/{ringing_id}", reason="busy")
    assert (ringing.outcome, ringing.sip_final, ringing.final_reasons) == (
        "disconnected",
        486,
        ["Q.850;cause=17"],
    )
    answered, answered_id = await ari.customer()
    await ari.ok("POST", f"/channels/{answered_id}/answer")
    await ari.ok("DELETE", f"/channels/{answered_id}")
    assert (answered.outcome, answered.bye_reasons, answered.hangup_cause) == (
        "disconnected",
        ["Q.850;cause=16"],
        16,
    )


async def test_continue_in_dialplan(sim: SimAsterisk, ari: Ari) -> None:
    """continue without target -> 101,3 (Hangup): StasisEnd, then Asterisk hangs up (BYE cause 16)."""
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    await ari.ok("POST", f"/channels/{customer}/continue")
    await ari.event("StasisEnd", lambda e: e["channel"]["id"] == customer)
    await caller.wait_for(lambda c: c.ended)
    assert caller.outcome == "continued" and caller.continued_to == ("from-customer", "101", 3)
    assert caller.bye_reasons == ["Q.850;cause=16"]
    assert await ari.get(f"/channels/{customer}") == (404, {"message": "Channel not found"})
    assert (await ari.get("/applications/acd"))[1]["channel_ids"] == []
    other, other_id = await ari.customer()
    await ari.ok("POST", f"/channels/{other_id}/answer")
    await ari.ok("POST", f"/channels/{other_id}/continue", context="fallback", extension="200", priority=2)
    await other.wait_for(lambda c: c.ended)
    assert other.continued_to == ("fallback", "200", 2) and other.bye_reasons == ["Q.850;cause=16"]
    assert other_id not in sim.channels
    await ari.event("StasisEnd", lambda e: e["channel"]["id"] == other_id)


async def test_dtmf_and_headers_of_the_caller(sim: SimAsterisk, ari: Ari) -> None:
    caller, customer = await ari.customer(headers={"X-Ticket": "42"}, dtmf=((0.2, "9#"),))
    status, body = await ari.get(f"/channels/{customer}/variable", variable="PJSIP_HEADER(read,X-Ticket)")
    assert (status, body) == (200, {"value": "42"})
    await ari.ok("POST", f"/channels/{customer}/answer")
    await ari.event("ChannelDtmfReceived", lambda e: e["digit"] == "#")
    await ari.ok("POST", f"/channels/{customer}/dtmf", dtmf="12")
    assert caller.dtmf_received == ["1", "2"]


async def test_refused_without_websocket_and_no_route(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    caller = sim.place_call("101")
    assert caller.outcome == "refused" and caller.sip_final == 603
    assert caller.final_reasons == ["Q.850;cause=16"] and caller.fallback == ("from-customer", "101", 3)
    lost = sim.place_call("999")
    assert lost.outcome == "no_route" and lost.sip_final == 404
    assert not sim.channels
