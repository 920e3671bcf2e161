"""queue_log lines (Asterisk format) for the standard scenarios, written by the real controller."""

from __future__ import annotations

import asyncio
import threading
import time

from controller.acd.events import AgentLogin, AgentLogout, AgentPause, AgentReady
from controller.acd.setup import Strategy
from controller.sim import Answer, Decline, NoAnswer
from tests.dbkit import migrated_db
from tests.stack import SPEED, make_stack
from tests.telephony.conftest import make_setup
from tests.timing import TIMED_SPEED, assert_duration


async def run(tmp_path, setup, phones, scenario, speed=SPEED):
    """``speed``: TIMED_SPEED for a test that checks durations (see tests/timing.py)."""
    path = tmp_path / "queue_log"
    async with migrated_db("sqlite", tmp_path) as (db, _url, _schema):
        stack = await make_stack(db, setup, phones, http=False, queue_log=str(path), speed=speed)
        try:
            await scenario(stack)
            await stack.until(lambda: not stack.controller.engine.calls, timeout=20)
        finally:
            await stack.close()
    lines = [line.split("|") for line in path.read_text().splitlines()]
    for line in lines:
        assert abs(int(line[0]) - time.time()) < 600, "epoch seconds"
    return [line[1:] for line in lines]


async def test_reject_then_next_agent_connects_and_caller_completes(tmp_path):
    setup = make_setup({"alice": "agent1", "bob": "agent2"}, strategy=Strategy.LINEAR)
    phones = {"agent1": Decline(after=1.0), "agent2": Answer(after=2.0)}
    call_id = None

    async def scenario(stack):
        nonlocal call_id
        caller = stack.call(caller_number="5550100", talk_time=10)
        call_id = caller.channel_id
        await caller.wait_for(lambda c: c.outcome not in ("ringing", "answered"), 200)

    lines = await run(tmp_path, setup, phones, scenario, TIMED_SPEED)
    calls = [line for line in lines if line[0] == call_id]
    assert [line[2:4] for line in calls] == [
        ["NONE", "ENTERQUEUE"],
        ["alice", "RINGNOANSWER"],
        ["bob", "CONNECT"],
        ["bob", "COMPLETECALLER"],
    ]
    assert calls[0][4:] == ["", "5550100", "1"]  # url, callerid, position
    assert_duration(int(calls[1][4]) / 1000, 1.0, TIMED_SPEED, early=0.1, what="ring time")
    hold, bridged, ring = calls[2][4:]
    assert bridged.startswith(call_id)
    assert_duration(int(hold), 3, TIMED_SPEED, what="hold time")  # 1 s to decline + 2 s to answer
    assert_duration(int(ring), 2, TIMED_SPEED, what="ring time of the answer")
    assert calls[3][4] == hold  # holdtime again
    assert_duration(int(calls[3][5]), 10, TIMED_SPEED, early=1, what="call time")
    assert calls[3][6] == "1"  # original position
    assert all(line[1] == "support" for line in calls)


async def test_agent_hangs_up_completeagent(tmp_path):
    setup = make_setup({"alice": "agent1"})
    phones = {"agent1": Answer(after=0.5, hangup_after=3)}

    async def scenario(stack):
        caller = stack.call()
        await caller.wait_for(lambda c: c.outcome not in ("ringing", "answered"), 200)

    lines = await run(tmp_path, setup, phones, scenario)
    assert [line[3] for line in lines if line[0] != "NONE"] == ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"]


async def test_caller_abandons_while_ringing(tmp_path):
    setup = make_setup({"alice": "agent1"})

    async def scenario(stack):
        caller = stack.call(hangup_after=3)
        await caller.wait_for(lambda c: c.outcome not in ("ringing", "answered"), 200)

    lines = await run(tmp_path, setup, {"agent1": NoAnswer()}, scenario, TIMED_SPEED)
    events = [line for line in lines if line[0] != "NONE"]
    assert [line[2:4] for line in events] == [
        ["NONE", "ENTERQUEUE"],
        ["alice", "RINGCANCELED"],
        ["NONE", "ABANDON"],
    ]
    assert events[2][4:6] == ["1", "1"]  # position, origposition
    assert_duration(int(events[2][6]), 3, TIMED_SPEED, what="wait time")


async def test_max_wait_overflow_is_exitwithtimeout(tmp_path):
    setup = make_setup({"alice": "agent1"}, max_wait=4, ring_timeout=10)

    async def scenario(stack):
        stack.call()
        await stack.until(lambda: any(r.kind == "call.ended" for r in stack.records), timeout=20)

    lines = await run(tmp_path, setup, {"agent1": NoAnswer()}, scenario, TIMED_SPEED)
    events = [line[3] for line in lines if line[0] != "NONE"]
    assert events == ["ENTERQUEUE", "RINGCANCELED", "EXITWITHTIMEOUT"]
    assert_duration(int(lines[-1][6]), 4, TIMED_SPEED, what="wait time at max_wait")


async def test_empty_queue_is_exitempty(tmp_path):
    setup = make_setup({"alice": "agent1"}, join_empty=False)

    async def scenario(stack):
        stack.controller.shell.feed(AgentLogout("alice"))
        stack.call()
        await stack.until(lambda: any(r.kind == "call.ended" for r in stack.records), timeout=20)

    lines = await run(tmp_path, setup, {"agent1": Answer()}, scenario)
    assert [line[3] for line in lines] == ["AGENTLOGOFF", "ENTERQUEUE", "EXITEMPTY"]


async def test_pause_unpause_login_logoff(tmp_path):
    setup = make_setup({"alice": "agent1"})

    async def scenario(stack):
        feed = stack.controller.shell.feed
        for event in (
            AgentPause("alice", "lunch"),
            AgentReady("alice"),
            AgentLogout("alice"),
            AgentLogin("alice"),
        ):
            feed(event)

    lines = await run(tmp_path, setup, {"agent1": Answer()}, scenario)
    assert lines[0][:4] == ["NONE", "support", "alice", "PAUSE"] and lines[0][4] == "lunch"
    assert [line[3] for line in lines] == ["PAUSE", "UNPAUSE", "AGENTLOGOFF", "AGENTLOGIN"]
    assert lines[2][4] == "PJSIP/agent1" and lines[3][4] == "PJSIP/agent1"


async def test_close_waits_for_a_write_already_in_flight(tmp_path):
    """Regression: close() cancelled the flush task mid-write and returned while the worker
    thread still appended the lines it had taken (a shutdown, or a test reading the file, lost them)."""
    from controller.acd.engine import Engine
    from controller.store.queue_log import QueueLog

    qlog = QueueLog(
        tmp_path / "queue_log", Engine(make_setup({"alice": "agent1"})), epoch=0, flush_interval=0.01
    )
    writing, release = threading.Event(), threading.Event()
    append = qlog._append

    def slow_append(lines):
        writing.set()
        release.wait(5)
        append(lines)

    qlog._append = slow_append
    qlog.start()
    qlog.lines.append("1|c1|support|NONE|ENTERQUEUE||5550100|1")
    await asyncio.to_thread(writing.wait, 5)
    asyncio.get_running_loop().call_later(0.2, release.set)  # the disk is slow; close() must wait
    await qlog.close()
    assert (tmp_path / "queue_log").read_text() == "1|c1|support|NONE|ENTERQUEUE||5550100|1\n"
