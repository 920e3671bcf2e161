"""The controller process: start-up checks, takeover by another controller, the demo."""

from __future__ import annotations

import asyncio
import io

import pytest

from controller.app import Controller, run_controller
from controller.ari.errors import ApplicationReplaced
from controller.clock import Clock
from controller.config import load_settings
from controller.demo import demo
from controller.sim import Answer, NoAnswer, SimAsterisk
from tests.telephony.conftest import make_setup


@pytest.fixture
async def sim():
    s = SimAsterisk(
        clock=Clock(speed=20),
        seed=1,
        user="acd",
        password="secret",
        duplicate_channel_events=True,
        add_waits_for_playback=True,
    )
    await s.start("127.0.0.1", 0)
    yield s
    await s.stop()


def _settings(url: str, password: str):
    return load_settings(env_file=None, ari_url=url, ari_user="acd", ari_password=password)


async def test_run_exits_2_when_credentials_are_wrong(sim, capsys):
    code = await run_controller(_settings(sim.base_url, "wrong"), make_setup({"alice": "agent1"}))
    assert code == 2
    err = capsys.readouterr().err
    assert "refused credentials for user 'acd'" in err and "ACD_ARI_PASSWORD" in err
    assert "wrong" not in err, "the password never appears"


async def test_run_exits_2_when_ari_is_unreachable(capsys, unused_tcp_port):
    code = await run_controller(
        _settings(f"http://127.0.0.1:{unused_tcp_port}", "x"), make_setup({"alice": "agent1"})
    )
    assert code == 2
    assert f"127.0.0.1:{unused_tcp_port}" in capsys.readouterr().err


async def test_second_controller_takes_over_and_first_stops(sim):
    setup = make_setup({"alice": "agent1"})
    sim.add_phone("agent1", Answer(after=0.5))
    kw = dict(ari_url=sim.base_url, ari_user="acd", ari_password="secret", clock=sim.clock)
    first, second = Controller(setup, **kw), Controller(setup, **kw)
    await first.start()
    await second.start()
    with pytest.raises(ApplicationReplaced):
        await first.wait()
    caller = sim.place_call("101")
    await caller.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    assert caller.channel_id in second.engine.calls and caller.channel_id not in first.engine.calls
    await first.stop()
    await second.stop()


async def test_demo_routes_calls_and_narrates():
    out = io.StringIO()
    totals = await demo(duration=3, speed=40, seed=3, agents=6, rate=0.5, out=out, live=False)
    text = out.getvalue()
    assert totals.get("completed", 0) >= 3
    assert "-> next agent" in text, "a declined, busy or unanswered offer moved on"
    assert any(f"{o} " in text for o in ("rejected", "busy", "no_answer", "unreachable"))
    assert "accepted" in text and "bridged" in text
    assert "demo finished" in text


async def test_restart_takes_calls_back_requeues_waiting_and_hangs_up_orphans(sim):
    setup = make_setup({"alice": "agent1", "bob": "agent2"}, ring_timeout=60)
    sim.add_phone("agent1", Answer(after=0.5))
    sim.add_phone("agent2", NoAnswer())
    kw = dict(ari_url=sim.base_url, ari_user="acd", ari_password="secret", clock=sim.clock)
    first = Controller(setup, **kw)
    await first.start()
    talking = sim.place_call("101", caller_number="5550001")
    await talking.wait_for(lambda c: c.bridged_with == "agent1", timeout=30)
    waiting = sim.place_call("101", caller_number="5550002")
    ringing = await sim.phones["agent2"].wait_for_invite()
    await first.stop()  # the process dies: Asterisk keeps every channel

    second = Controller(setup, **kw)
    records = []
    second.shell.recorders.append(records.append)
    await second.start()
    engine = second.engine
    # the talking pair is taken back, untouched
    assert engine.agents["alice"].status == "talking"
    assert talking.bridged_with == "agent1" and len(talking.media) == 1
    # the orphan ringing leg is hung up; the waiting caller is back in line with its arrival time
    await ringing.wait_for(lambda i: i.outcome == "cancelled", timeout=30)
    queued = [r.data for r in records if getattr(r, "kind", "") == "call.queued"]
    assert queued and queued[0]["call"] == waiting.channel_id and queued[0]["requeued"]
    # measured on Asterisk's clock at its ping: off by at most that request's round trip
    slack = second.shell.ping_uncertainty + 0.002
    assert abs(engine.calls[waiting.channel_id].arrived_at - waiting.placed_at) <= slack, (
        "keeps its place in line"
    )
    # the restored call ends normally
    talking.hangup()
    await sim.phones["agent1"].invites[0].wait_for(lambda i: i.outcome == "ended", timeout=30)
    ended = [r.data for r in records if getattr(r, "kind", "") == "call.ended"]
    assert ended[0]["call"] == talking.channel_id and ended[0]["outcome"] == "completed"
    await second.stop()


async def test_starts_with_hundreds_of_agents_and_forgets_finished_calls(sim):
    agents = {f"a{i}": f"agent{i}" for i in range(400)}
    for phone in agents.values():
        sim.add_phone(phone, Answer(after=0.2))
    controller = Controller(
        make_setup(agents, wrapup=0),
        ari_url=sim.base_url,
        ari_user="acd",
        ari_password="secret",
        clock=sim.clock,
    )
    await controller.start()  # one subscription URL for 400 endpoints would exceed Asterisk's 4 KiB
    assert all(a.reachable for a in controller.engine.agents.values())
    callers = [sim.place_call("101", caller_number=f"555{i:04d}", hangup_after_answer=1) for i in range(20)]
    for caller in callers:
        await caller.wait_for(lambda c: c.ended_at is not None, timeout=20)
    shell = controller.shell
    for _ in range(200):
        if not shell.calls and not shell.legs and not controller.engine.calls:
            break
        await asyncio.sleep(0.01)
    assert not shell.calls and not shell.legs and not shell._marks, "nothing kept per finished call"
    assert not controller.engine.calls and not controller.engine.offers
    # Asterisk sends only what the shell uses (eventFilter); without it the stream skips the rest
    # unparsed (tests/telephony/test_event_filter.py)
    assert controller.shell.event_filter_ok and controller.stream.stats["ignored_events"] == 0
    await controller.stop()


async def test_a_restored_caller_is_aged_at_asterisks_ping_not_when_restored(sim):
    # a slow request between Asterisk's ping and the restore must not make the caller younger
    setup = make_setup({"alice": "agent1"})
    kw = dict(ari_url=sim.base_url, ari_user="acd", ari_password="secret", clock=sim.clock)
    first = Controller(setup, **kw)
    await first.start()
    waiting = sim.place_call("101")
    await waiting.wait_for(lambda c: c.hearing_moh, timeout=30)
    await first.stop()
    second = Controller(setup, **kw)
    for path in ("/channels", "/bridges", "/applications/acd"):
        sim.faults.add("GET", path, delay=2.0)  # answers held 2 clock s (0.1 wall s)
    await second.start()
    slack = second.shell.ping_uncertainty + 0.002
    assert abs(second.engine.calls[waiting.channel_id].arrived_at - waiting.placed_at) <= slack
    await second.stop()


async def test_a_restored_waiting_caller_keeps_its_priority_and_call_info(sim):
    setup = make_setup({"alice": "agent1"})
    sim.dialplan["104"] = ("acd", ["support", "7"])
    kw = dict(
        ari_url=sim.base_url,
        ari_user="acd",
        ari_password="secret",
        clock=sim.clock,
        info_headers=("X-Ticket",),
    )
    first = Controller(setup, **kw)
    await first.start()
    waiting = sim.place_call("104", headers={"X-Ticket": "T-42"})
    await waiting.wait_for(lambda c: c.hearing_moh, timeout=30)
    assert first.engine.calls[waiting.channel_id].info == {"X-Ticket": "T-42"}
    await first.stop()
    second = Controller(setup, **kw)
    await second.start()
    for _ in range(500):
        if waiting.channel_id in second.engine.calls:
            break
        await asyncio.sleep(0.01)
    call = second.engine.calls[waiting.channel_id]
    assert (call.priority, dict(call.info)) == (7, {"X-Ticket": "T-42"})
    await second.stop()
