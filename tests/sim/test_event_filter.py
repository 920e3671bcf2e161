"""PUT /applications/{app}/eventFilter as Asterisk 22 does it (res/stasis/app.c
stasis_app_event_filter_set / stasis_app_event_allowed, res/ari/resource_applications.c,
res/ari/ari_websockets.c ari_websocket_send_event, main/http.c ast_http_get_json)."""

from __future__ import annotations

import aiohttp

from controller.sim import SimAsterisk
from tests.sim.ari import Ari

FILTER = "/applications/acd/eventFilter"


def _types(*names: str) -> list[dict[str, str]]:
    return [{"type": n} for n in names]


async def _lists(ari: Ari) -> tuple[list, list]:
    status, app = await ari.get("/applications/acd")
    assert status == 200
    return app["events_allowed"], app["events_disallowed"]


async def test_body_rules(ari: Ari) -> None:
    assert await _lists(ari) == ([], [])
    app = await ari.ok("PUT", FILTER, json={"allowed": _types("StasisStart", "StasisEnd")})
    assert app["name"] == "acd" and app["events_allowed"] == _types("StasisStart", "StasisEnd")
    assert await _lists(ari) == (_types("StasisStart", "StasisEnd"), [])
    # one list given: the other one is not touched
    await ari.ok("PUT", FILTER, json={"disallowed": _types("ChannelVarset")})
    assert await _lists(ari) == (_types("StasisStart", "StasisEnd"), _types("ChannelVarset"))
    # an empty array sets that list empty
    await ari.ok("PUT", FILTER, json={"allowed": []})
    assert await _lists(ari) == ([], _types("ChannelVarset"))
    # an empty object resets both
    await ari.ok("PUT", FILTER, json={"allowed": _types("Dial"), "disallowed": _types("Dial")})
    await ari.ok("PUT", FILTER, json={})
    assert await _lists(ari) == ([], [])
    # a top-level array is taken for both lists
    await ari.ok("PUT", FILTER, json=_types("Dial"))
    assert await _lists(ari) == (_types("Dial"), _types("Dial"))
    # no body at all resets both too
    await ari.ok("PUT", FILTER)
    assert await _lists(ari) == ([], [])


async def test_body_without_json_content_type_is_no_body(
    sim: SimAsterisk, ari: Ari, http: aiohttp.ClientSession
) -> None:
    await ari.ok("PUT", FILTER, json={"allowed": _types("Dial")})
    body = b'{"allowed": [{"type": "StasisStart"}]}'
    async with http.put(f"{sim.ari_url}{FILTER}", data=body, headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 200
    assert await _lists(ari) == ([], [])  # not read: an absent body resets both lists


async def test_bad_filters(ari: Ari, sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    invalid = (400, {"message": "Invalid format definition"})
    await ari.ok("PUT", FILTER, json={"allowed": _types("Dial")})
    assert await ari.call("PUT", FILTER, json={"allowed": "StasisStart"}) == invalid
    assert await ari.call("PUT", FILTER, json={"allowed": None}) == invalid
    assert await ari.call("PUT", FILTER, json={"allowed": [{"name": "StasisStart"}]}) == invalid
    assert await ari.call("PUT", FILTER, json={"allowed": [{"type": ""}]}) == invalid
    assert await ari.call("PUT", FILTER, json={"allowed": [{"type": 3}]}) == invalid
    assert await ari.call("PUT", FILTER, json={"allowed": ["StasisStart"]}) == invalid
    assert await _lists(ari) == (_types("Dial"), [])
    # "disallowed" is applied before "allowed" is checked: it stays set although the answer is 400
    assert await ari.call("PUT", FILTER, json={"disallowed": _types("Dial"), "allowed": 1}) == invalid
    assert await _lists(ari) == (_types("Dial"), _types("Dial"))
    for raw in (b"not json", b'"StasisStart"', b"3"):  # jansson without JSON_DECODE_ANY
        async with http.put(
            f"{sim.ari_url}{FILTER}", data=raw, headers={"Content-Type": "application/json"}
        ) as r:
            assert (r.status, await r.json()) == (400, {"message": "Error parsing request body"})
    status, body = await ari.call("PUT", "/applications/nobody/eventFilter", json={"allowed": []})
    assert (status, body) == (404, {"message": "Application not found"})


async def test_only_allowed_types_reach_the_socket(sim: SimAsterisk, ari: Ari) -> None:
    await ari.ok("PUT", FILTER, json={"allowed": _types("StasisStart", "StasisEnd", "ChannelStateChange")})
    await ari.ok("PUT", FILTER, json={"disallowed": _types("ChannelStateChange")})  # disallowed wins
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    await ari.ok("DELETE", f"/channels/{customer}")
    await ari.event("StasisEnd")
    assert {e["type"] for e in ari.events} == {"StasisStart", "StasisEnd"}
    produced = [r for r in sim.event_log if r.app == "acd"]
    assert {r.type for r in produced if not r.delivered} >= {"ChannelStateChange", "ChannelVarset"}
    assert all(r.delivered == (r.type in ("StasisStart", "StasisEnd")) for r in produced)
    await ari.ok("PUT", FILTER, json={})  # reset: everything again
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    await ari.event("ChannelStateChange", lambda e: e["channel"]["id"] == customer)


async def test_application_replaced_is_filtered_too(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    first = await Ari(sim, http).connect()
    await first.ok("PUT", FILTER, json={"allowed": _types("StasisStart")})
    second = await Ari(sim, http).connect()
    await second.customer()
    assert first.events == []  # replaced without being told
    assert [r.delivered for r in sim.event_log if r.type == "ApplicationReplaced"] == [False]
    await second.ok("PUT", FILTER, json={"allowed": _types("StasisStart", "ApplicationReplaced")})
    third = await Ari(sim, http).connect()
    await second.event("ApplicationReplaced")
    for client in (first, second, third):
        await client.close()


async def test_filter_lives_as_long_as_the_app(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    ari = await Ari(sim, http).connect()
    await ari.ok("PUT", FILTER, json={"allowed": _types("StasisStart", "StasisEnd")})
    caller, customer = await ari.customer()
    await ari.close()
    await sim.wait_for(lambda: not sim.app_active("acd"))
    ari = await Ari(sim, http).connect()  # the app still owned a channel: same app, same filter
    assert await _lists(ari) == (_types("StasisStart", "StasisEnd"), [])
    await ari.ok("DELETE", f"/channels/{customer}")
    await ari.event("StasisEnd")
    await ari.close()
    await sim.wait_for(lambda: sim.apps.get("acd") is None, what="app destroyed")
    ari = await Ari(sim, http).connect()  # a new app: no filter
    assert await _lists(ari) == ([], [])
    await ari.close()
