"""The simulated dialplan: continue back into Stasis, running off the end, entry parsing."""

from __future__ import annotations

import pytest

from controller.sim import DialplanEntry, SimAsterisk
from controller.sim.dialplan import Dialplan, make_entry, parse_steps
from tests.sim.ari import Ari


def test_entries_parse_like_extensions_conf() -> None:
    assert parse_steps("NoOp, Stasis(acd,support,10)") == (("NoOp", ""), ("Stasis", "acd,support,10"))
    assert make_entry("Stasis(acd,support)") == DialplanEntry("acd", ("support",))
    assert make_entry(("acd", ["x"])).program() == (("NoOp", ""), ("Stasis", "acd,x"), ("Hangup", ""))
    plan = Dialplan({"acd-overflow,102": "NoOp, Stasis(acd,support,10)", "101": ("acd", "support")})
    assert plan.find("acd-overflow", "102").program()[1] == ("Stasis", "acd,support,10")
    assert plan.find("from-customer", "101") is not None
    assert plan.find("acd-overflow", "101") is None and plan.find("acd-overflow", "999") is None
    with pytest.raises(ValueError):
        parse_steps("NoOp, 12 34")


async def _parked(ari: Ari) -> tuple[object, str, str]:
    caller, customer = await ari.customer()
    await ari.ok("POST", f"/channels/{customer}/answer")
    hold = await ari.ok("POST", "/bridges", type="holding")
    await ari.ok("POST", f"/bridges/{hold['id']}/addChannel", channel=customer)
    await ari.ok("POST", f"/bridges/{hold['id']}/moh")
    return caller, customer, hold["id"]


async def test_continue_back_into_stasis(sim: SimAsterisk, ari: Ari) -> None:
    sim.dialplan["acd-overflow,102"] = "NoOp, Stasis(acd,support,10)"
    caller, customer, hold = await _parked(ari)
    n = len(ari.events)
    logged = sim.apps.count
    target = {"context": "acd-overflow", "extension": "102", "priority": 1}
    await ari.ok("POST", f"/channels/{customer}/continue", **target)
    assert sim.rest_log[-1].events_before == logged  # 204 first, then the events
    start = await ari.event("StasisStart", lambda e: e["args"] == ["support", "10"], start=n)
    assert [e["type"] for e in ari.events[n:]] == ["ChannelLeftBridge", "StasisEnd", "StasisStart"]
    end = ari.events[n + 1]
    assert end["channel"]["dialplan"]["context"] == "from-customer"
    assert start["channel"]["id"] == customer and start["channel"]["state"] == "Up"
    assert start["channel"]["dialplan"] == {
        "context": "acd-overflow",
        "exten": "102",
        "priority": 2,
        "app_name": "Stasis",
        "app_data": "acd,support,10",
    }
    assert not caller.ended and caller.continued_to == ("acd-overflow", "102", 1)
    app = (await ari.get("/applications/acd"))[1]
    assert app["channel_ids"] == [customer] and app["bridge_ids"] == [hold]
    # the emptied bridge kept the app's subscription
    await ari.ok("DELETE", f"/bridges/{hold}")
    assert (await ari.event("BridgeDestroyed"))["bridge"]["id"] == hold
    # the re-entered channel is a full Stasis channel again
    await ari.ok("POST", f"/channels/{customer}/moh")


@pytest.mark.parametrize(("exten", "priority"), [("102", 3), ("999", 1)])
async def test_continue_to_nothing_hangs_up(sim: SimAsterisk, ari: Ari, exten: str, priority: int) -> None:
    sim.dialplan["acd-overflow,102"] = "NoOp, Stasis(acd,support,10)"
    caller, customer, hold = await _parked(ari)
    n = len(ari.events)
    await ari.ok(
        "POST", f"/channels/{customer}/continue", context="acd-overflow", extension=exten, priority=priority
    )
    await ari.event("StasisEnd", start=n)
    await caller.wait_for(lambda c: c.ended)
    assert caller.bye_reasons == ["Q.850;cause=16"] and caller.hangup_cause == 16
    assert await ari.get(f"/channels/{customer}") == (404, {"message": "Channel not found"})
    await ari.ok("DELETE", f"/bridges/{hold}")
    await ari.event("BridgeDestroyed", start=n)
    assert [e["type"] for e in ari.events[n:]] == ["ChannelLeftBridge", "StasisEnd", "BridgeDestroyed"]


async def test_refused_stasis_falls_through_to_hangup(sim: SimAsterisk) -> None:
    """No websocket: Stasis() fails (FAILED), the next priority hangs up with 603 cause 16."""
    sim.dialplan["200"] = "NoOp, Stasis(acd), Hangup"
    caller = sim.place_call("200")
    assert caller.outcome == "refused" and caller.sip_final == 603
    assert caller.fallback == ("from-customer", "200", 3)


def test_expressions_are_evaluated_as_asterisk_does_or_refused() -> None:
    """``$[...]`` after substitution: one operator; numbers compare as numbers, the rest as text.
    What the sim would not evaluate exactly is a DialplanError, never a silent guess."""
    from controller.sim.dialplan import DialplanError, evaluate

    assert evaluate('"FAILED" != "FAILED"') == "0"
    assert evaluate('"" != "FAILED"') == "1"
    assert evaluate("10 >= 9") == "1" and evaluate("9 >= 10") == "0"  # numbers, not text
    assert evaluate("3 + 1") == "4" and evaluate("abc = abc") == "1"
    for bad in ("1 + 2 + 3", "a & b", "(1)", "1 +", 'x + "y"', ""):
        with pytest.raises(DialplanError):
            evaluate(bad)


def test_loading_extensions_conf_is_strict() -> None:
    from controller.sim.dialplan import DialplanError

    plan = Dialplan()
    plan.load(
        "[globals]\nN = 3\n[ctx]\nexten => 1,1,Set(T=0)\n same => n(top),Wait(1) ; comment\n"
        " same => n,Goto(top)\n[other]\ninclude => ctx\n"
    )
    assert plan.globals == {"N": "3"}
    entry = plan["ctx,1"]
    assert entry.steps[1] == ("Wait", "1") and entry.label("top") == 2 and entry.label("3") == 3
    assert plan.find("other", "1") is entry
    with pytest.raises(DialplanError):
        entry.label("nowhere")
    for bad in (
        "[c]\nexten => 1,1,Frobnicate(x)\n",  # an application the sim does not know
        "[c]\nexten => 1,1,GotoIf($[a & b]?x)\n",  # an operator it does not evaluate
        "[c]\nexten => 1,2,NoOp()\n",  # priorities out of order
        "[c]\nswitch => Realtime\n",  # anything but exten/same/include
    ):
        with pytest.raises(DialplanError):
            Dialplan().load(bad)


async def test_goto_without_a_pause_is_an_error_not_a_hang(sim: SimAsterisk) -> None:
    from controller.sim.dialplan import DialplanError

    sim.dialplan.load("[from-customer]\nexten => 777,1(top),NoOp()\n same => n,Goto(top)\n")
    with pytest.raises(DialplanError):
        sim.place_call("777")
