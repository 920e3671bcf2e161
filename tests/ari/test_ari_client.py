"""AriClient against a loopback fake ARI: request shapes per the Swagger files, error mapping, secrecy."""

from __future__ import annotations

import base64
import logging

import aiohttp
import pytest
from ari_fake import PASSWORD, USER, FakeAri, free_port, trace_response

from controller.ari import (
    AriBadRequest,
    AriClient,
    AriConflict,
    AriConnectionError,
    AriError,
    AriNotFound,
    AriServerError,
    AriUnauthorized,
    Bridge,
    Channel,
    EndpointUnreachable,
    Playback,
)

CHANNEL = trace_response("agent_answer_then_bridge.json", "POST", "/channels/create")["body"]
BRIDGE = trace_response("agent_answer_then_bridge.json", "POST", "/bridges")["body"]
APPLICATION = trace_response("endpoint_state.json", "POST", "/applications/acd/subscription")["body"]
PLAYBACK = trace_response("dtmf_confirm.json", "POST", "/channels/1795625969.184/play")["body"]


async def test_create_channel_sends_query_and_variables_body(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("POST", "/channels/create", 200, CHANNEL)
    variables = {"PJSIP_HEADER(add,X-Acd-Queue)": "support", "CONNECTEDLINE(name)": "[support 0:05] Maria"}

    channel = await client.create_channel("PJSIP/agent1", "acd", ["offer", "1"], variables=variables)

    seen = fake_ari.last
    assert (seen.method, seen.path) == ("POST", "/channels/create")
    assert seen.query == {"endpoint": "PJSIP/agent1", "app": "acd", "appArgs": "offer,1"}
    assert seen.body == {"variables": variables}
    expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert seen.authorization == f"Basic {expected}"
    assert isinstance(channel, Channel)
    assert channel.id == "1795625923.169"
    assert channel.state == "Down"
    assert channel.caller.name == "[support 0:05] Maria"
    assert channel.dialplan.context == "from-agents"


async def test_create_channel_defaults_app_and_sends_ids(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("POST", "/channels/create", 200, CHANNEL)
    await client.create_channel("PJSIP/agent1", app_args="offer,1", channel_id="agent-leg-1", originator="c1")
    seen = fake_ari.last
    assert seen.query == {
        "endpoint": "PJSIP/agent1",
        "app": "acd",
        "appArgs": "offer,1",
        "channelId": "agent-leg-1",
        "originator": "c1",
    }
    assert seen.body is None


async def test_list_items_with_commas_are_refused(fake_ari: FakeAri, client: AriClient) -> None:
    with pytest.raises(ValueError, match="comma"):
        await client.create_channel("PJSIP/agent1", app_args=["offer", "a,b"])
    with pytest.raises(ValueError, match="comma"):
        await client.add_channel("b1", ["c,1"])
    assert fake_ari.seen == []


async def test_originate_query_names(fake_ari: FakeAri, client: AriClient) -> None:
    body = trace_response("originate_variant.json", "POST", "/channels")["body"]
    fake_ari.respond("POST", "/channels", 200, body)
    channel = await client.originate(
        "PJSIP/agent1",
        app_args=["offer", "1"],
        caller_id='"[support 0:05] Maria" <5551234>',
        timeout=10,
        variables={"PJSIP_HEADER(add,X-Acd-Queue)": "support"},
    )
    seen = fake_ari.last
    assert seen.query == {
        "endpoint": "PJSIP/agent1",
        "app": "acd",
        "appArgs": "offer,1",
        "callerId": '"[support 0:05] Maria" <5551234>',
        "timeout": "10",
    }
    assert seen.body == {"variables": {"PJSIP_HEADER(add,X-Acd-Queue)": "support"}}
    assert channel.connected.number == "5551234"


async def test_originate_to_dialplan_sends_no_app(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("POST", "/channels", 200, CHANNEL)
    await client.originate("PJSIP/agent1", context="from-agents", extension="s", priority=1)
    assert fake_ari.last.query == {
        "endpoint": "PJSIP/agent1",
        "context": "from-agents",
        "extension": "s",
        "priority": "1",
    }


async def test_dial_without_caller_sends_no_caller(fake_ari: FakeAri, client: AriClient) -> None:
    await client.dial("c1", timeout=10)
    assert (fake_ari.last.method, fake_ari.last.path) == ("POST", "/channels/c1/dial")
    assert fake_ari.last.query == {"timeout": "10"}
    await client.dial("c1", timeout=10, caller="cust")
    assert fake_ari.last.query == {"timeout": "10", "caller": "cust"}
    await client.dial("c1")
    assert fake_ari.last.query == {}


@pytest.mark.parametrize(
    ("call", "method", "path", "query"),
    [
        (lambda c: c.answer("c1"), "POST", "/channels/c1/answer", {}),
        (lambda c: c.ring("c1"), "POST", "/channels/c1/ring", {}),
        (lambda c: c.ring_stop("c1"), "DELETE", "/channels/c1/ring", {}),
        (lambda c: c.start_moh("c1"), "POST", "/channels/c1/moh", {}),
        (
            lambda c: c.start_moh("c1", moh_class="support"),
            "POST",
            "/channels/c1/moh",
            {"mohClass": "support"},
        ),
        (lambda c: c.stop_moh("c1"), "DELETE", "/channels/c1/moh", {}),
        (
            lambda c: c.set_variable("c1", "CDR(userfield)", "q=support"),
            "POST",
            "/channels/c1/variable",
            {"variable": "CDR(userfield)", "value": "q=support"},
        ),
        (
            lambda c: c.continue_in_dialplan("c1", "overflow", "s", 1),
            "POST",
            "/channels/c1/continue",
            {"context": "overflow", "extension": "s", "priority": "1"},
        ),
        (
            lambda c: c.hangup("c1", reason="answered_elsewhere"),
            "DELETE",
            "/channels/c1",
            {"reason": "answered_elsewhere"},
        ),
        (
            lambda c: c.add_channel("b1", ["cust", "agent"]),
            "POST",
            "/bridges/b1/addChannel",
            {"channel": "cust,agent"},
        ),
        (
            lambda c: c.add_channel("b1", "cust", inhibit_connected_line_updates=True),
            "POST",
            "/bridges/b1/addChannel",
            {"channel": "cust", "inhibitConnectedLineUpdates": "true"},
        ),
        (
            lambda c: c.remove_channel("b1", ["cust"]),
            "POST",
            "/bridges/b1/removeChannel",
            {"channel": "cust"},
        ),
        (lambda c: c.destroy_bridge("b1"), "DELETE", "/bridges/b1", {}),
        (lambda c: c.start_bridge_moh("b1", "default"), "POST", "/bridges/b1/moh", {"mohClass": "default"}),
        (lambda c: c.stop_bridge_moh("b1"), "DELETE", "/bridges/b1/moh", {}),
    ],
)
async def test_void_operations(fake_ari: FakeAri, client: AriClient, call, method, path, query) -> None:
    await call(client)
    seen = fake_ari.last
    assert (seen.method, seen.path, seen.query, seen.body) == (method, path, query, None)
    assert len(seen.query_items) == len(query)  # no parameter sent twice


async def test_hangup_default_reason_and_gone_channel(fake_ari: FakeAri, client: AriClient) -> None:
    assert await client.hangup("c1") is True
    assert fake_ari.last.query == {"reason": "normal"}
    fake_ari.respond("DELETE", "/channels/gone", 404, {"message": "Channel not found"})
    assert await client.hangup("gone") is False


async def test_play_joins_media_and_returns_playback(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("POST", "/channels/c1/play", 201, PLAYBACK)
    playback = await client.play("c1", ["sound:hello-world", "digits:42"], playback_id="pb1", lang="en")
    assert fake_ari.last.query == {"media": "sound:hello-world,digits:42", "playbackId": "pb1", "lang": "en"}
    assert isinstance(playback, Playback)
    assert (playback.state, playback.target_uri) == ("queued", "channel:1795625969.184")


async def test_get_variable(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("GET", "/channels/c1/variable", 200, {"value": "42"})
    assert await client.get_variable("c1", "PJSIP_HEADER(read,X-Ticket)") == "42"
    assert fake_ari.last.query == {"variable": "PJSIP_HEADER(read,X-Ticket)"}

    fake_ari.respond("GET", "/channels/c1/variable", 404, {"message": "Provided variable was not found"})
    assert await client.get_variable("c1", "UNSET") is None
    fake_ari.respond("GET", "/channels/c1/variable", 500, {"message": "Unable to read provided function"})
    assert await client.get_variable("c1", "PJSIP_HEADER(read,X-Missing)") is None

    fake_ari.respond("GET", "/channels/c2/variable", 404, {"message": "Provided channel was not found"})
    with pytest.raises(AriNotFound, match="channel was not found"):
        await client.get_variable("c2", "X")


async def test_bridges(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("POST", "/bridges", 200, BRIDGE)
    bridge = await client.create_bridge("holding", name="hold-1795625923.166")
    assert fake_ari.last.query == {"type": "holding", "name": "hold-1795625923.166"}
    assert isinstance(bridge, Bridge)
    assert (bridge.bridge_type, bridge.technology, bridge.channels) == ("holding", "holding_bridge", [])

    await client.create_bridge("mixing", bridge_id="call-1")
    assert fake_ari.last.query == {"type": "mixing", "bridgeId": "call-1"}

    fake_ari.respond("GET", "/bridges", 200, [BRIDGE, {**BRIDGE, "id": "b2", "unknown_future": 1}])
    assert [b.id for b in await client.list_bridges()] == [BRIDGE["id"], "b2"]
    fake_ari.respond("GET", "/bridges/b2", 200, {**BRIDGE, "id": "b2"})
    assert (await client.get_bridge("b2")).id == "b2"

    fake_ari.respond("DELETE", "/bridges/gone", 404, {"message": "Bridge not found"})
    assert await client.destroy_bridge("gone") is False
    assert await client.destroy_bridge("b2") is True


async def test_stop_bridge_moh_conflict_is_false(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("DELETE", "/bridges/hold/moh", 409, {"message": "Bridge isn't playing music"})
    assert await client.stop_bridge_moh("hold") is False
    assert await client.stop_bridge_moh("other") is True


async def test_applications_endpoints_asterisk(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("POST", "/applications/acd/subscription", 200, APPLICATION)
    app = await client.subscribe("endpoint:PJSIP/agent4")
    assert fake_ari.last.query == {"eventSource": "endpoint:PJSIP/agent4"}
    assert app.endpoint_ids == ["PJSIP/agent4"]

    fake_ari.respond("DELETE", "/applications/acd/subscription", 200, {**APPLICATION, "endpoint_ids": []})
    assert (await client.unsubscribe("endpoint:PJSIP/agent4")).endpoint_ids == []
    assert (fake_ari.last.method, fake_ari.last.query) == ("DELETE", {"eventSource": "endpoint:PJSIP/agent4"})

    fake_ari.respond(
        "GET",
        "/applications/acd",
        200,
        {
            "name": "acd",
            "channel_ids": ["c1"],
            "bridge_ids": ["b1"],
            "endpoint_ids": [],
            "device_names": [],
            "events_allowed": [],
        },
    )
    app = await client.get_application()
    assert (app.channel_ids, app.bridge_ids) == (["c1"], ["b1"])

    fake_ari.respond(
        "GET",
        "/endpoints/PJSIP/agent1",
        200,
        {"technology": "PJSIP", "resource": "agent1", "state": "offline", "channel_ids": []},
    )
    assert (await client.get_endpoint("PJSIP", "agent1")).state == "offline"
    fake_ari.respond("GET", "/endpoints/PJSIP/nosuchagent", 404, {"message": "Endpoint not found"})
    with pytest.raises(AriNotFound, match="Endpoint not found"):
        await client.get_endpoint("PJSIP", "nosuchagent")
    endpoint = {"technology": "PJSIP", "resource": "agent1", "channel_ids": []}
    fake_ari.respond("GET", "/endpoints", 200, [endpoint])
    assert [e.resource for e in await client.list_endpoints()] == ["agent1"]

    fake_ari.respond("GET", "/channels", 200, [CHANNEL])
    assert [c.id for c in await client.list_channels()] == [CHANNEL["id"]]
    fake_ari.respond("GET", "/asterisk/ping", 200, {"asterisk_id": "x", "ping": "pong", "timestamp": "t"})
    assert (await client.ping())["ping"] == "pong"
    fake_ari.respond("GET", "/asterisk/info", 200, {"system": {"version": "22.10.1", "entity_id": "x"}})
    assert (await client.asterisk_info())["system"]["version"] == "22.10.1"


async def test_set_event_filter(fake_ari: FakeAri, client: AriClient) -> None:
    path = "/applications/acd/eventFilter"
    allowed = [{"type": "StasisStart"}, {"type": "ApplicationReplaced"}]
    fake_ari.respond("PUT", path, 200, {**APPLICATION, "events_allowed": allowed, "events_disallowed": []})
    app = await client.set_event_filter(allowed=["StasisStart", "ApplicationReplaced"])
    assert (fake_ari.last.method, fake_ari.last.body) == ("PUT", {"allowed": allowed})
    assert app.events_allowed == allowed
    await client.set_event_filter(allowed=[], disallowed=("ChannelVarset",))
    assert fake_ari.last.body == {"allowed": [], "disallowed": [{"type": "ChannelVarset"}]}
    with pytest.raises(ValueError, match="reset both"):
        await client.set_event_filter()  # an empty body would silently reset both lists
    with pytest.raises(TypeError):
        await client.set_event_filter(allowed="StasisStart")
    with pytest.raises(ValueError, match="non-empty"):
        await client.set_event_filter(allowed=[""])
    fake_ari.respond("PUT", path, 400, {"message": "Invalid format definition"})
    with pytest.raises(AriBadRequest, match="Invalid format definition"):
        await client.set_event_filter(allowed=["StasisStart"])
    fake_ari.respond("PUT", path, 404, {"message": "Application not found"})
    with pytest.raises(AriNotFound):
        await client.set_event_filter(allowed=["StasisStart"])
    fake_ari.respond("PUT", path, 501, {"message": "Not implemented"})
    with pytest.raises(AriServerError):
        await client.set_event_filter(allowed=["StasisStart"])


async def test_allocation_failed_is_endpoint_unreachable(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("POST", "/channels/create", 500, {"error": "Allocation failed"})
    fake_ari.respond("POST", "/channels", 500, {"error": "Allocation failed"})
    with pytest.raises(EndpointUnreachable) as info:
        await client.create_channel("PJSIP/agent1", app_args="offer,1")
    assert info.value.status == 500
    assert info.value.endpoint == "PJSIP/agent1"
    assert "PJSIP/agent1" in str(info.value) and "registered" in str(info.value)
    with pytest.raises(EndpointUnreachable):
        await client.originate("PJSIP/agent1", timeout=10)


async def test_other_errors_are_typed(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("POST", "/channels/create", 400, {"message": "Invalid endpoint specified"})
    with pytest.raises(AriBadRequest, match="Invalid endpoint specified") as info:
        await client.create_channel("agent1")
    assert (info.value.status, info.value.method, info.value.path) == (400, "POST", "/channels/create")
    assert info.value.detail == "Invalid endpoint specified"

    fake_ari.respond("GET", "/channels/gone", 404, {"message": "Channel not found"})
    with pytest.raises(AriNotFound, match="Channel not found"):
        await client.get_channel("gone")

    fake_ari.respond("POST", "/channels/c1/answer", 409, {"message": "Channel not in Stasis application"})
    with pytest.raises(AriConflict):
        await client.answer("c1")

    fake_ari.respond("POST", "/channels/c1/ring", 412, {"message": "Channel in invalid state"})
    with pytest.raises(AriError) as info:
        await client.ring("c1")
    assert info.value.status == 412 and type(info.value) is AriError

    fake_ari.respond("POST", "/bridges", 500, {"error": "Allocation failed"})
    with pytest.raises(AriServerError) as info:  # only create/originate mean "endpoint unreachable"
        await client.create_bridge("holding")
    assert not isinstance(info.value, EndpointUnreachable)

    fake_ari.respond("GET", "/channels/c3", 200, {"name": "no id"})
    with pytest.raises(AriServerError, match="Channel"):
        await client.get_channel("c3")


async def test_unauthorized_names_user_not_password(
    fake_ari: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with AriClient(fake_ari.base_url, USER, "wrong-Secret-9", "acd") as bad:
        with pytest.raises(AriUnauthorized) as info:
            await bad.ping()
        text = f"{info.value} {info.value!r} {bad!r} {vars(info.value)}"
    assert "'acd'" in str(info.value)
    assert fake_ari.base_url in str(info.value)
    assert "ACD_ARI_PASSWORD" in str(info.value)
    assert "wrong-Secret-9" not in text
    assert "wrong-Secret-9" not in caplog.text
    assert bad.stats["http_401"] == 1


async def test_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AriClient(url, USER, PASSWORD, "acd") as c:
        with pytest.raises(AriConnectionError) as info:
            await c.get_channel("c1")
        assert url in str(info.value)
        assert info.value.status is None
        assert c.stats["connection_errors"] == 1
    assert PASSWORD not in str(info.value) and PASSWORD not in caplog.text


async def test_timeout_is_connection_error(fake_ari: FakeAri) -> None:
    fake_ari.delay = 0.5
    async with AriClient(fake_ari.base_url, USER, PASSWORD, "acd", request_timeout=0.05) as c:
        with pytest.raises(AriConnectionError, match="did not answer GET /channels"):
            await c.list_channels()
        assert c.stats["timeouts"] == 1


async def test_stats_count_requests_and_errors(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.respond("DELETE", "/channels/gone", 404, {"message": "Channel not found"})
    await client.answer("c1")
    await client.hangup("gone")
    assert client.stats["requests"] == 2
    assert client.stats["errors"] == 1
    assert client.stats["http_404"] == 1


async def test_external_session_is_not_closed(fake_ari: FakeAri) -> None:
    async with aiohttp.ClientSession() as session:
        async with AriClient(fake_ari.base_url + "/ari/", USER, PASSWORD, "acd", session=session) as c:
            await c.answer("c1")
            assert c.base_url == fake_ari.base_url
        assert not session.closed
        assert fake_ari.last.path == "/channels/c1/answer"


def test_base_url_validation_and_repr() -> None:
    with pytest.raises(ValueError, match="http://host:8088"):
        AriClient("127.0.0.1:8088", USER, PASSWORD, "acd")
    with pytest.raises(ValueError, match="not in the ARI URL") as info:
        AriClient(f"http://acd:{PASSWORD}@127.0.0.1:8088", USER, PASSWORD, "acd")
    assert PASSWORD not in str(info.value)
    client = AriClient("https://pbx:8089", USER, PASSWORD, "acd")
    assert PASSWORD not in repr(client)
    assert client.events_url == "wss://pbx:8089/ari/events?app=acd"


async def test_query_values_arrive_exactly_with_plus_spaces_and_reserved_characters(
    fake_ari: FakeAri, client: AriClient
) -> None:
    """A '+' must travel as %2B: Asterisk's ast_uri_decode (legacy) reads a bare '+' as a space."""
    fake_ari.respond("POST", "/channels", 200, CHANNEL)
    caller = '"Zoë + Co & Sons=1, 100%" <+49 30/123#4>'
    await client.originate("PJSIP/agent1", app_args=["offer", "1"], caller_id=caller)
    assert fake_ari.last.query["callerId"] == caller
    assert "+" not in fake_ari.last.raw_query and " " not in fake_ari.last.raw_query
