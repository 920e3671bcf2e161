"""The ARI event filter (issue 14): the controller asks Asterisk at every connect to send only the
event types it handles, and works on without it when Asterisk refuses."""

from __future__ import annotations

import logging

import pytest

from controller.acd.engine import Engine
from controller.ari.errors import AriConnectionError, Fenced
from controller.clock import Clock
from controller.sim import Answer
from controller.telephony.shell import HANDLED_EVENTS, Telephony
from tests.telephony.conftest import make_setup

TWO = {"alice": "agent1", "bob": "agent2"}
FILTER_PATH = r"/applications/.*/eventFilter"
ALLOWED = sorted(HANDLED_EVENTS | {"ApplicationReplaced"})


def filter_puts(w) -> list[int]:
    return [r.status for r in w.sim.rest_log if r.method == "PUT" and r.path.endswith("/eventFilter")]


def allowed_in_sim(w) -> list[str]:
    return [item["type"] for item in w.sim.apps.get("acd").events_allowed or []]


async def talk_and_hang_up(w, number: str) -> None:
    caller = w.call(caller_number=number)
    await caller.wait_for(lambda c: c.bridged_with is not None, timeout=30)
    caller.hangup()
    await w.until(lambda: not w.engine.calls and not w.controller.shell.legs)


async def test_the_filter_is_set_at_connect_and_only_handled_events_arrive(world_factory):
    w = await world_factory(make_setup(TWO), {"agent1": Answer(after=1), "agent2": Answer(after=1)})
    assert filter_puts(w) == [200]
    assert allowed_in_sim(w) == ALLOWED
    app = await w.controller.client.get_application()
    assert [item["type"] for item in app.events_allowed] == ALLOWED
    await talk_and_hang_up(w, "5550001")
    stream = w.controller.stream
    assert stream.stats["events"] > 0 and stream.stats["ignored_events"] == 0
    assert w.controller.shell.event_filter_ok is True
    assert w.controller.shell.stats["event_filter_failed"] == 0


async def test_the_filter_is_set_again_after_a_reconnect(world_factory):
    w = await world_factory(make_setup(TWO), {"agent1": Answer(after=1), "agent2": Answer(after=1)})
    stream = w.controller.stream
    w.sim.apps.get("acd").set_event_filter({})  # lost meanwhile (e.g. a new app object in Asterisk)
    assert allowed_in_sim(w) == []
    await w.sim.drop_connections()
    await w.until(lambda: stream.stats["reconnects"] >= 1 and w.controller.shell.online.is_set())
    assert filter_puts(w) == [200, 200]
    assert allowed_in_sim(w) == ALLOWED
    await talk_and_hang_up(w, "5550001")
    assert stream.stats["ignored_events"] == 0


async def test_an_asterisk_without_the_filter_still_routes_calls(world_factory, caplog):
    caplog.set_level(logging.DEBUG, logger="controller.telephony")
    w = await world_factory(
        make_setup(TWO),
        {"agent1": Answer(after=1), "agent2": Answer(after=1)},
        prepare=lambda sim, c: sim.faults.add("PUT", FILTER_PATH, status=404, times=None),
    )
    shell, stream = w.controller.shell, w.controller.stream
    await talk_and_hang_up(w, "5550001")
    await w.sim.drop_connections()
    await w.until(lambda: stream.stats["reconnects"] >= 1 and shell.online.is_set())
    await talk_and_hang_up(w, "5550002")
    assert filter_puts(w) == [404, 404]
    assert shell.stats["event_filter_failed"] == 2 and shell.event_filter_ok is False
    assert allowed_in_sim(w) == []
    assert stream.stats["ignored_events"] > 0  # the client-side filter does the work now
    warnings = [
        r for r in caplog.records if "event filter" in r.getMessage() and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1, "warned once, not at every reconnect"
    assert "every event" in warnings[0].getMessage()


async def test_the_filter_cuts_the_frames_a_call_brings(world_factory):
    frames = {}
    for refused in (False, True):
        w = await world_factory(
            make_setup(TWO),
            {"agent1": Answer(after=1), "agent2": Answer(after=1)},
            prepare=(lambda sim, c: sim.faults.add("PUT", FILTER_PATH, status=501)) if refused else None,
        )
        stream = w.controller.stream
        before = stream.stats["events"]
        for n in range(3):
            await talk_and_hang_up(w, f"555000{n}")
        frames[refused] = stream.stats["events"] - before
    assert frames[False] * 3 < frames[True], frames


class _Refusing:
    """A client whose eventFilter request fails with ``exc``."""

    app = "acd"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def set_event_filter(self, **kw):
        raise self.exc


async def test_any_error_is_survived_but_a_lost_lease_stops_the_resync():
    engine = Engine(make_setup({"alice": "agent1"}))
    shell = Telephony(engine, client=_Refusing(AriConnectionError(None, "timed out")), clock=Clock())
    await shell.set_event_filter()  # a timeout, a 500, a 403 of a read-only user: carry on
    assert shell.stats["event_filter_failed"] == 1 and shell.event_filter_ok is False
    shell.client = _Refusing(Fenced("PUT"))
    with pytest.raises(Fenced):  # hot standby: nothing more may be sent, the connect fails as before
        await shell.set_event_filter()
