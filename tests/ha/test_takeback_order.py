"""A new term (takeover or restart) takes waiting callers back in their queue order.

Each taken-back caller is dispatched as soon as it arrives in the engine, so the order in which the
resync feeds them decides who gets a free agent: it must be the caller who waited longest (before:
the order of a set, so a random one)."""

from __future__ import annotations

from controller.app import Controller
from controller.clock import Clock
from controller.sim import NoAnswer, SimAsterisk
from tests.telephony.conftest import make_setup


async def test_free_agent_gets_the_caller_who_waited_longest_after_a_restart():
    sim = SimAsterisk(clock=Clock(speed=20), seed=1, user="acd", password="secret")
    await sim.start("127.0.0.1", 0)
    try:
        setup = make_setup({"bob": "agent2"}, ring_timeout=600)
        sim.add_phone("agent2", NoAnswer())
        kw = dict(ari_url=sim.base_url, ari_user="acd", ari_password="secret", clock=sim.clock)
        first = Controller(setup, **kw)
        await first.start()
        callers = [sim.place_call("101", caller_number="5550001")]
        phone = sim.phones["agent2"]
        await phone.wait_for_invite()
        for n in range(2, 9):
            callers.append(sim.place_call("101", caller_number=f"555000{n}"))
            await callers[-1].wait_for(lambda c: c.hearing_moh, timeout=30)
        await first.stop()  # the process dies: Asterisk keeps every channel

        second = Controller(setup, **kw)
        await second.start()
        await sim.wait_for(lambda: len(phone.invites) == 2, timeout=30, what="bob rung again")
        assert phone.invites[1].from_number == "5550001"
        await second.stop()
    finally:
        await sim.stop()
