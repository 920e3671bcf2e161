"""An originated agent leg (POST /channels) rings outside Stasis and enters it only when answered
(originate_variant.json). What the simulator enforces until then, and what follows from Asterisk's
source where no trace shows it (res/ari/resource_channels.c, res/res_stasis.c, main/dial.c)."""

from __future__ import annotations

from controller.sim import Answer, NoAnswer, SimAsterisk
from tests.sim.ari import Ari

NOT_IN_STASIS = {"message": "Channel not in Stasis application"}


async def _originate(ari: Ari, agent: str = "agent1", **params) -> dict:
    return await ari.ok(
        "POST",
        "/channels",
        endpoint=f"PJSIP/{agent}",
        app="acd",
        appArgs="offer,1",
        callerId='"[support 0:05] Maria" <5551234>',
        timeout=10,
        json={"variables": {"PJSIP_HEADER(add,X-Acd-Queue)": "support"}},
        **params,
    )


async def test_a_ringing_leg_is_listed_in_the_app_but_has_no_stasis_control(
    sim: SimAsterisk, ari: Ari
) -> None:
    sim.add_phone("agent1", NoAnswer())
    cid = (await _originate(ari, channelId="leg-1"))["id"]
    assert cid == "leg-1"
    await ari.event("Dial", lambda e: e["dialstatus"] == "RINGING")
    app = await ari.ok("GET", "/applications/acd")
    assert app["channel_ids"] == [cid], "originate subscribes the app to the channel"
    channel = await ari.ok("GET", f"/channels/{cid}")
    assert (channel["state"], channel["dialplan"]["app_name"]) == ("Ringing", "AppDial2")
    assert await ari.post(f"/channels/{cid}/play", media="sound:beep") == (409, NOT_IN_STASIS)
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    assert await ari.post(f"/bridges/{bridge['id']}/addChannel", channel=cid) == (422, NOT_IN_STASIS)


async def test_delete_of_a_ringing_leg_cancels_the_phone(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", NoAnswer())
    cid = (await _originate(ari))["id"]
    await ari.event("Dial", lambda e: e["dialstatus"] == "RINGING")
    assert await ari.delete(f"/channels/{cid}") == (204, None)  # no Stasis needed
    destroyed = await ari.event("ChannelDestroyed")
    assert destroyed["cause"] == 16
    assert ari.types(cid)[-3:] == ["ChannelHangupRequest", "Dial", "ChannelDestroyed"]
    final = [e["dialstatus"] for e in ari.of(cid) if e["type"] == "Dial"][-1]
    assert final == "NOANSWER", "main/dial.c: ast_hangup_cause_to_dial_status(16)"
    assert phone.invites[0].outcome == "cancelled"
    assert (await ari.ok("GET", "/applications/acd"))["channel_ids"] == []


async def test_answered_while_the_app_has_no_websocket_the_leg_is_hung_up(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", NoAnswer())
    cid = (await _originate(ari))["id"]
    invite = await phone.wait_for_invite()
    await ari.close()
    await sim.wait_for(lambda: not sim.app_active("acd"))
    invite.answer()
    await invite.wait_for(lambda i: i.outcome == "ended", timeout=5)
    assert invite.bye_reasons == ["Q.850;cause=0"]
    assert cid not in sim.channels
    assert not any(r.type == "StasisStart" for r in sim.apps.log)


async def test_answered_the_leg_enters_stasis_after_the_up(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_phone("agent1", Answer(after=0.5))
    cid = (await _originate(ari))["id"]
    start = await ari.event("StasisStart", lambda e: e["channel"]["id"] == cid)
    assert start["args"] == ["offer", "1"] and start["channel"]["state"] == "Up"
    types = ari.types(cid)
    assert types.index("ChannelStateChange") < types.index("StasisStart")
    status, playback = await ari.post(f"/channels/{cid}/play", media="sound:beep", playbackId="p1")
    assert (status, playback["id"]) == (201, "p1")


async def test_caller_id_is_parsed_as_ast_callerid_parse_does(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", NoAnswer())
    await ari.ok(
        "POST",
        "/channels",
        endpoint="PJSIP/agent1",
        app="acd",
        callerId=r'"[q 0:01] Ma\"ria <x> \\" <+1 (555) 123>',
        json={"variables": {}},
    )
    invite = await phone.wait_for_invite()
    assert invite.display == ('[q 0:01] Ma"ria <x> \\', "+1 (555) 123")
    await ari.ok("POST", "/channels", endpoint="PJSIP/agent1", app="acd", callerId='"N" <+1-(555)-123>')
    invite = await phone.wait_for_invite(count=2)
    assert invite.display == ("N", "+1555123"), "a shrinkable number is shrunk"
