"""Application subscriptions as res/stasis/app.c keeps them: one forward per event source with a
subscribe count, kept while no websocket is connected, and channel events that reach an app twice
when it is subscribed to both the channel and its endpoint."""

from __future__ import annotations

import aiohttp

from controller.sim import NoAnswer, SimAsterisk
from tests.sim.ari import Ari

SUB = "/applications/acd/subscription"


async def test_each_subscribe_counts_and_survives_reconnects(
    sim: SimAsterisk, http: aiohttp.ClientSession
) -> None:
    sim.add_phone("agent1")
    for _ in range(3):  # three controller starts against the same PBX
        ari = await Ari(sim, http).connect()
        app = await ari.ok("POST", SUB, eventSource="endpoint:PJSIP/agent1")
        assert app["endpoint_ids"] == ["PJSIP/agent1"]  # listed once
        await ari.close()
        await sim.wait_for(lambda: not sim.app_active("acd"))
    ari = await Ari(sim, http).connect()
    assert (await ari.get("/applications/acd"))[1]["endpoint_ids"] == ["PJSIP/agent1"]
    assert sim.engine.endpoints["PJSIP/agent1"].subs[sim.apps.get("acd")] == 3
    for remaining in (2, 1, 0):  # as many unsubscribes as subscribes
        app = await ari.ok("DELETE", SUB, eventSource="endpoint:PJSIP/agent1")
        assert app["endpoint_ids"] == (["PJSIP/agent1"] if remaining else [])
    assert await ari.delete(SUB, eventSource="endpoint:PJSIP/agent1") == (
        422,
        {"message": "Event source was not subscribed to"},
    )
    await ari.close()


async def test_subscribed_app_survives_without_socket(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    sim.add_phone("agent1")
    ari = await Ari(sim, http).connect()
    await ari.ok("POST", SUB, eventSource="endpoint:PJSIP/agent1")
    await ari.close()
    await sim.wait_for(lambda: not sim.app_active("acd"))
    other = await Ari(sim, http).connect("observer")
    assert (await other.get("/applications/acd"))[1]["endpoint_ids"] == ["PJSIP/agent1"]
    sim.phones["agent1"].unregister()  # nobody listens: the event is lost, the subscription stays
    assert [r.delivered for r in sim.event_log if r.type == "EndpointStateChange"] == [False]
    await other.close()


async def test_channel_events_twice_with_channel_and_endpoint_subscription(
    sim: SimAsterisk, ari: Ari
) -> None:
    sim.duplicate_channel_events = True
    sim.add_phone("agent1", NoAnswer())
    await ari.ok("POST", SUB, eventSource="endpoint:PJSIP/agent1")
    created = await ari.ok("POST", "/channels/create", endpoint="PJSIP/agent1", app="acd")
    cid = created["id"]
    await ari.event("StasisStart", lambda e: e["channel"]["id"] == cid)
    await ari.ok("POST", f"/channels/{cid}/dial", timeout=5)
    await ari.ok("DELETE", f"/channels/{cid}")
    await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == cid)
    types = ari.types(cid)
    assert types.count("StasisStart") == 1 and types.count("StasisEnd") == 1  # the app's own topic
    assert types.count("ChannelDestroyed") == 2 and types.count("ChannelHangupRequest") == 2
    assert [e["dialstatus"] for e in ari.of(cid) if e["type"] == "Dial"] == ["", "", "RINGING", "RINGING"]


async def test_endpoint_only_subscription_gets_channel_events_once(sim: SimAsterisk, ari: Ari) -> None:
    sim.duplicate_channel_events = True
    sim.add_phone("agent1", NoAnswer())
    await ari.ok("POST", SUB, eventSource="endpoint:PJSIP/agent1")
    created = await ari.ok("POST", "/channels/create", endpoint="PJSIP/agent1", app="other")
    await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == created["id"])  # app missing
    assert ari.types(created["id"]).count("ChannelDestroyed") == 1


async def test_endpoints_added_at_runtime(sim: SimAsterisk, ari: Ari) -> None:
    """A phone added after the controller started: GET, subscribe, events and offers all work."""
    assert await ari.get("/endpoints/PJSIP/agent7") == (404, {"message": "Endpoint not found"})
    phone = sim.add_phone("agent7", NoAnswer(), registered=False)
    assert (await ari.get("/endpoints/PJSIP/agent7"))[1]["state"] == "offline"
    await ari.ok("POST", SUB, eventSource="endpoint:PJSIP/agent7")
    phone.register()
    online = await ari.event("EndpointStateChange")
    assert online["endpoint"] == {
        "technology": "PJSIP",
        "resource": "agent7",
        "state": "online",
        "channel_ids": [],
    }
    created = await ari.ok("POST", "/channels/create", endpoint="PJSIP/agent7", app="acd")
    await ari.event("StasisStart", lambda e: e["channel"]["id"] == created["id"])
    await ari.ok("POST", f"/channels/{created['id']}/dial")
    assert (await phone.wait_for_invite()).channel_id == created["id"]
