"""Traffic generator determinism, the speed factor, and throughput under a small ACD-like load."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from controller.clock import Clock
from controller.sim import Answer, SimAsterisk, exponential, fixed
from tests.sim.ari import Ari
from tests.timing import assert_duration


async def test_plan_is_deterministic_under_a_seed(sim: SimAsterisk) -> None:
    def gen(seed: int) -> Any:
        return sim.traffic(
            rate=5.0,
            seed=seed,
            max_calls=50,
            patience=exponential(30),
            talk_time=fixed(60),
            headers=lambda rng, i: {"X-Ticket": str(rng.randrange(10**6))},
        )

    assert gen(7).plan() == gen(7).plan()
    assert gen(7).plan() != gen(8).plan()
    plan = gen(7).plan()
    assert len(plan) == 50 and all(a.at < b.at for a, b in zip(plan, plan[1:], strict=False))
    mean_gap = plan[-1].at / len(plan)
    assert 0.1 < mean_gap < 0.4  # Poisson at 5/s: mean inter-arrival 0.2 s
    assert {spec.exten for spec in plan} == {"101"} and all(
        spec.caller_number.startswith("555") for spec in plan
    )


async def test_generator_places_the_planned_calls(sim: SimAsterisk, http: aiohttp.ClientSession) -> None:
    ari = await Ari(sim, http).connect()
    traffic = sim.traffic(rate=20.0, seed=3, max_calls=15, patience=fixed(1.0))
    expected = traffic.plan()
    traffic.start()
    await traffic.wait_done(timeout=10)
    assert [c.caller_number for c in traffic.calls] == [s.caller_number for s in expected]
    await sim.wait_for(lambda: all(c.ended for c in traffic.calls), timeout=5)
    assert {c.outcome for c in traffic.calls} == {"abandoned"}
    assert len([e for e in ari.events if e["type"] == "StasisStart"]) == 15
    await ari.close()


async def test_speed_factor_scales_every_delay(make_sim: Any, http: aiohttp.ClientSession) -> None:
    sim: SimAsterisk = await make_sim(clock=Clock(100))
    sim.add_phone("agent1", Answer(after=20.0))
    ari = await Ari(sim, http).connect()
    started = time.monotonic()
    agent = await ari.offer("agent1", timeout=60)
    await ari.event("Dial", lambda e: e["peer"]["id"] == agent and e["dialstatus"] == "ANSWER", timeout=30)
    wall = time.monotonic() - started
    assert wall >= 0.19  # 20 clock seconds at speed 100 never pass sooner than 0.2 s (minus rounding)
    invite = sim.phones["agent1"].last_invite
    assert invite is not None
    assert_duration(invite.answered_at - invite.at, 20.0, 100.0, early=0.1, what="answer delay")
    await ari.close()


async def test_load_many_concurrent_calls(make_sim: Any, http: aiohttp.ClientSession) -> None:
    """A minimal controller: answer, park, offer to a free agent, bridge. 300 calls over 60 agents."""
    sim: SimAsterisk = await make_sim(clock=Clock(50))
    agents = [sim.add_phone(f"agent{i}", Answer(after=0.5)) for i in range(60)]
    free = [a.name for a in agents]
    ari = await Ari(sim, http).connect()
    done = 0
    calls = 300

    agent_freed = asyncio.Condition()

    async def handle(customer: str) -> None:
        nonlocal done
        await ari.ok("POST", f"/channels/{customer}/answer")
        async with agent_freed:
            await agent_freed.wait_for(lambda: bool(free))
            agent_name = free.pop()
        agent = await ari.offer(agent_name, customer)
        await ari.event(
            "Dial", lambda e: e["peer"]["id"] == agent and e["dialstatus"] == "ANSWER", timeout=60
        )
        bridge = await ari.ok("POST", "/bridges", type="mixing")
        await ari.ok("POST", f"/bridges/{bridge['id']}/addChannel", channel=f"{customer},{agent}")
        await ari.ok("DELETE", f"/channels/{agent}")
        await ari.ok("DELETE", f"/channels/{customer}")
        await ari.ok("DELETE", f"/bridges/{bridge['id']}")
        async with agent_freed:
            free.append(agent_name)
            agent_freed.notify()
        done += 1

    callers = [sim.place_call("101", caller_number=f"555{i:04d}") for i in range(calls)]
    assert all(c.outcome == "ringing" for c in callers)
    await asyncio.gather(*(handle(c.channel_id) for c in callers))
    assert done == calls and not sim.channels
    assert all(c.outcome == "disconnected" and c.ever_bridged_with for c in callers)
    await ari.close()
