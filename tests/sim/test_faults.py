"""Fault injection (sim.faults): a request fails with a given status, is slow, or fails after being done."""

from __future__ import annotations

import aiohttp
import pytest

from controller.sim import NoAnswer, SimAsterisk
from tests.sim.ari import Ari


async def test_status_fault_answers_without_performing(sim: SimAsterisk, ari: Ari) -> None:
    fault = sim.faults.add("POST", r"/bridges", status=500)
    assert await ari.post("/bridges", type="holding") == (500, {"message": "Internal Server Error"})
    assert sim.bridges == {} and fault.hits == 1 and not fault.live
    assert (await ari.post("/bridges", type="holding"))[0] == 200  # times=1: used up
    assert fault.hits == 1 and len(sim.bridges) == 1


async def test_custom_body_fullmatch_and_method(sim: SimAsterisk, ari: Ari) -> None:
    sim.add_phone("agent1", NoAnswer())
    fault = sim.faults.add(
        "post", r"/channels/[^/]+/dial", status=409, body={"message": "Channel not in Stasis application"}
    )
    created = await ari.ok("POST", "/channels/create", endpoint="PJSIP/agent1", app="acd")
    assert fault.hits == 0  # /channels/create does not fullmatch the dial pattern
    await ari.event("StasisStart")
    assert (await ari.get(f"/channels/{created['id']}"))[0] == 200
    assert fault.hits == 0  # GET is another method
    assert await ari.post(f"/channels/{created['id']}/dial") == (
        409,
        {"message": "Channel not in Stasis application"},
    )
    assert fault.hits == 1 and sim.phones["agent1"].invites == []


async def test_apply_performs_then_fails(sim: SimAsterisk, ari: Ari) -> None:
    """The ambiguous failure: the channel exists, the client was told 500."""
    phone = sim.add_phone("agent1", NoAnswer())
    sim.faults.add("POST", r"/channels/create", status=500, apply=True)
    assert await ari.post("/channels/create", endpoint="PJSIP/agent1", app="acd") == (
        500,
        {"message": "Internal Server Error"},
    )
    started = await ari.event("StasisStart")
    assert list(sim.channels) == [started["channel"]["id"]] and phone.invites == []
    assert sim.rest_log[-1].status == 200  # what Asterisk really did


async def test_delay_holds_the_real_answer(sim: SimAsterisk, ari: Ari) -> None:
    sim.faults.add("POST", r"/bridges", delay=2.0, times=None)
    before = sim.clock.now()
    status, body = await ari.post("/bridges", type="mixing")
    assert status == 200 and body["id"] in sim.bridges
    assert sim.clock.now() - before >= 2.0


async def test_delay_then_status(sim: SimAsterisk, ari: Ari) -> None:
    fault = sim.faults.add("GET", r"/channels", status=503, delay=1.0, times=2)
    before = sim.clock.now()
    assert (await ari.get("/channels"))[0] == 503
    assert (await ari.get("/channels"))[0] == 503
    assert (await ari.get("/channels"))[0] == 200
    assert fault.hits == 2 and sim.clock.now() - before >= 2.0


async def test_forever_until_cleared(sim: SimAsterisk, ari: Ari) -> None:
    fault = sim.faults.add("GET", r"/applications/.*", status=500, times=None)
    for _ in range(3):
        assert (await ari.get("/applications/acd"))[0] == 500
    assert fault.hits == 3 and fault.live and sim.faults.active == [fault]
    sim.faults.clear()
    assert (await ari.get("/applications/acd"))[0] == 200 and sim.faults.active == []


def test_bad_faults_are_refused(sim: SimAsterisk) -> None:
    with pytest.raises(ValueError):
        sim.faults.add("GET", "/channels")  # neither status nor delay
    with pytest.raises(ValueError):
        sim.faults.add("GET", "/channels", status=500, times=0)
    with pytest.raises(ValueError):
        sim.faults.add("GET", "/channels", delay=1.0, body={"message": "x"})


async def test_refuse_websockets_for_a_while(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    first = await Ari(sim, http).connect()
    fault = sim.refuse_websockets(2.0)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(sim.ws_url("acd"))
    assert refused.value.status == 503 and fault.hits == 1
    assert sim.app_active("acd")  # the open socket stays
    await sim.wait_for(lambda: sim.faults.active == [], timeout=5)
    second = await Ari(sim, http).connect()
    await first.close()
    await second.close()


async def test_drop_connections_closes_the_socket(sim: SimAsterisk, ari: Ari) -> None:
    await sim.drop_connections("acd")
    assert not sim.app_active("acd")
    assert ari.ws is not None
    await ari.ws.receive()
    assert ari.ws.closed


async def test_drop_connections_and_refuse_for_a_while(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    ari = await Ari(sim, http).connect()
    await sim.drop_connections("acd", refuse_for=2.0)
    assert not sim.app_active("acd")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(sim.ws_url("acd"))
    await sim.wait_for(lambda: sim.faults.active == [], timeout=5)
    again = await Ari(sim, http).connect()
    assert sim.app_active("acd")
    await again.close()
    await ari.close()
