"""REST surface: auth, routing errors, Asterisk's error bodies, variables, playbacks, bridges, originate."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from controller.sim import Answer, NoAnswer, SimAsterisk
from tests.sim.ari import Ari
from tests.sim.conftest import PASSWORD, USER


@pytest.fixture
async def ari(sim: SimAsterisk, http: aiohttp.ClientSession) -> Any:
    client = await Ari(sim, http).connect()
    yield client
    await client.close()


async def test_auth(sim: SimAsterisk) -> None:
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{sim.ari_url}/channels") as r:
            assert r.status == 401
            assert await r.json() == {"message": "Authentication required"}
            assert r.headers["WWW-Authenticate"] == 'Basic realm="Asterisk REST Interface"'
        bad = {"Authorization": aiohttp.encode_basic_auth(USER, "wrong")}
        async with anon.get(f"{sim.ari_url}/channels", headers=bad) as r:
            assert r.status == 401
        async with anon.get(f"{sim.ari_url}/channels", params={"api_key": f"{USER}:{PASSWORD}"}) as r:
            assert r.status == 200 and await r.json() == []
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await anon.ws_connect(sim.ws_url().replace(PASSWORD, "nope"))
        assert err.value.status == 401


async def test_unknown_route_and_method(ari: Ari) -> None:
    assert await ari.get("/nothing/here") == (404, {"message": "Resource not found"})
    assert await ari.call("PUT", "/channels") == (405, {"message": "Invalid method"})
    assert await ari.get("/channels/123.4") == (404, {"message": "Channel not found"})
    assert await ari.delete("/channels/123.4") == (404, {"message": "Channel not found"})
    assert await ari.post("/channels/123.4/answer") == (404, {"message": "Channel not found"})
    assert await ari.get("/bridges/nope") == (404, {"message": "Bridge not found"})
    assert await ari.get("/playbacks/nope") == (404, {"message": "Playback not found"})
    assert await ari.get("/applications/nope") == (404, {"message": "Application not found"})


async def test_create_and_originate_validation(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_phone("agent1")
    assert (await ari.post("/channels/create", app="acd"))[0] == 400
    assert await ari.post("/channels/create", endpoint="agent1", app="acd") == (
        400,
        {"message": "Invalid endpoint specified"},
    )
    assert await ari.post("/channels/create", endpoint="PJSIP/nobody", app="acd") == (
        500,
        {"error": "Allocation failed"},
    )
    assert await ari.post("/channels", endpoint="PJSIP/agent1") == (
        400,
        {"message": "Application or extension must be specified"},
    )
    assert await ari.post("/channels/create", endpoint="PJSIP/agent1", app="acd", formats="nonsense") == (
        400,
        {"message": "Provided format (nonsense) was not found"},
    )
    assert await ari.post(
        "/channels/create", endpoint="PJSIP/agent1", app="acd", json={"variables": {"X": 1}}
    ) == (400, {"message": "Only string values in the 'variables' object allowed"})
    status, body = await ari.post("/channels/create", endpoint="PJSIP/agent1", app="acd", channelId="my-id")
    assert (status, body["id"]) == (200, "my-id")
    assert await ari.post("/channels/create", endpoint="PJSIP/agent1", app="acd", channelId="my-id") == (
        409,
        {"message": "Channel with given unique ID already exists"},
    )
    # params may come in the JSON body, as res_ari accepts
    status, body = await ari.post("/channels/create", json={"endpoint": "PJSIP/agent1", "app": "acd"})
    assert status == 200


async def test_state_rules_on_an_undialed_channel(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_phone("agent1", NoAnswer())
    agent = (await ari.ok("POST", "/channels/create", endpoint="PJSIP/agent1", app="acd"))["id"]
    await ari.event("StasisStart", lambda e: e["channel"]["id"] == agent)
    assert await ari.post(f"/channels/{agent}/answer") == (412, {"message": "Channel in invalid state"})
    assert await ari.post(f"/channels/{agent}/play", media="sound:beep") == (
        412,
        {"message": "Channel in invalid state"},
    )
    await ari.ok("POST", f"/channels/{agent}/dial", timeout=5)
    assert await ari.post(f"/channels/{agent}/dial") == (
        409,
        {"message": "Channel is not in the 'Down' state"},
    )
    assert await ari.delete(f"/channels/{agent}", reason="bogus") == (
        400,
        {"message": "Invalid reason for hangup provided"},
    )
    await ari.ok("DELETE", f"/channels/{agent}", reason="no_answer")
    ev = await ari.event("ChannelDestroyed", lambda e: e["channel"]["id"] == agent)
    assert (ev["cause"], ev["cause_txt"]) == (19, "User alerting, no answer")
    assert sim.phones["agent1"].last_invite.cancel_reasons == ["Q.850;cause=19"]


async def test_variables(sim: SimAsterisk, ari: Ari) -> None:
    caller, customer = await ari.customer(headers={"X-Ticket": "42"})
    path = f"/channels/{customer}/variable"
    assert await ari.get(path) == (400, {"message": "Variable name is required"})
    assert await ari.get(path, variable="NOPE") == (404, {"message": "Provided variable was not found"})
    assert await ari.get(path, variable="PJSIP_HEADER(read,X-Missing)") == (
        500,
        {"message": "Unable to read provided function"},
    )
    assert await ari.get(path, variable="PJSIP_HEADER(read,x-ticket)") == (200, {"value": "42"})
    assert await ari.get(path, variable="CALLERID(num)") == (200, {"value": "5551234"})
    await ari.ok("POST", path, variable="CONNECTEDLINE(name)", value="Queue support")
    await ari.ok("POST", path, variable="MYVAR", value="x")
    assert await ari.get(path, variable="CONNECTEDLINE(name)") == (200, {"value": "Queue support"})
    assert await ari.get(path, variable="MYVAR") == (200, {"value": "x"})
    await ari.event("ChannelVarset", lambda e: e["variable"] == "MYVAR" and e["value"] == "x")
    assert [e["type"] for e in ari.of(customer)][1] == "ChannelConnectedLine"
    assert await ari.get("/channels/1.1/variable", variable="X") == (
        404,
        {"message": "Provided channel was not found"},
    )


async def test_playbacks(sim: SimAsterisk, ari: Ari) -> None:
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    status, body = await ari.post(
        f"/channels/{customer}/play", media="sound:hello-world,digits:42", playbackId="pb1"
    )
    assert status == 201 and body == {
        "id": "pb1",
        "media_uri": "sound:hello-world",
        "next_media_uri": "digits:42",
        "target_uri": f"channel:{customer}",
        "language": "en",
        "state": "queued",
    }
    assert (await ari.get("/playbacks/pb1"))[1]["state"] == "playing"
    await ari.event("PlaybackFinished", lambda e: e["playback"]["id"] == "pb1")
    seq = [
        (e["type"], e["playback"]["media_uri"], e["playback"]["state"])
        for e in ari.events
        if e["type"].startswith("Playback")
    ]
    assert seq == [
        ("PlaybackStarted", "sound:hello-world", "playing"),
        ("PlaybackContinuing", "sound:hello-world", "continuing"),
        ("PlaybackStarted", "digits:42", "playing"),
        ("PlaybackFinished", "digits:42", "done"),
    ]
    assert [m for _, m in caller.playbacks] == ["sound:hello-world", "digits:42"]
    tone = (await ari.ok("POST", f"/channels/{customer}/play", media="tone:ring"))["id"]
    await ari.ok("DELETE", f"/playbacks/{tone}")
    ev = await ari.event("PlaybackFinished", lambda e: e["playback"]["id"] == tone)
    assert ev["playback"]["state"] == "done"
    missing = (await ari.ok("POST", f"/channels/{customer}/play", media="recording:nope"))["id"]
    ev = await ari.event("PlaybackFinished", lambda e: e["playback"]["id"] == missing)
    assert ev["playback"]["state"] == "failed"


async def test_bridge_errors_and_moves(sim: SimAsterisk, ari: Ari) -> None:
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    hold = await ari.ok("POST", "/bridges", type="holding", bridgeId="hold-1")
    assert await ari.post("/bridges", bridgeId="hold-1") == (
        409,
        {"message": "Bridge with id 'hold-1' already exists"},
    )
    assert await ari.post("/bridges", type="nonsense") == (500, {"message": "Unable to create bridge"})
    assert await ari.post(f"/bridges/{hold['id']}/addChannel") == (
        400,
        {"message": "Missing parameter channel"},
    )
    assert await ari.post(f"/bridges/{hold['id']}/addChannel", channel="9.9") == (
        400,
        {"message": "Channel not found"},
    )
    assert await ari.post("/bridges/zzz/addChannel", channel=customer) == (
        404,
        {"message": "Bridge not found"},
    )
    assert await ari.post(f"/bridges/{hold['id']}/removeChannel", channel=customer) == (
        422,
        {"message": "Channel not in this bridge"},
    )
    await ari.ok("POST", f"/bridges/{hold['id']}/addChannel", channel=customer)
    mix = await ari.ok("POST", "/bridges", type="mixing")
    n = len(ari.events)
    await ari.ok("POST", f"/bridges/{mix['id']}/addChannel", channel=customer)  # a move
    left = await ari.event("ChannelLeftBridge", start=n)
    entered = await ari.event("ChannelEnteredBridge", start=n)
    assert left["bridge"]["id"] == hold["id"] and entered["bridge"]["id"] == mix["id"]
    assert ari.events.index(left) < ari.events.index(entered)
    assert (await ari.get("/applications/acd"))[1]["bridge_ids"] == [mix["id"]]
    await ari.ok("DELETE", f"/bridges/{hold['id']}")
    await ari.ok("DELETE", f"/bridges/{mix['id']}")
    destroyed = await ari.event("BridgeDestroyed")
    assert destroyed["bridge"]["id"] == mix["id"]  # not the holding bridge: unsubscribed on the move
    # the customer was pushed out of the deleted bridge but is still in Stasis
    assert (await ari.get(f"/channels/{customer}"))[0] == 200
    await ari.ok("POST", f"/channels/{customer}/continue")
    assert await ari.post(f"/bridges/{mix['id']}/addChannel", channel=customer) == (
        404,
        {"message": "Bridge not found"},
    )
    await ari.event("StasisEnd", lambda e: e["channel"]["id"] == customer)
    other = await ari.ok("POST", "/bridges")
    # continue ran 101,3 (Hangup): the channel is gone
    assert await ari.post(f"/bridges/{other['id']}/addChannel", channel=customer) == (
        400,
        {"message": "Channel not found"},
    )
    # a created channel before its Stasis entry exists but has no control (res/ari: 422)
    sim.add_phone("agent9")
    sim.stasis_entry_delay = 60.0
    pending = await ari.ok("POST", "/channels/create", endpoint="PJSIP/agent9", app="acd")
    assert await ari.post(f"/bridges/{other['id']}/addChannel", channel=pending["id"]) == (
        422,
        {"message": "Channel not in Stasis application"},
    )


async def test_applications_and_endpoints(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_phone("agent1")
    sim.add_phone("agent2", registered=False)
    path = "/applications/acd/subscription"
    assert await ari.post(path) == (400, {"message": "Missing parameter eventSource"})
    assert await ari.post(path, eventSource="bogus:x") == (
        400,
        {"message": "Invalid event source URI scheme"},
    )
    assert await ari.post(path, eventSource="endpoint:PJSIP/nobody") == (
        422,
        {"message": "Event source does not exist"},
    )
    assert await ari.post("/applications/other/subscription", eventSource="endpoint:PJSIP/agent1") == (
        404,
        {"message": "Application not found"},
    )
    status, body = await ari.post(path, eventSource="endpoint:PJSIP/agent1,endpoint:PJSIP/agent2")
    assert status == 200 and body["endpoint_ids"] == ["PJSIP/agent1", "PJSIP/agent2"]
    assert await ari.delete(path, eventSource="endpoint:PJSIP/agent1") == (
        200,
        {**body, "endpoint_ids": ["PJSIP/agent2"]},
    )
    assert await ari.delete(path, eventSource="endpoint:PJSIP/agent1") == (
        422,
        {"message": "Event source was not subscribed to"},
    )
    sim.phones["agent2"].register()
    ev = await ari.event("EndpointStateChange")
    assert ev["endpoint"] == {
        "technology": "PJSIP",
        "resource": "agent2",
        "state": "online",
        "channel_ids": [],
    }
    status, eps = await ari.get("/endpoints")
    assert status == 200 and {(e["resource"], e["state"]) for e in eps} == {
        ("agent1", "online"),
        ("agent2", "online"),
    }
    assert (await ari.get("/endpoints/PJSIP"))[0] == 200
    assert await ari.get("/endpoints/SIP") == (404, {"message": "Endpoints not found"})
    assert await ari.get("/endpoints/PJSIP/nobody") == (404, {"message": "Endpoint not found"})
    status, apps = await ari.get("/applications")
    assert status == 200 and [a["name"] for a in apps] == ["acd"]


async def test_endpoint_subscription_sees_that_endpoints_channels(sim: SimAsterisk, ari: Ari) -> None:
    """Inferred from res_stasis: an endpoint topic forwards its channels' messages."""
    sim.add_phone("agent1", Answer(after=0.2))
    observer = await Ari(sim, ari.session).connect("observer")
    try:
        await observer.ok("POST", "/applications/observer/subscription", eventSource="endpoint:PJSIP/agent1")
        agent = await ari.offer("agent1")
        await observer.event("Dial", lambda e: e["dialstatus"] == "ANSWER")
        assert observer.types(agent)[0] == "ChannelCreated"
    finally:
        await observer.close()


async def test_asterisk_info_and_ping(ari: Ari) -> None:
    status, info = await ari.get("/asterisk/info")
    assert status == 200 and info["system"] == {"version": "22.10.1", "entity_id": "02:fc:00:00:00:01"}
    assert set(info) == {"build", "system", "config", "status"}
    assert set((await ari.get("/asterisk/info", only="status"))[1]) == {"status"}
    status, ping = await ari.get("/asterisk/ping")
    assert status == 200 and ping["ping"] == "pong"


async def test_originate_to_app_answers_into_stasis(sim: SimAsterisk, ari: Ari) -> None:
    phone = sim.add_phone("agent1", Answer(after=0.3))
    status, body = await ari.post(
        "/channels",
        endpoint="PJSIP/agent1",
        app="acd",
        appArgs="offer,7",
        callerId='"Queue" <777>',
        timeout=5,
        json={"variables": {"PJSIP_HEADER(add,X-Acd-Queue)": "support"}},
    )
    assert status == 200 and body["caller"] == body["connected"] == {"name": "Queue", "number": "777"}
    start = await ari.event("StasisStart", lambda e: e["channel"]["id"] == body["id"])
    assert start["args"] == ["offer", "7"] and start["channel"]["state"] == "Up"
    assert phone.last_invite.display == ("Queue", "777")
    assert phone.last_invite.headers == {"X-Acd-Queue": "support"}
