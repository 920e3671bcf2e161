"""Hot standby with real processes: two ``acdctl run`` replicas (ACD_HA=true) on one PostgreSQL,
the simulated Asterisk served over HTTP/WebSocket from this test process.

SIGSTOP is a real freeze (sockets stay open, no timer runs) and SIGKILL a real crash, which the
in-process tests (tests/ha/test_takeover.py) can only imitate. Evidence is independent of the
replicas: the simulator's records (what callers and phones saw, which ARI user sent each request)
and PostgreSQL's own audit of who wrote which row (tests/ha/procs.py).
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from controller.clock import Clock
from controller.sim import Answer, NoAnswer, SimAsterisk
from tests.ha.procs import ARI_PASSWORD, RENEW, TTL, Replicas, audit, roles_schema
from tests.timing import JITTER, until

# Generous bound for "the standby took over": TTL + resync, on a loaded 2-core machine. Only a
# takeover that clearly did not happen fails; the measured time is printed.
TAKEOVER_BOUND = TTL + 10 + 4 * JITTER


@pytest.fixture
async def world(tmp_path):
    """(sim, replicas): the simulator with one ARI user per replica, and the replica launcher;
    every subprocess is killed at the end, and their output printed (shown when a test fails)."""
    sim = SimAsterisk(
        clock=Clock(speed=1.0),  # the replicas run on wall time
        seed=1,
        user="acd-a",
        password=ARI_PASSWORD,
        users={"acd-b": ARI_PASSWORD},
        duplicate_channel_events=True,
        add_waits_for_playback=True,
    )
    await sim.start("127.0.0.1", 0)
    replicas: Replicas | None = None
    try:
        async with roles_schema(("a", "b")) as (schema, urls):
            replicas = Replicas(tmp_path, sim.base_url, schema, urls)
            try:
                yield sim, replicas
            finally:
                await replicas.close()
                print(replicas.logs())
    finally:
        await sim.stop()


async def _active_and_standby(replicas: Replicas):
    a = await replicas.start("a")
    await until(lambda: _is(replicas, a, "active"), timeout=30, what="a active")
    b = await replicas.start("b")
    await until(lambda: _is(replicas, b, "standby"), timeout=30, what="b standby")
    return a, b


async def _is(replicas: Replicas, proc, role: str) -> bool:
    assert proc.running or proc.stopped, f"replica {proc.name} exited {proc.process.returncode}"
    return await replicas.role(proc) == role


async def test_sigstop_active_standby_takes_over_and_the_woken_one_acts_on_nothing(world):
    sim, replicas = world
    replicas.bob_state = "logged_out"  # nobody free for the second caller: it waits
    sim.add_phone("alice", Answer(after=0.2))
    sim.add_phone("bob", Answer(after=0.2))
    a, b = await _active_and_standby(replicas)

    talking = sim.place_call("101", caller_number="1001")
    await talking.wait_for(lambda c: c.bridged_with == "alice", timeout=20)
    waiting = sim.place_call("101", caller_number="1002")
    await waiting.wait_for(lambda c: c.hearing_moh, timeout=20)

    frozen_at = time.monotonic()
    a.signal(signal.SIGSTOP)
    await until(lambda: _is(replicas, b, "active"), timeout=TAKEOVER_BOUND, what="b active")
    print(f"SIGSTOP -> standby active: {time.monotonic() - frozen_at:.2f} s (TTL {TTL} s, renew {RENEW} s)")
    await until(lambda: sim.ws_log[-1][1] == "acd-b", timeout=10, what="b holds the app's websocket")

    # the new active routes: bob logs in there and gets the waiting caller
    status, _ = await replicas.post(b, "/api/agents/bob/login")
    assert status in (200, 204), _
    await waiting.wait_for(lambda c: c.bridged_with == "bob", timeout=20)
    bob_invite = sim.phones["bob"].last_invite
    dialled = [r for r in sim.rest_log if r.method == "POST" and bob_invite.channel_id in r.path]
    assert dialled and {r.user for r in dialled} == {"acd-b"}
    assert talking.bridged_with == "alice" and len(talking.media) == 1  # untouched

    # the frozen one wakes up: it must send nothing, write nothing, and exit 3
    rest_mark, ws_mark = len(sim.rest_log), len(sim.ws_log)
    written_before = [r for r in await audit(replicas.schema) if r.who == a.db_role]
    a.signal(signal.SIGCONT)
    async with asyncio.timeout(20):
        code = await a.process.wait()
    assert code == 3, f"exit code {code}"
    woke_rest = [r for r in list(sim.rest_log)[rest_mark:] if r.user == "acd-a"]
    woke_ws = [w for w in list(sim.ws_log)[ws_mark:] if w[1] == "acd-a"]
    assert not woke_rest and not woke_ws, (woke_rest, woke_ws)
    written_after = [r for r in await audit(replicas.schema) if r.who == a.db_role]
    assert written_after == written_before
    assert any(r.who == b.db_role for r in await audit(replicas.schema))  # the audit does see writes
    # and nothing changed for the callers
    assert talking.bridged_with == "alice" and len(talking.media) == 1
    assert waiting.bridged_with == "bob" and len(waiting.media) == 1
    assert await replicas.role(b) == "active"


async def test_sigkill_active_standby_takes_over_callers_keep_their_place(world):
    sim, replicas = world
    sim.add_phone("alice", Answer(after=0.2))
    sim.add_phone("bob", [NoAnswer(), Answer(after=0.2)])
    a, b = await _active_and_standby(replicas)

    talking = sim.place_call("101", caller_number="1001")
    await talking.wait_for(lambda c: c.bridged_with == "alice", timeout=20)
    rung = sim.place_call("101", caller_number="1002")
    bob = sim.phones["bob"]
    await sim.wait_for(lambda: bob.last_invite is not None and bob.last_invite.outcome == "ringing", 20)
    ringing = bob.last_invite
    later = sim.place_call("101", caller_number="1003")
    await later.wait_for(lambda c: c.hearing_moh, timeout=20)

    killed_at = time.monotonic()
    a.signal(signal.SIGKILL)
    async with asyncio.timeout(10):
        assert await a.process.wait() == -signal.SIGKILL
    await until(lambda: _is(replicas, b, "active"), timeout=TAKEOVER_BOUND, what="b active")
    took = time.monotonic() - killed_at
    await ringing.wait_for(lambda r: r.outcome == "cancelled", timeout=20)  # the phone saw CANCEL
    await rung.wait_for(lambda c: c.bridged_with == "bob", timeout=20)  # offered again, first
    print(
        f"SIGKILL -> standby active: {took:.2f} s; -> rung caller connected again: "
        f"{time.monotonic() - killed_at:.2f} s (TTL {TTL} s, renew {RENEW} s)"
    )
    cancels = [r for r in sim.rest_log if r.method == "DELETE" and ringing.channel_id in r.path]
    assert cancels and {r.user for r in cancels} == {"acd-b"}
    assert later.channel is not None and later.bridged_with is None and later.outcome != "abandoned"
    assert talking.bridged_with == "alice" and len(talking.media) == 1  # untouched
    assert sim.phones["alice"].last_invite.outcome == "answered" and len(sim.phones["alice"].invites) == 1
    assert len(bob.invites) == 2 and bob.invites[1].from_number == "1002"
