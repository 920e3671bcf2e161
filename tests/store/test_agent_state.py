"""Agent state survives a restart: the store keeps it, the next process restores it before ARI.

Paused (with its reason), logged out, not responding, misses and the wrap-up end come back; an
agent the store has never seen starts in the queue file's ``state``. SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from dataclasses import replace

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import Presence
from controller.acd.setup import AgentStartState
from controller.sim import Answer, NoAnswer
from controller.store.agent_state import load_agent_states, restore_events
from controller.store.writer import HistoryWriter
from tests.acd.harness import Harness, make_setup, queue
from tests.stack import make_stack
from tests.telephony.conftest import make_setup as stack_setup


def _with_state(setup, **states):
    agents = {a: replace(conf, state=states.get(a, conf.state)) for a, conf in setup.agents.items()}
    return replace(setup, agents=agents)


async def test_restart_restores_agent_states_from_the_store(db):
    names = ["alice", "bob", "carol", "dave", "erin"]
    setup = make_setup(agents=names, logged_out=["erin"], queue=queue(wrapup=30, max_no_answer=3))
    first = Harness(setup)
    epoch = time.time() - 100.0
    writer = HistoryWriter(db, engine=first.engine, epoch=epoch, linger=0)
    writer.start()

    def run(event):
        for c in first.do(event):
            if isinstance(c, cmd.Record | cmd.Notify):
                writer.listener(c)

    run(ev.AgentPause("alice", "lunch"))
    run(ev.AgentLogout("bob"))
    run(ev.AgentLogin("erin"))
    run(ev.CallArrived("c1", "support"))
    run(ev.AgentLegAnswered(first.offer_of("carol")))
    run(ev.CallerHungUp("c1"))  # carol wraps up until 30
    run(ev.CallArrived("c2", "support"))
    first.now = 15
    for timer_id, at in sorted(first.timers.items(), key=lambda t: t[1]):
        if timer_id.startswith("ring:") and at <= 15:
            run(ev.TimerFired(timer_id))  # dave rings out: one miss
    run(ev.CallerHungUp("c2"))
    await writer.close()
    assert first.engine.agents["dave"].misses == 1

    # 20 s after the first process started, a new one with a new clock (engine time 0) and a
    # queue file that lists erin as logged out and two agents the store has never seen
    again = make_setup(agents=[*names, "frank", "gina"], logged_out=["erin", "frank"], queue=queue(wrapup=30))
    second = Harness(again)
    stored = await load_agent_states(db)
    for event in restore_events(stored, second.engine.agents, epoch + 20):
        second.do(event)
    a = second.engine.agents
    assert (a["alice"].presence, a["alice"].pause_reason) == (Presence.PAUSED, "lunch")
    assert a["bob"].presence is Presence.LOGGED_OUT
    assert a["carol"].in_wrapup and abs(a["carol"].wrapup_until - 10) < 1e-3, "30 s after the first start"
    assert a["dave"].misses == 1
    assert a["erin"].presence is Presence.AVAILABLE, "the file's state is only the first state"
    assert a["frank"].presence is Presence.LOGGED_OUT and a["gina"].presence is Presence.AVAILABLE
    assert [c.agent_id for c in second.arrive("c3") if isinstance(c, cmd.RingAgent)] == ["dave"]


async def test_not_responding_survives_a_restart(db):
    setup = make_setup(agents=["alice"], queue=queue(max_no_answer=1))
    first = Harness(setup)
    writer = HistoryWriter(db, engine=first.engine, epoch=time.time(), linger=0)
    writer.start()
    out = first.arrive("c1") + first.advance(15)
    for c in out:
        if isinstance(c, cmd.Record):
            writer.listener(c)
    await writer.close()
    second = Harness(setup)
    for event in restore_events(await load_agent_states(db), second.engine.agents, writer.epoch):
        second.do(event)
    alice = second.engine.agents["alice"]
    assert alice.presence is Presence.NOT_RESPONDING and alice.pause_reason == "1 offers not answered"


async def test_controller_restores_states_at_start_before_routing(db):
    """The whole process: states kept by one controller are back in the next before any call."""
    setup = stack_setup({"alice": "agent1", "bob": "agent2", "carol": "agent3"})
    phones = {"agent1": Answer(after=0.2), "agent2": Answer(after=0.2), "agent3": NoAnswer()}
    stack = await make_stack(db, setup, phones, http=False)
    try:
        stack.controller.shell.feed(ev.AgentPause("alice", "training"))
        stack.controller.shell.feed(ev.AgentLogout("bob"))
        await stack.writer.flushed()
    finally:
        await stack.close()
    carol_out = _with_state(setup, carol=AgentStartState.LOGGED_OUT)
    stack = await make_stack(db, carol_out, phones, http=False)
    try:
        a = stack.controller.engine.agents
        assert (a["alice"].presence, a["alice"].pause_reason) == (Presence.PAUSED, "training")
        assert a["bob"].presence is Presence.LOGGED_OUT
        assert a["carol"].presence is Presence.AVAILABLE, "the store saw carol start available"
    finally:
        await stack.close()


async def test_database_down_at_start_uses_the_queue_files_states_and_says_so(tmp_path, caplog):
    """PostgreSQL unreachable at start: calls are routed anyway, from the queue file's states."""
    from tests.store.test_outage import outage_db  # noqa: PLC0415 - its TCP proxy

    setup = stack_setup({"alice": "agent1"})
    async with outage_db("postgresql", tmp_path) as (db, down, up):
        await down()
        stack = await make_stack(db, setup, {"agent1": Answer(after=0.2)}, http=False)
        try:
            assert stack.controller.engine.agents["alice"].presence is Presence.AVAILABLE
            assert "cannot read the agents' saved states" in caplog.text
            caller = stack.call()
            await caller.wait_for(lambda c: c.bridged_with == "agent1", 200)
            await up()
        finally:
            await stack.close()
