"""Playbacks and bridging as recorded in confirm_dtmf_during_prompt.json and
bridge_connected_line_privacy.json: media lists, stopping a playback, addChannel held by a playing
channel, and the connected-line UPDATEs each phone gets (or not) when two parties are bridged."""

from __future__ import annotations

from typing import Any

import pytest

from controller.sim import Answer, Caller, Invite, SimAsterisk
from tests.sim.ari import Ari

PROMPT = "sound:queue-thereare,digits:3,sound:queue-callswaiting"
OFFER = {"CALLERID(name)": "[support 0:05] Maria"}


async def _answered_agent(sim: SimAsterisk, ari: Ari) -> tuple[Caller, str, Invite, str]:
    """A parked customer and an agent that answered the offer (not bridged yet)."""
    phone = sim.phones.get("agent1") or sim.add_phone("agent1", Answer(after=0.5))
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    hold = await ari.ok("POST", "/bridges", type="holding")
    await ari.ok("POST", f"/bridges/{hold['id']}/addChannel", channel=customer)
    agent = await ari.offer("agent1", customer, variables=OFFER)
    await ari.event("Dial", lambda e: e["peer"]["id"] == agent and e["dialstatus"] == "ANSWER")
    invite = phone.last_invite
    assert invite is not None
    return caller, customer, invite, agent


async def test_media_list_is_one_playback(sim: SimAsterisk, ari: Ari) -> None:
    *_, agent = await _answered_agent(sim, ari)
    n = len(ari.events)
    status, body = await ari.post(f"/channels/{agent}/play", media=PROMPT, playbackId="prompt-1")
    assert status == 201
    assert (body["id"], body["media_uri"], body["next_media_uri"], body["state"]) == (
        "prompt-1",
        "sound:queue-thereare",
        "digits:3",
        "queued",
    )
    finished = await ari.event("PlaybackFinished", start=n, timeout=10)
    played = [e for e in ari.events[n:] if e["type"].startswith("Playback")]
    assert [(e["type"], e["playback"]["media_uri"], e["playback"]["state"]) for e in played] == [
        ("PlaybackStarted", "sound:queue-thereare", "playing"),
        ("PlaybackContinuing", "sound:queue-thereare", "continuing"),
        ("PlaybackStarted", "digits:3", "playing"),
        ("PlaybackContinuing", "digits:3", "continuing"),
        ("PlaybackStarted", "sound:queue-callswaiting", "playing"),
        ("PlaybackFinished", "sound:queue-callswaiting", "done"),
    ]
    assert {e["playback"]["id"] for e in played} == {"prompt-1"}
    assert "next_media_uri" not in finished["playback"]
    assert await ari.delete("/playbacks/prompt-1") == (404, {"message": "Playback not found"})


async def test_stopping_a_playback_finishes_it_as_done(sim: SimAsterisk, ari: Ari) -> None:
    *_, agent = await _answered_agent(sim, ari)
    n = len(ari.events)
    await ari.ok("POST", f"/channels/{agent}/play", media=PROMPT, playbackId="prompt-B")
    await ari.event("PlaybackStarted", start=n)
    assert await ari.delete("/playbacks/prompt-B") == (204, None)
    finished = await ari.event("PlaybackFinished", start=n)
    assert finished["playback"]["state"] == "done"
    assert (finished["playback"]["media_uri"], finished["playback"]["next_media_uri"]) == (
        "sound:queue-thereare",
        "digits:3",
    )
    assert await ari.delete("/playbacks/prompt-B") == (404, {"message": "Playback not found"})
    assert "PlaybackContinuing" not in [e["type"] for e in ari.events[n:]]


async def test_add_channel_waits_for_the_playing_channel(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_waits_for_playback = True
    caller, customer, invite, agent = await _answered_agent(sim, ari)
    mixing = await ari.ok("POST", "/bridges", type="mixing")
    n = len(ari.events)
    await ari.ok("POST", f"/channels/{agent}/play", media=PROMPT)
    await ari.event("PlaybackStarted", start=n)
    status, _ = await ari.post(f"/bridges/{mixing['id']}/addChannel", channel=f"{customer},{agent}")
    assert status == 204
    record = sim.rest_log[-1]
    assert record.path.endswith("/addChannel")
    await ari.event("ChannelEnteredBridge", lambda e: e["channel"]["id"] == agent, start=n)
    types = [(e["type"], (e.get("channel") or {}).get("id")) for e in ari.events[n:]]
    # the customer moved at once; the agent entered only after its playback finished
    assert types.index(("ChannelEnteredBridge", customer)) < types.index(("PlaybackContinuing", None))
    assert types.index(("PlaybackFinished", None)) < types.index(("ChannelEnteredBridge", agent))
    events_before = [r.type for r in list(sim.apps.log)[: record.events_before]]
    assert "PlaybackFinished" in events_before
    await caller.wait_for(lambda c: c.bridged_with == "agent1")


async def test_add_channel_of_a_stopped_playback_is_immediate(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_waits_for_playback = True
    caller, customer, invite, agent = await _answered_agent(sim, ari)
    mixing = await ari.ok("POST", "/bridges", type="mixing")
    pb = await ari.ok("POST", f"/channels/{agent}/play", media=PROMPT)
    await ari.ok("DELETE", f"/playbacks/{pb['id']}")
    await ari.ok("POST", f"/bridges/{mixing['id']}/addChannel", channel=f"{customer},{agent}")
    answered_after = list(sim.apps.log)[: sim.rest_log[-1].events_before]
    entered = [r.data["channel"]["id"] for r in answered_after if r.type == "ChannelEnteredBridge"]
    assert entered[-2:] == [customer, agent]  # both were in the bridge when the 204 was sent
    await caller.wait_for(lambda c: c.bridged_with == "agent1")


async def test_held_add_channel_ends_when_the_channel_hangs_up(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_waits_for_playback = True
    caller, customer, invite, agent = await _answered_agent(sim, ari)
    mixing = await ari.ok("POST", "/bridges", type="mixing")
    await ari.ok("POST", f"/channels/{agent}/play", media="tone:ring")  # plays until stopped
    sim.engine.later(1.0, invite.hangup)
    status, _ = await ari.post(f"/bridges/{mixing['id']}/addChannel", channel=f"{customer},{agent}")
    assert status == 204 and agent not in sim.channels
    assert list(sim.bridges[mixing["id"]].channels) == [customer]


def _shown(rec: Any) -> list[tuple[str, str]]:
    return rec.identities_shown


async def test_bridging_updates_both_phones(sim: SimAsterisk, ari: Ari) -> None:
    caller, customer, invite, agent = await _answered_agent(sim, ari)
    mixing = await ari.ok("POST", "/bridges", type="mixing")
    n = len(ari.events)
    await ari.ok("POST", f"/bridges/{mixing['id']}/addChannel", channel=f"{customer},{agent}")
    await caller.wait_for(lambda c: c.bridged_with == "agent1")
    await ari.event("ChannelConnectedLine", start=n)
    assert _shown(caller) == [("[support 0:05] Maria", "agent1")]
    assert caller.update_pais == ['"[support 0:05] Maria" <sip:agent1@127.0.0.1>']
    assert _shown(invite) == [("Maria", "5551234")]
    assert invite.update_pais == ['"Maria" <sip:5551234@127.0.0.1>']
    changed = [e["channel"]["id"] for e in ari.events[n:] if e["type"] == "ChannelConnectedLine"]
    assert changed == [customer]  # the agent's connected line was already the customer (dial caller=)


@pytest.mark.parametrize("joint", [True, False])
async def test_inhibit_connected_line_updates_both_ways(sim: SimAsterisk, ari: Ari, joint: bool) -> None:
    caller, customer, invite, agent = await _answered_agent(sim, ari)
    mixing = await ari.ok("POST", "/bridges", type="mixing")
    n = len(ari.events)
    path = f"/bridges/{mixing['id']}/addChannel"
    if joint:
        await ari.ok("POST", path, channel=f"{customer},{agent}", inhibitConnectedLineUpdates="true")
    else:
        await ari.ok("POST", path, channel=customer)
        await ari.ok("POST", path, channel=agent, inhibitConnectedLineUpdates="true")
    await caller.wait_for(lambda c: c.bridged_with == "agent1")
    await ari.event("ChannelVarset", lambda e: e["variable"] == "BRIDGEPEER", start=n)
    assert _shown(caller) == [] and _shown(invite) == []
    assert "ChannelConnectedLine" not in [e["type"] for e in ari.events[n:]]
    assert (await ari.get(f"/channels/{customer}"))[1]["connected"] == {"name": "", "number": ""}
