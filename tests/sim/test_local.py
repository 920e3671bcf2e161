"""A caller that reaches Stasis through a Local channel (local_channel_optimization.json)."""

from __future__ import annotations

import pytest

from controller.sim import Answer, SimAsterisk
from tests.sim.ari import Ari


@pytest.mark.parametrize("how", ["dialplan", "via_local"])
async def test_the_app_sees_only_the_local_half(sim: SimAsterisk, ari: Ari, how: str) -> None:
    if how == "dialplan":
        sim.dialplan["from-customer,103"] = "NoOp, Dial(Local/101@from-customer)"
        caller = sim.place_call("103")
        dialled = "103"
    else:
        caller = sim.place_call("101", via_local=True)
        dialled = "101"
    start = await ari.event("StasisStart")
    ch = start["channel"]
    assert ch["id"] == caller.channel_id and caller.sip_channel_id != caller.channel_id
    assert ch["name"].startswith("Local/101@from-customer-") and ch["name"].endswith(";2")
    assert (ch["state"], ch["protocol_id"], start["args"]) == ("Ring", "", ["support"])
    assert ch["caller"] == {"name": "Maria", "number": "5551234"}
    assert ch["connected"] == {"name": "", "number": dialled}
    assert (ch["dialplan"]["context"], ch["dialplan"]["exten"]) == ("from-customer", "101")
    listed = (await ari.get("/channels"))[1]  # newest first: ;2, ;1, the caller's PJSIP channel
    assert [c["name"][-2:] for c in listed[:2]] == [";2", ";1"]
    assert listed[2]["name"].startswith("PJSIP/customer-")
    assert [c["dialplan"]["app_name"] for c in listed] == ["Stasis", "AppDial", "Dial"]
    assert (await ari.get("/applications/acd"))[1]["channel_ids"] == [caller.channel_id]
    assert {e["channel"]["id"] for e in ari.events if "channel" in e} == {caller.channel_id}


async def test_answer_bridge_and_caller_bye_through_the_pair(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", Answer(after=0.5))
    caller = sim.place_call("101", via_local=True)
    local = (await ari.event("StasisStart"))["channel"]["id"]
    await ari.ok("POST", f"/channels/{local}/answer")
    assert caller.answered  # Dial() answered the real caller
    hold = await ari.ok("POST", "/bridges", type="holding")
    await ari.ok("POST", f"/bridges/{hold['id']}/addChannel", channel=local)
    await ari.ok("POST", f"/bridges/{hold['id']}/moh")
    assert caller.hearing_moh
    agent = await ari.offer("agent1", local, variables={"CALLERID(name)": "[support 0:05] Maria"})
    await ari.event("Dial", lambda e: e["peer"]["id"] == agent and e["dialstatus"] == "ANSWER")
    assert phone.last_invite is not None and phone.last_invite.display == ("Maria", "5551234")
    mixing = await ari.ok("POST", "/bridges", type="mixing")
    n = len(ari.events)
    await ari.ok("POST", f"/bridges/{mixing['id']}/addChannel", channel=f"{local},{agent}")
    await caller.wait_for(lambda c: c.bridged_with == "agent1")
    assert caller.identities_shown == [("[support 0:05] Maria", "agent1")]  # the UPDATE went through
    connected = await ari.event("ChannelConnectedLine", start=n)
    assert connected["channel"]["id"] == local
    assert sim.bridges[mixing["id"]].technology == "simple_bridge"  # no native_rtp, no optimisation
    n = len(ari.events)
    caller.hangup()
    await ari.event("StasisEnd", lambda e: e["channel"]["id"] == local, start=n)
    got = [(e["type"], e.get("variable"), e.get("cause")) for e in ari.events[n:]]
    assert got == [
        ("ChannelHangupRequest", None, 16),
        ("ChannelVarset", "BRIDGEPEER", None),
        ("ChannelVarset", "BRIDGEPVTCALLID", None),
        ("ChannelLeftBridge", None, None),
        ("StasisEnd", None, None),
    ]
    assert agent in sim.channels and list(sim.bridges[mixing["id"]].channels) == [agent]
    assert [c["name"] for c in (await ari.get("/channels"))[1]] == [sim.channels[agent].name]


async def test_deleting_the_local_half_hangs_up_the_caller(sim: SimAsterisk, ari: Ari) -> None:
    caller = sim.place_call("101", via_local=True)
    local = (await ari.event("StasisStart"))["channel"]["id"]
    await ari.ok("POST", f"/channels/{local}/answer")
    await ari.ok("DELETE", f"/channels/{local}")
    await caller.wait_for(lambda c: c.ended)
    assert caller.outcome == "disconnected" and caller.bye_reasons == ["Q.850;cause=16"]
    assert (await ari.get("/channels")) == (200, [])
