"""Lifecycle invariants under random phone behaviours and controller actions (Hypothesis)."""

from __future__ import annotations

from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.clock import Clock
from controller.sim import DND, Answer, Busy, Dead, Decline, NoAnswer, SimAsterisk
from tests.sim.ari import Ari
from tests.sim.conftest import PASSWORD, USER

behaviours = st.one_of(
    st.builds(Answer, after=st.floats(0.05, 1.0), hangup_after=st.none() | st.floats(0.1, 1.0)),
    st.builds(Decline, after=st.floats(0.05, 1.0)),
    st.builds(Busy, after=st.floats(0.05, 1.0)),
    st.builds(DND, after=st.floats(0.05, 1.0)),
    st.just(NoAnswer()),
    st.just(Dead()),
)
actions = st.sampled_from(["wait", "hangup_agent", "bridge", "hangup_customer"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.tuples(behaviours, actions, st.floats(0.0, 1.5)), min_size=1, max_size=4),
    seed=st.integers(0, 9),
)
async def test_every_offer_ends_cleanly(plan: list[tuple[Any, str, float]], seed: int) -> None:
    sim = SimAsterisk(clock=Clock(40), seed=seed, user=USER, password=PASSWORD)
    await sim.start()
    headers = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            ari = await Ari(sim, http).connect()
            agents = []
            for i, (behaviour, action, delay) in enumerate(plan):
                sim.add_phone(f"agent{i}", behaviour)
                caller, customer = await ari.customer(caller_number=f"55500{i}")
                await ari.ok("POST", f"/channels/{customer}/answer")
                agent = await ari.offer(f"agent{i}", customer, timeout=2)
                agents.append(agent)
                await sim.clock.sleep(delay)
                if action == "hangup_agent" and agent in sim.channels:
                    status, _ = await ari.call("DELETE", f"/channels/{agent}", reason="answered_elsewhere")
                    # 404 only when the phone ended the offer while the request was on its way
                    assert status == 204 or (status == 404 and agent not in sim.channels), status
                elif action == "bridge" and agent in sim.channels and sim.channels[agent].state == "Up":
                    bridge = await ari.ok("POST", "/bridges", type="mixing")
                    status, body = await ari.call(
                        "POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{customer},{agent}"
                    )
                    if status == 204:
                        for cid in (customer, agent):
                            entered = await ari.event(
                                "ChannelEnteredBridge", lambda e, c=cid: e["channel"]["id"] == c
                            )
                            assert entered["bridge"]["id"] == bridge["id"]
                    else:  # the agent hung up (Answer(hangup_after)) while the request was on its way
                        assert (status, body) == (400, {"message": "Channel not found"}), (status, body)
                        assert agent not in sim.channels
                elif action == "hangup_customer":
                    caller.hangup()
                status, _ = await ari.call("DELETE", f"/channels/{customer}")
                assert status == (404 if action == "hangup_customer" else 204), (action, status)
                if agent in sim.channels:
                    status, _ = await ari.call("DELETE", f"/channels/{agent}")
                    assert status == 204 or (status == 404 and agent not in sim.channels), status
            for agent in agents:
                await ari.event("ChannelDestroyed", lambda e, a=agent: e["channel"]["id"] == a, timeout=10)
            for agent in agents:
                seq = ari.of(agent)
                types = [e["type"] for e in seq]
                assert types[:3] == ["ChannelDialplan", "ChannelVarset", "StasisStart"], types
                assert types[-3:] == ["StasisEnd", "ChannelVarset", "ChannelDestroyed"], types
                assert types.count("ChannelDestroyed") == 1 and types.count("StasisEnd") == 1
                statuses = [e["dialstatus"] for e in seq if e["type"] == "Dial"]
                assert statuses == ["", "RINGING", "ANSWER"][: len(statuses)], statuses
            assert (await ari.get("/channels")) == (200, [])
            assert (await ari.get("/applications/acd"))[1]["channel_ids"] == []
            assert all(c.ended for c in sim.calls)
            assert all(inv.ended for phone in sim.phones.values() for inv in phone.invites)
            await ari.close()
    finally:
        await sim.stop()


async def test_ids_are_deterministic_under_a_seed(make_sim: Any, http: aiohttp.ClientSession) -> None:
    async def run() -> list[str]:
        sim: SimAsterisk = await make_sim(seed=42)
        sim.add_phone("agent1", NoAnswer())
        ari = await Ari(sim, http).connect()
        caller, customer = await ari.customer()
        bridge = await ari.ok("POST", "/bridges", type="holding")
        agent = await ari.ok("POST", "/channels/create", endpoint="PJSIP/agent1", app="acd")
        await ari.close()
        return [
            sim.channels[customer].protocol_id,
            bridge["id"],
            agent["protocol_id"],
            agent["id"].split(".")[1],
        ]

    assert await run() == await run()
