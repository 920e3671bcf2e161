"""Harness phones against each other over loopback: each agent behaviour sends the SIP it promises.

A caller UA calls an agent UA directly (no PBX). Every wait is on the SIP event that proves the
point; the only time checks are lower bounds (a ring delay can't be cut short), never speed.
"""

import pytest

from controller.harness.ua import Behaviour, HarnessError, UaGroup


def uri(agents: UaGroup, name: str) -> str:
    return f"sip:{name}@127.0.0.1:{agents.port}"


async def test_answer_rings_then_answers_and_agent_hangs_up_after_talk(phones):
    agents, callers = phones
    await agents.add_agent("a1", Behaviour("answer", ring=0.2, talk=0.3))
    call = callers.call("cust", uri(agents, "a1"))
    end = await callers.ended(call)
    assert end["answered"] and end["by"] == "far end"
    incoming = await agents.incoming("a1")
    await agents.ended(incoming["call"])  # the two processes' events arrive in any order
    leg = agents.record(incoming["call"])
    assert leg.sent_codes == [180, 200]
    sent_200 = leg.first("sent", code=200)
    assert sent_200["t"] - incoming["t"] >= 0.2  # rang at least `ring` seconds
    confirmed = leg.first("state", state="CONFIRMED")
    assert leg.ended["t"] - confirmed["t"] >= 0.3  # talked at least `talk` seconds
    assert leg.ended["by"] == "us"
    caller = callers.record(call)
    assert [e["code"] for e in caller.events if e["ev"] == "state" and e["state"] == "EARLY"] == [180]


@pytest.mark.parametrize(
    ("mode", "code", "provisional"),
    [("decline", 603, [180]), ("busy", 486, []), ("dnd", 480, [])],
)
async def test_refusals_send_their_code(phones, mode, code, provisional):
    agents, callers = phones
    await agents.add_agent("a1", Behaviour(mode))
    call = callers.call("cust", uri(agents, "a1"))
    end = await callers.ended(call)
    assert (end["code"], end["answered"]) == (code, False)
    incoming = await agents.incoming("a1")
    await agents.ended(incoming["call"])
    assert agents.record(incoming["call"]).sent_codes == [*provisional, code]


async def test_noanswer_rings_until_the_caller_cancels(phones):
    agents, callers = phones
    await agents.add_agent("a1", Behaviour("noanswer"))
    call = callers.call("cust", uri(agents, "a1"), cancel_after=0.2)
    end = await callers.ended(call)
    assert end["by"] == "us" and not end["answered"]
    incoming = await agents.incoming("a1")
    leg_end = await agents.ended(incoming["call"])
    assert leg_end["code"] == 487 and leg_end["by"] == "far end"  # CANCEL -> 487 Request Terminated
    assert agents.record(incoming["call"]).sent_codes == [180]


async def test_confirm_mode_presses_the_key_after_answering(phones):
    agents, callers = phones
    await agents.add_agent("a1", Behaviour.parse("confirm:0:0:2"))
    call = callers.call("cust", uri(agents, "a1"))
    digit = await callers.wait(lambda e: e["ev"] == "dtmf" and e["call"] == call, what="DTMF")
    assert digit["digit"] == "2"
    callers.hangup(call)
    assert (await callers.ended(call))["by"] == "us"


async def test_caller_dtmf_reaches_the_agent(phones):
    agents, callers = phones
    await agents.add_agent("a1", Behaviour("answer"))
    call = callers.call("cust", uri(agents, "a1"), dtmf="1", dtmf_after=0.1)
    got = await agents.wait(lambda e: e["ev"] == "dtmf", what="DTMF at agent")
    assert got["digit"] == "1"
    callers.hangup(call)
    await callers.ended(call)


async def test_desktop_phone_answers_only_an_invite_with_auto_answer_headers(phones):
    agents, callers = phones
    await agents.add_agent("desk", Behaviour.parse("desktop"))
    auto = {
        "Alert-Info": "<http://localhost>;info=alert-autoanswer;delay=0",
        "Call-Info": "<sip:localhost>;answer-after=0",
    }
    call = callers.call("cust", uri(agents, "desk"), headers=auto, hangup_after=0.1)
    end = await callers.ended(call)
    assert end["answered"]
    offer = await agents.incoming("desk")
    await agents.ended(offer["call"])
    assert offer["auto_answer"] == auto
    assert agents.record(offer["call"]).sent_codes == [180, 200]

    mark = agents.mark()
    plain = callers.call("cust", uri(agents, "desk"), cancel_after=0.3)
    assert not (await callers.ended(plain))["answered"]
    offer = await agents.incoming("desk", start=mark)
    await agents.ended(offer["call"])
    assert offer["auto_answer"] == {}
    assert agents.record(offer["call"]).sent_codes == [180]


async def test_answer_mode_phone_ignores_auto_answer_headers(phones):
    agents, callers = phones
    await agents.add_agent("a1", Behaviour("noanswer"))
    call = callers.call(
        "cust", uri(agents, "a1"), headers={"Call-Info": "<sip:x>;answer-after=0"}, cancel_after=0.2
    )
    assert not (await callers.ended(call))["answered"]


async def test_agent_reports_call_details_from_the_invite(phones):
    agents, callers = phones
    await agents.add_agent("a1", Behaviour("busy"))
    headers = {
        "P-Asserted-Identity": '"[support 0:42] Maria" <sip:+4930123@127.0.0.1>',
        "X-Acd-Queue": "support",
        "X-Acd-Call-Id": "c-1",
    }
    call = callers.call("cust", uri(agents, "a1"), headers=headers)
    await callers.ended(call)
    offer = await agents.incoming("a1")
    assert (offer["display_name"], offer["number"]) == ("[support 0:42] Maria", "+4930123")
    assert offer["x_acd"] == {"X-Acd-Queue": "support", "X-Acd-Call-Id": "c-1"}
    assert offer["auto_answer"] == {}


async def test_bad_commands_are_reported_and_the_worker_keeps_working(phones):
    agents, callers = phones
    callers._send({"cmd": "call", "ua": "nobody", "id": "x", "to": "sip:x@127.0.0.1"})
    err = await callers.wait(lambda e: e["ev"] == "error", what="error event")
    assert "nobody" in err["error"]
    await agents.add_agent("a1", Behaviour("busy"))
    call = callers.call("cust", uri(agents, "a1"))
    assert (await callers.ended(call))["code"] == 486


def test_behaviour_parsing_rejects_unknown_modes():
    assert Behaviour.parse("answer:2:5") == Behaviour("answer", ring=2.0, talk=5.0)
    with pytest.raises(ValueError, match="unknown agent behaviour"):
        Behaviour.parse("maybe")


async def test_waiting_for_an_event_that_never_comes_fails_clearly(phones):
    agents, _ = phones
    with pytest.raises(HarnessError, match="no INVITE at a9"):
        await agents.incoming("a9", timeout=0.05)


async def test_a_group_spreads_phones_over_worker_processes_and_routes_commands():
    """pjsua2 allows few accounts and calls per process: a group starts more workers as needed."""
    pytest.importorskip("pjsua2")
    agents, callers = UaGroup("agents", phones_per_worker=1), UaGroup("callers")
    await agents.start()
    await callers.start()
    try:
        await callers.add_caller("cust")
        for name in ("a1", "a2", "a3"):
            await agents.add_agent(name, Behaviour("noanswer"))
        ports = {agents.port_of(n) for n in ("a1", "a2", "a3")}
        assert len(ports) == 3
        for name in ("a1", "a2", "a3"):
            mark = agents.mark()
            call = callers.call("cust", f"sip:{name}@127.0.0.1:{agents.port_of(name)}")
            offer = await agents.incoming(name, start=mark)
            agents.respond(offer["call"], 486)  # reaches the worker that got the INVITE
            assert (await callers.ended(call))["code"] == 486
        await agents.sync()
    finally:
        await agents.close()
        await callers.close()


async def test_a_worker_refuses_more_phones_than_pjsua_allows_instead_of_aborting():
    pytest.importorskip("pjsua2")
    async with UaGroup("many", phones_per_worker=20) as many:
        for i in range(8):
            await many.add_agent(f"a{i}", Behaviour("busy"))
        with pytest.raises(HarnessError, match="at most 8 phones per worker"):
            await many.add_agent("a8", Behaviour("busy"))
        await many.sync()  # the worker is still alive


async def test_a_group_runs_its_phones_at_the_nice_level_asked_for():
    """A load test keeps the phones behind the PBX on a shared machine (``--phones-nice``)."""
    pytest.importorskip("pjsua2")
    import os

    async with UaGroup("nice", nice=7) as group:
        ready = next(e for e in group.events if e["ev"] == "ready")
        assert os.getpriority(os.PRIO_PROCESS, ready["pid"]) == os.getpriority(os.PRIO_PROCESS, 0) + 7
