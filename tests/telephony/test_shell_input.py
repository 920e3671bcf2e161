"""Events the shell must shrug off: unknown channels, foreign apps' noise, duplicates."""

from __future__ import annotations

from controller.acd.engine import Engine
from controller.ari import models as ari
from controller.clock import Clock
from controller.telephony.shell import Telephony
from tests.telephony.conftest import make_setup


def _shell() -> Telephony:
    engine = Engine(make_setup({"alice": "agent1"}))
    return Telephony(engine, client=None, clock=Clock(), app="acd")  # type: ignore[arg-type]


def _channel(cid: str, **kw) -> dict:
    return {"id": cid, "name": f"PJSIP/x-{cid}", "state": kw.get("state", "Up")}


async def test_events_for_unknown_channels_change_nothing():
    shell = _shell()
    events = [
        {"type": "ChannelDestroyed", "cause": 16, "channel": _channel("nope")},
        {"type": "StasisEnd", "channel": _channel("nope")},
        {"type": "ChannelStateChange", "channel": _channel("nope")},
        {"type": "ChannelHangupRequest", "soft": True, "cause": 32, "channel": _channel("nope")},
        {"type": "ChannelDtmfReceived", "digit": "1", "channel": _channel("nope")},
        {"type": "Dial", "dialstatus": "ANSWER", "peer": _channel("nope")},
        {"type": "ChannelVarset", "variable": "RTPAUDIOQOS", "value": "x"},
        {"type": "SomethingNew", "foo": 1},
        {
            "type": "EndpointStateChange",
            "endpoint": {"technology": "PJSIP", "resource": "stranger", "state": "online"},
        },
    ]
    for data in events:
        await shell.on_event(ari.parse_event(data))
    assert not shell.engine.calls and not shell.legs and not shell.calls
    assert shell.engine.stats["unknown_endpoint"] == 1
    assert shell.engine.agents["alice"].eligible


async def test_duplicate_stasis_start_is_counted_not_requeued():
    shell = _shell()
    shell.lanes.submit = lambda lane, job: None  # no Asterisk here: drop the ARI jobs
    start = {"type": "StasisStart", "args": ["support"], "channel": _channel("c1", state="Ring")}
    await shell.on_event(ari.parse_event(start))
    await shell.on_event(ari.parse_event(start))
    assert list(shell.engine.calls) == ["c1"]
    assert shell.stats["duplicate_stasis_start"] == 1


async def test_a_job_started_by_an_event_sends_before_the_next_event_is_handled():
    """The consumer handles a burst of frames back to back; the job an event started (the next
    agent's originate, a park) must get to send its request first, not after the whole burst."""
    shell = _shell()
    started: list[str] = []

    async def park(chans) -> None:
        started.append(chans.call_id)

    shell._park = park  # type: ignore[method-assign]
    start = {"type": "StasisStart", "args": ["support"], "channel": _channel("c1", state="Ring")}
    await shell.on_event(ari.parse_event(start))
    assert started == ["c1"]  # already running when the consumer takes the next frame
    await shell.lanes.drain()
