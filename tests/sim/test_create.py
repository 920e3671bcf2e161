"""A created channel enters Stasis after the create's 200 (create_then_dial_race.json): until its
StasisStart it has no Stasis control, so operations on it get 409 and change nothing."""

from __future__ import annotations

import pytest

from controller.sim import NoAnswer, SimAsterisk
from tests.sim.ari import Ari

NOT_IN_STASIS = (409, {"message": "Channel not in Stasis application"})
OFFER = {"PJSIP_HEADER(add,X-Acd-Queue)": "support", "CALLERID(name)": "[support 0:05] Maria"}


async def _create(ari: Ari, agent: str = "agent1") -> dict:
    return await ari.ok(
        "POST",
        "/channels/create",
        endpoint=f"PJSIP/{agent}",
        app="acd",
        appArgs="offer,1",
        json={"variables": OFFER},
    )


async def test_stasis_start_comes_after_the_200(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_phone("agent1", NoAnswer())
    before = sim.apps.count
    body = await _create(ari)
    create = sim.rest_log[-1]
    assert (create.path, create.status, create.events_before) == ("/channels/create", 200, before)
    await ari.event("StasisStart", lambda e: e["channel"]["id"] == body["id"])
    assert ari.types(body["id"]) == [
        "ChannelCallerId",
        "ChannelDialplan",
        "ChannelVarset:STASISSTATUS",
        "StasisStart",
    ]


async def test_operations_before_stasis_entry_get_409_and_change_nothing(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", NoAnswer())
    sim.stasis_entry_delay = 2.0
    body = await _create(ari)
    cid = body["id"]
    for method, path, params in (
        ("POST", "dial", {"timeout": 10}),
        ("POST", "answer", {}),
        ("POST", "ring", {}),
        ("POST", "moh", {}),
        ("POST", "play", {"media": "sound:hello-world"}),
        ("POST", "continue", {}),
        ("POST", "variable", {"variable": "X", "value": "1"}),
    ):
        assert await ari.call(method, f"/channels/{cid}/{path}", **params) == NOT_IN_STASIS, path
    bridge = await ari.ok("POST", "/bridges", type="mixing")
    assert await ari.post(f"/bridges/{bridge['id']}/addChannel", channel=cid) == (
        422,
        {"message": "Channel not in Stasis application"},
    )
    assert ari.of(cid) == [] and phone.invites == []
    status, listed = await ari.get("/channels")
    assert status == 200 and [c["id"] for c in listed] == [cid] and listed[0]["state"] == "Down"
    assert (await ari.get("/applications/acd"))[1]["channel_ids"] == [cid]
    # the entry happens later by itself; the 409s did not start anything
    await ari.event("StasisStart", lambda e: e["channel"]["id"] == cid)
    assert phone.invites == []
    assert (await ari.get(f"/channels/{cid}"))[1]["dialplan"]["app_data"] == "acd,offer,1"
    await ari.ok("POST", f"/channels/{cid}/dial", timeout=10)
    await phone.wait_for_invite()


async def test_delete_of_a_never_dialled_channel(sim: SimAsterisk, ari: Ari) -> None:
    """DELETE: cause 32 soft, StasisEnd, SUCCESS, a second HangupRequest 16/603, Destroyed 16/603."""
    sim.add_phone("agent1", NoAnswer())
    body = await _create(ari)
    cid = body["id"]
    await ari.event("StasisStart", lambda e: e["channel"]["id"] == cid)
    assert await ari.delete(f"/channels/{cid}") == (204, None)
    destroyed = await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == cid)
    assert ari.types(cid)[4:] == [
        "ChannelHangupRequest",
        "StasisEnd",
        "ChannelVarset:STASISSTATUS",
        "ChannelHangupRequest",
        "ChannelDestroyed",
    ]
    first, second = [e for e in ari.of(cid) if e["type"] == "ChannelHangupRequest"]
    assert (first["cause"], first["soft"]) == (32, True)
    assert (second["cause"], second["tech_cause"], "soft" in second) == (16, 603, False)
    assert (destroyed["cause"], destroyed["tech_cause"]) == (16, 603)


async def test_delete_before_stasis_entry(sim: SimAsterisk, ari: Ari) -> None:
    """Deleted before its StasisStart: it never enters Stasis (no StasisStart/StasisEnd)."""
    sim.add_phone("agent1", NoAnswer())
    sim.stasis_entry_delay = 2.0
    cid = (await _create(ari))["id"]
    assert await ari.delete(f"/channels/{cid}") == (204, None)
    destroyed = await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == cid)
    assert (destroyed["cause"], destroyed["tech_cause"]) == (16, 603)
    assert "StasisStart" not in ari.types(cid) and cid not in sim.channels
    assert await ari.get(f"/channels/{cid}") == (404, {"message": "Channel not found"})


async def test_event_delay_lets_the_dial_204_overtake_stasis_start(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", NoAnswer())
    sim.event_delay = 1.0
    cid = (await _create(ari))["id"]
    assert await ari.post(f"/channels/{cid}/dial", timeout=10) == (204, None)
    assert ari.of(cid) == []  # nothing has reached the socket yet
    await phone.wait_for_invite()
    ringing = await ari.event("Dial", lambda e: e["dialstatus"] == "RINGING")
    assert ringing["peer"]["id"] == cid
    assert ari.types(cid)[:5] == [
        "ChannelCallerId",
        "ChannelDialplan",
        "ChannelVarset:STASISSTATUS",
        "StasisStart",
        "Dial",
    ]


@pytest.mark.parametrize("delay", [0.0, 0.5])
async def test_created_then_waited_for_dial_rings(sim: SimAsterisk, ari: Ari, delay: float) -> None:
    """The correct order (create, wait for StasisStart, dial) works whatever the entry delay."""
    phone = sim.add_phone("agent1", NoAnswer())
    sim.stasis_entry_delay = delay
    cid = (await _create(ari))["id"]
    await ari.event("StasisStart", lambda e: e["channel"]["id"] == cid)
    await ari.ok("POST", f"/channels/{cid}/dial", timeout=10)
    invite = await phone.wait_for_invite()
    assert invite.channel_id == cid
