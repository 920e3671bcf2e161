"""The takeover window is not the fallback window any more: the shipped dialplan
(asterisk-config/extensions.conf) retries a Stasis() that FAILED (no controller holds the app's
websocket) every second for ACD_STASIS_RETRIES s before its fallback, and never retries a caller the
controller sent on itself (STASISSTATUS=SUCCESS). Run on the simulator's dialplan, which executes
the shipped file as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.acd.setup import QueueConfig
from controller.app import Controller
from controller.clock import Clock
from controller.sim import Answer, SimAsterisk
from tests.telephony.conftest import make_setup, sim_controller
from tests.timing import TIMED_SPEED, late

EXTENSIONS = Path(__file__).resolve().parents[2] / "asterisk-config" / "extensions.conf"
RETRIES = int(re.search(r"^ACD_STASIS_RETRIES\s*=\s*(\d+)", EXTENSIONS.read_text(), re.M).group(1))


@pytest.fixture
async def shipped():
    """A simulator running the shipped dialplan, and a way to start a controller on it later."""
    clock = Clock(speed=TIMED_SPEED)  # the window is RETRIES clock s: long enough in wall time
    sim = SimAsterisk(clock=clock, seed=1, user="acd", password="secret")
    sim.dialplan.load(EXTENSIONS.read_text(encoding="utf-8"))
    sim.dialplan["101"] = sim.dialplan["from-customers,101"]  # the sim's customers arrive in from-customer
    sim.add_phone("alice", Answer(after=0.5))
    await sim.start("127.0.0.1", 0)
    controllers: list[Controller] = []

    async def start(setup=None) -> Controller:
        controller = sim_controller(sim, setup or make_setup({"alice": "alice"}))
        controllers.append(controller)
        await controller.start()
        return controller

    yield sim, start
    for controller in controllers:
        await controller.stop()
    await sim.stop()


def _stasis_tries(sim: SimAsterisk, channel_id: str) -> list[float]:
    """When this channel ran the Stasis() of extension 101 (its dialplan log)."""
    stasis = sim.dialplan["from-customers,101"].label("stasis")
    log = sim.engine.dialplan_log
    return [t for t, ch, _ctx, exten, prio in log if (ch, exten, prio) == (channel_id, "101", stasis)]


def _reached_fallback(sim: SimAsterisk, channel_id: str) -> bool:
    return any(ch == channel_id and ctx == "acd-fallback" for _t, ch, ctx, _e, _p in sim.engine.dialplan_log)


async def test_caller_arriving_without_controller_waits_and_is_taken_by_the_one_that_connects(shipped):
    sim, start = shipped
    caller = sim.place_call("101", caller_number="1001")
    await sim.wait_for(lambda: len(_stasis_tries(sim, caller.channel_id)) >= 2, timeout=30, what="a retry")
    assert caller.hearing_ringback and caller.outcome not in ("refused", "disconnected")
    await start()  # the new active connects inside the window
    await caller.wait_for(lambda c: c.bridged_with == "alice", timeout=30)
    assert not _reached_fallback(sim, caller.channel_id)
    assert len(_stasis_tries(sim, caller.channel_id)) <= RETRIES + 1


async def test_after_the_window_the_caller_reaches_the_fallback(shipped):
    sim, _start = shipped
    caller = sim.place_call("101", caller_number="1001")
    placed = sim.clock.now()
    await sim.wait_for(
        lambda: _reached_fallback(sim, caller.channel_id), timeout=RETRIES + 60, what="fallback"
    )
    waited = sim.clock.now() - placed
    tries = _stasis_tries(sim, caller.channel_id)
    assert len(tries) == RETRIES + 1  # the first try and RETRIES retries, one a second
    assert RETRIES <= waited <= RETRIES + late(TIMED_SPEED), waited
    assert all(b - a >= 1.0 for a, b in zip(tries, tries[1:], strict=False))


async def test_caller_sent_on_by_the_controller_is_not_retried(shipped):
    """The controller does not know queue "support" here: it continues the caller (SUCCESS), who
    goes to the fallback at once, without a second Stasis()."""
    sim, start = shipped
    await start(make_setup({"alice": "alice"}, queue=QueueConfig("sales")))
    caller = sim.place_call("101", caller_number="1001")
    await sim.wait_for(lambda: _reached_fallback(sim, caller.channel_id), timeout=30, what="fallback")
    assert caller.outcome == "continued"
    assert len(_stasis_tries(sim, caller.channel_id)) == 1
    assert not caller.ringback
