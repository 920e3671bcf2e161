"""Events websocket: one socket per app, takeover, server-side drops, no replay, refusals meanwhile."""

from __future__ import annotations

import aiohttp

from controller.sim import SimAsterisk
from tests.sim.ari import Ari


async def test_drop_connections_keeps_calls_and_loses_events(
    sim: SimAsterisk, http: aiohttp.ClientSession
) -> None:
    ari = await Ari(sim, http).connect()
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    hold = await ari.ok("POST", "/bridges", type="holding")
    await ari.ok("POST", f"/bridges/{hold['id']}/addChannel", channel=customer)
    await ari.event("ChannelEnteredBridge")

    await sim.drop_connections("acd")
    assert ari.ws is not None
    await ari.ws.receive()  # the server closed it
    assert ari.ws.closed and not sim.app_active("acd")
    status, app = await ari.get("/applications/acd")
    assert status == 200 and app["channel_ids"] == [customer] and app["bridge_ids"] == [hold["id"]]

    newcomer = sim.place_call("101", caller_number="5550000")
    assert newcomer.outcome == "refused" and newcomer.sip_final == 603
    caller.hangup()  # while nobody listens: its events are lost for good
    lost = [r for r in sim.event_log if not r.delivered]
    assert [r.type for r in lost][-3:] == ["ChannelHangupRequest", "ChannelLeftBridge", "StasisEnd"]

    again = await Ari(sim, http).connect()
    status, app = await again.get("/applications/acd")
    assert app["channel_ids"] == [] and app["bridge_ids"] == [hold["id"]]
    assert await again.get("/channels") == (200, [])
    await again.ok("DELETE", f"/bridges/{hold['id']}")
    destroyed = await again.event("BridgeDestroyed")
    assert destroyed["bridge"]["id"] == hold["id"]
    assert [e["type"] for e in again.events] == ["BridgeDestroyed"]  # nothing replayed
    await again.close()


async def test_second_socket_replaces_the_first(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    first = await Ari(sim, http).connect()
    second = await Ari(sim, http).connect()
    replaced = await first.event("ApplicationReplaced")
    assert list(replaced) == ["type", "timestamp", "application", "asterisk_id"]
    caller, customer = await second.customer()
    await second.ok("POST", f"/channels/{customer}/answer")
    await second.event("ChannelStateChange")
    assert [e["type"] for e in first.events] == ["ApplicationReplaced"]
    assert first.ws is not None and not first.ws.closed
    await first.close()  # closing the replaced socket changes nothing for the app
    await sim.wait_for(lambda: len(sim.http.connections) == 1)
    assert sim.app_active("acd")
    await second.close()


async def test_app_without_subscriptions_disappears(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    ari = await Ari(sim, http).connect()
    assert (await ari.get("/applications/acd"))[0] == 200
    await ari.close()
    await sim.wait_for(lambda: not sim.http.connections)
    assert await ari.get("/applications/acd") == (404, {"message": "Application not found"})
    assert await ari.get("/applications") == (200, [])


async def test_missing_app_param(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.ari_url}/events") as r:
        assert r.status == 400 and await r.json() == {"message": "Missing param 'app'"}


async def test_subscribe_all_observer_sees_pre_stasis_events(
    sim: SimAsterisk, http: aiohttp.ClientSession
) -> None:
    observer = await Ari(sim, http).connect("observer", subscribe_all=True)
    acd = await Ari(sim, http).connect("acd")
    caller, customer = await acd.customer()
    await acd.ok("POST", f"/channels/{customer}/answer")
    await observer.event("ChannelStateChange")
    assert observer.types(customer) == [
        "ChannelCreated",
        "ChannelVarset:SIPDOMAIN",
        "ChannelDialplan",
        "ChannelDialplan",
        "ChannelVarset:STASISSTATUS",
        "ChannelStateChange",  # StasisStart went to acd only: it is published on the app's topic
    ]
    await acd.event("ChannelStateChange")
    assert acd.types(customer) == ["StasisStart", "ChannelStateChange"]
    await observer.close()
    await acd.close()
