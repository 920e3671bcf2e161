"""One test per routing rule: the engine's behaviour spec, read top to bottom."""

from __future__ import annotations

import pytest

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.commands import CancelReason
from controller.acd.engine import CallOutcome, CallState, Presence
from controller.acd.outcome import Outcome, classify_leg_end
from controller.acd.setup import Acceptance, DialplanTarget, HoldMode, QueueConfig, Strategy
from tests.acd.harness import Harness, cancelled, make_setup, of, queue, started

# --------------------------------------------------------------------------- arrival


def test_call_is_parked_and_first_agent_rung_without_auto_answer_details():
    h = Harness(make_setup(queue=queue(ring_timeout=15)))
    h.now = 0
    out = h.arrive("c1", caller_number="5551234", caller_name="Maria")
    assert of(out, cmd.ParkCaller) == [cmd.ParkCaller("c1", HoldMode.MOH)]
    (ring,) = of(out, cmd.RingAgent)
    assert ring.agent_id == "alice" and ring.endpoint == "PJSIP/agent1"
    assert ring.display_name == "[support 0:00] Maria" and ring.display_number == "5551234"
    assert ring.headers["X-Acd-Queue"] == "support" and ring.headers["X-Acd-Call-Id"] == "c1"
    assert ring.dial_timeout > 15, "Asterisk's dial timeout is only a backstop behind the engine's timer"
    assert (f"ring:{ring.offer_id}", 15) in started(out)
    (note,) = [n for n in of(out, cmd.Notify) if n.kind == "offer.created"]
    assert (
        note.agent_id == "alice" and note.data["queue"] == "support" and note.data["caller_name"] == "Maria"
    )


def test_display_shows_queue_and_wait_time():
    h = Harness(make_setup(agents=["alice"], logged_out=["alice"]))
    h.arrive("c1", caller_name="")
    h.advance(42)
    out = h.do(ev.AgentLogin("alice"))
    (ring,) = of(out, cmd.RingAgent)
    assert ring.display_name == "[support 0:42] 5551234"
    assert ring.headers["X-Acd-Wait"] == "42"


def test_invite_carries_only_the_headers_the_queue_lists():
    h = Harness(make_setup(queue=queue(invite_headers=("caller", "wait"))))
    (ring,) = of(h.arrive("c1", caller_number="5551234"), cmd.RingAgent)
    assert ring.headers == {"X-Acd-Caller": "5551234", "X-Acd-Wait": "0"}
    h2 = Harness(make_setup(queue=queue(invite_headers=())))
    (ring,) = of(h2.arrive("c1"), cmd.RingAgent)
    assert ring.headers == {}


def test_hold_ring_mode_parks_with_ringback():
    h = Harness(make_setup(queue=queue(hold=HoldMode.RING)))
    assert of(h.arrive(), cmd.ParkCaller) == [cmd.ParkCaller("c1", HoldMode.RING)]


def test_unknown_queue_continues_in_dialplan_fallback():
    h = Harness(make_setup())
    out = h.arrive("c1", queue="nosuch")
    assert of(out, cmd.Overflow) == [cmd.Overflow("c1", None)]
    assert not of(out, cmd.RingAgent) and not of(out, cmd.ParkCaller)
    assert h.engine.stats["unknown_queue"] == 1
    assert "c1" not in h.engine.calls


def test_duplicate_call_arrival_changes_nothing():
    h = Harness(make_setup())
    h.arrive("c1")
    assert h.arrive("c1") == []
    assert h.engine.stats["duplicate_call"] == 1


# --------------------------------------------------------------------------- acceptance


def test_answer_mode_answer_is_accept_and_connects():
    h = Harness(make_setup())
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.answer("alice")
    assert of(out, cmd.Connect) == [cmd.Connect("c1", offer, "alice")]
    assert f"ring:{offer}" in cancelled(out)
    assert h.engine.calls["c1"].state is CallState.CONNECTED


def test_nobody_connected_before_accept():
    h = Harness(make_setup())
    h.arrive("c1")
    assert not of(h.log, cmd.Connect)
    h.advance(10)
    assert not of(h.log, cmd.Connect)


def test_confirm_mode_plays_details_and_waits_for_1():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.CONFIRM)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.answer("alice")
    assert not of(out, cmd.Connect)
    (prompt,) = of(out, cmd.PlayConfirmPrompt)
    assert prompt.offer_id == offer and prompt.queue == "support" and prompt.caller_number == "5551234"
    assert (f"confirm:{offer}", 10) in started(out)
    out = h.do(ev.ConfirmDigit(offer, "1"))
    assert of(out, cmd.Connect) == [cmd.Connect("c1", offer, "alice")]
    assert f"confirm:{offer}" in cancelled(out)


def test_confirm_mode_2_rejects_and_next_agent_rung():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.CONFIRM)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.answer("alice")
    out = h.do(ev.ConfirmDigit(offer, "2"))
    assert of(out, cmd.CancelOffer) == [cmd.CancelOffer(offer, "c1", "alice", CancelReason.REJECTED)]
    assert h.rang(out) == ["bob"]
    assert not of(out, cmd.Connect)


def test_confirm_mode_no_digit_is_no_answer():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.CONFIRM)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.answer("alice")
    out = h.advance(10)
    assert of(out, cmd.CancelOffer) == [cmd.CancelOffer(offer, "c1", "alice", CancelReason.TIMED_OUT)]
    assert h.engine.offers[offer].outcome is Outcome.NO_ANSWER
    assert h.engine.agents["alice"].misses == 1
    assert h.rang(out) == ["bob"]


def test_confirm_mode_other_digits_ignored():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.CONFIRM)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.answer("alice")
    assert h.do(ev.ConfirmDigit(offer, "5")) == []


def test_confirm_mode_agent_hangs_up_during_prompt_counts_as_reject():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.CONFIRM)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.answer("alice")
    out = h.leg_end(offer, cause=16)
    assert h.engine.offers[offer].outcome is Outcome.REJECTED
    assert h.rang(out) == ["bob"]


def test_caller_hangs_up_during_confirm_cancels_without_penalty():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.CONFIRM)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.answer("alice")
    out = h.do(ev.CallerHungUp("c1"))
    assert of(out, cmd.CancelOffer) == [cmd.CancelOffer(offer, "c1", "alice", CancelReason.CALLER_GONE)]
    assert h.do(ev.ConfirmDigit(offer, "1")) == []  # too late: never connected
    assert not of(h.log, cmd.Connect)
    assert h.engine.agents["alice"].misses == 0


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(
    ("cause", "tech", "kw", "expected"),
    [
        (21, 603, {}, Outcome.REJECTED),
        (17, 486, {}, Outcome.BUSY),
        (None, 600, {}, Outcome.BUSY),
        (19, 480, {}, Outcome.UNREACHABLE),  # do-not-disturb
        (19, 480, {"dial_timeout": True}, Outcome.NO_ANSWER),  # Asterisk's dial timeout
        (19, None, {}, Outcome.NO_ANSWER),
        (18, 408, {}, Outcome.UNREACHABLE),
        (20, None, {}, Outcome.UNREACHABLE),
        (27, None, {}, Outcome.UNREACHABLE),
        (34, 503, {}, Outcome.UNREACHABLE),
        (None, None, {"allocation_failed": True}, Outcome.UNREACHABLE),
    ],
)
def test_outcome_classification(cause, tech, kw, expected):
    assert classify_leg_end(cause, tech, **kw)[0] is expected


def test_dnd_480_detail_is_unavailable():
    assert classify_leg_end(19, 480) == (Outcome.UNREACHABLE, "unavailable")


@pytest.mark.parametrize(
    ("cause", "tech", "delay_field"),
    [
        (21, 603, "reject_delay"),
        (17, 486, "busy_delay"),
        (34, 503, "unreachable_delay"),
        (19, 480, "unreachable_delay"),
    ],
)
def test_failed_offer_falls_through_at_once_and_applies_its_delay(cause, tech, delay_field):
    q = queue(**{delay_field: 7, "ring_timeout": 15})
    h = Harness(make_setup(queue=q))
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.decline("alice", cause, tech)
    assert h.rang(out) == ["bob"], "next agent at once"
    alice = h.engine.agents["alice"]
    assert alice.delayed and alice.delay_until == 7
    assert ("delay:alice", 7) in started(out)
    assert h.engine.offers[offer].cause == cause
    # after the delay alice is eligible again and takes the next call
    h.advance(7)
    assert h.engine.agents["alice"].eligible
    out = h.arrive("c2")
    assert h.rang(out) == ["alice"]


def test_allocation_failure_is_unreachable_and_next_agent_rung():
    h = Harness(make_setup())
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.do(ev.AgentLegEnded(offer, allocation_failed=True))
    assert h.engine.offers[offer].outcome is Outcome.UNREACHABLE
    assert h.rang(out) == ["bob"]


def test_leg_lost_in_an_outage_counts_against_nobody():
    """Reconciliation found the ringing leg gone, its cause lost with the websocket: the call
    goes on at once, the agent gets no delay and no miss (the phone may well be fine)."""
    h = Harness(make_setup(queue=queue(unreachable_delay=7, max_no_answer=1)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.do(ev.AgentLegEnded(offer, lost=True))
    assert (h.engine.offers[offer].outcome, h.engine.offers[offer].detail) == (Outcome.CANCELED, "lost")
    assert h.rang(out) == ["bob"]
    alice = h.engine.agents["alice"]
    assert not alice.delayed and alice.misses == 0 and alice.eligible
    assert h.rang(h.arrive("c2")) == ["alice"]


def test_no_answer_after_ring_timeout_next_agent():
    h = Harness(make_setup(queue=queue(ring_timeout=15)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    assert h.advance(14.9) == []
    out = h.advance(0.1)
    assert of(out, cmd.CancelOffer) == [cmd.CancelOffer(offer, "c1", "alice", CancelReason.TIMED_OUT)]
    assert h.rang(out) == ["bob"]
    assert h.engine.offers[offer].outcome is Outcome.NO_ANSWER


def test_asterisk_dial_timeout_counts_as_no_answer():
    h = Harness(make_setup())
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.leg_end(offer, 19, 480, dial_timeout=True)
    assert h.engine.offers[offer].outcome is Outcome.NO_ANSWER
    assert h.engine.agents["alice"].misses == 1
    assert h.rang(out) == ["bob"]


def test_not_responding_after_max_no_answer_until_ready():
    h = Harness(make_setup(agents=["alice", "bob"], queue=queue(max_no_answer=2, ring_timeout=5)))
    h.arrive("c1")
    h.advance(5)  # alice misses, bob rings
    h.advance(5)  # bob misses; new round after the retry pause
    assert h.engine.agents["alice"].misses == 1
    h.advance(5)  # retry pause over: alice rings again
    assert h.engine.agents["alice"].live_offer is not None
    h.advance(5)  # alice misses again → not responding
    alice = h.engine.agents["alice"]
    assert alice.misses == 2 and alice.presence is Presence.NOT_RESPONDING
    states = [n.data for n in of(h.log, cmd.Notify) if n.kind == "agent.state" and n.agent_id == "alice"]
    assert states[-1]["state"] == "not_responding" and "2 offers" in states[-1]["reason"]
    # no more offers to alice until she is ready again
    h.do(ev.CallerHungUp("c1"))
    assert h.rang(h.arrive("c2")) == ["bob"]
    assert h.rang(h.arrive("c3")) == []
    out = h.do(ev.AgentReady("alice"))
    assert h.engine.agents["alice"].misses == 0 and h.engine.agents["alice"].presence is Presence.AVAILABLE
    assert h.rang(out) == ["alice"]


def test_max_no_answer_zero_never_marks_not_responding():
    h = Harness(make_setup(agents=["alice"], queue=queue(max_no_answer=0, ring_timeout=1, retry=0)))
    h.arrive("c1")
    for _ in range(5):
        h.offer_of("alice")
        h.advance(1)
    assert h.engine.agents["alice"].presence is Presence.AVAILABLE


def test_accept_resets_miss_count():
    h = Harness(make_setup(agents=["alice"], queue=queue(max_no_answer=3, ring_timeout=1, retry=0)))
    h.arrive("c1")
    h.offer_of("alice")
    h.advance(1)
    assert h.engine.agents["alice"].misses == 1
    h.answer("alice")
    assert h.engine.agents["alice"].misses == 0


def test_rejected_agent_excluded_from_this_call():
    h = Harness(make_setup(agents=["alice", "bob"]))
    h.arrive("c1")
    h.decline("alice")
    h.decline("bob")
    # both tried: nobody is rung again for c1 until the retry pause
    assert h.engine.calls["c1"].state is CallState.WAITING
    assert h.engine.agents["alice"].eligible and h.engine.agents["bob"].eligible
    out = h.arrive("c2")
    assert h.rang(out) == ["alice"], "excluded from c1 only, not from other calls"


def test_new_round_after_retry_when_everybody_tried():
    h = Harness(make_setup(agents=["alice", "bob"], queue=queue(retry=5)))
    h.arrive("c1")
    h.decline("alice")
    out = h.decline("bob")
    assert ("retry:c1", 5) in started(out)
    assert h.advance(4.9) == []
    out = h.advance(0.1)
    assert h.rang(out) == ["alice"]


def test_untried_agent_becoming_free_takes_call_before_retry():
    h = Harness(make_setup(agents=["alice", "bob", "carol"], logged_out=["carol"], queue=queue(retry=5)))
    h.arrive("c1")
    h.decline("alice")
    h.decline("bob")
    out = h.do(ev.AgentLogin("carol"))
    assert h.rang(out) == ["carol"]
    assert "retry:c1" in cancelled(out)


# --------------------------------------------------------------------------- races


def test_answer_after_ring_timeout_is_hung_up_never_connected():
    # the timer fired and the leg's DELETE is in flight when the answer arrives
    h = Harness(make_setup(agents=["alice", "bob"], queue=queue(ring_timeout=5)), auto_legs=False)
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.advance(5)
    out = h.do(ev.AgentLegAnswered(offer))
    assert of(out, cmd.CancelOffer) == [cmd.CancelOffer(offer, "c1", "alice", CancelReason.STALE)]
    assert not of(out, cmd.Connect)
    assert h.engine.stats["late_answer"] == 1


def test_answer_just_before_ring_timer_wins_and_stale_timer_ignored():
    h = Harness(make_setup(queue=queue(ring_timeout=5)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    (ring_timer,) = [c.timer_id for c in h.log if isinstance(c, cmd.StartTimer) and offer in c.timer_id]
    h.now = 4.999
    out = h.answer("alice")
    assert of(out, cmd.Connect)
    # the shell's timer callback was already queued when the cancel came: it changes nothing
    assert h.do(ev.TimerFired(ring_timer)) == []
    assert h.engine.stats["stale_timer"] == 1
    assert h.engine.calls["c1"].state is CallState.CONNECTED


def test_caller_hangs_up_while_agent_rings_cancels_without_penalty():
    h = Harness(make_setup(queue=queue(reject_delay=30, no_answer_delay=30)), auto_legs=False)
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.do(ev.CallerHungUp("c1"))
    assert of(out, cmd.CancelOffer) == [cmd.CancelOffer(offer, "c1", "alice", CancelReason.CALLER_GONE)]
    alice = h.engine.agents["alice"]
    assert not alice.delayed and alice.misses == 0
    assert h.engine.offers[offer].outcome is Outcome.CANCELED
    # the cancelled leg's end report does not change the outcome
    h.leg_end(offer, 26)
    assert not h.engine.agents["alice"].delayed
    assert h.engine.agents["alice"].eligible


def test_answer_after_caller_left_is_hung_up():
    h = Harness(make_setup(), auto_legs=False)
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.do(ev.CallerHungUp("c1"))
    out = h.do(ev.AgentLegAnswered(offer))
    assert of(out, cmd.CancelOffer) and not of(out, cmd.Connect)


def test_call_never_connected_twice_ring_all():
    h = Harness(make_setup(queue=queue(strategy=Strategy.RING_ALL)))
    out = h.arrive("c1")
    assert sorted(h.rang(out)) == ["alice", "bob", "carol"]
    a, b, c = (h.offer_of(x) for x in ("alice", "bob", "carol"))
    out = h.do(ev.AgentLegAnswered(b))
    assert of(out, cmd.Connect) == [cmd.Connect("c1", b, "bob")]
    assert sorted(x.offer_id for x in of(out, cmd.CancelOffer)) == sorted([a, c])
    assert {x.reason for x in of(out, cmd.CancelOffer)} == {CancelReason.ANSWERED_ELSEWHERE}
    out = h.do(ev.AgentLegAnswered(a))  # a second answer in the same instant
    assert not of(out, cmd.Connect)
    assert len(of(h.log, cmd.Connect)) == 1


def test_two_calls_racing_for_one_agent():
    h = Harness(make_setup(agents=["alice"]))
    h.arrive("c1")
    out = h.arrive("c2")
    assert h.rang(out) == [], "one live offer per agent"
    h.answer("alice")
    h.do(ev.CallerHungUp("c1"))
    h.advance(5)  # wrap-up
    assert h.rang(h.log[-10:]) == ["alice"]
    assert h.engine.agents["alice"].live_offer.startswith("c2")


def test_duplicate_and_unknown_events_change_nothing():
    h = Harness(make_setup())
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.answer("alice")
    before = (dict(h.engine.timers), h.engine.calls["c1"].state)
    assert h.do(ev.AgentLegAnswered(offer)) == []
    assert h.do(ev.AgentLegAnswered("nope")) == []
    assert h.do(ev.AgentLegEnded("nope")) == []
    assert h.do(ev.CallerHungUp("nope")) == []
    assert h.do(ev.TimerFired("ring:nope")) == []
    assert h.do(ev.AgentLogin("nobody")) == []
    assert h.do(ev.EndpointState("PJSIP/nobody", False)) == []
    assert h.do(ev.ConfirmDigit(offer, "1")) == []
    assert (dict(h.engine.timers), h.engine.calls["c1"].state) == before
    stats = h.engine.stats
    assert stats["duplicate_answer"] == 1 and stats["unknown_offer_event"] == 2
    assert stats["stale_timer"] == 1 and stats["unknown_agent"] == 1 and stats["unknown_endpoint"] == 1


def test_panel_reject_stops_ringing_and_next_agent():
    h = Harness(make_setup())
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.do(ev.OfferRejected(offer, "alice"))
    assert of(out, cmd.CancelOffer) == [cmd.CancelOffer(offer, "c1", "alice", CancelReason.REJECTED)]
    assert h.rang(out) == ["bob"]


def test_panel_reject_of_someone_elses_offer_ignored():
    h = Harness(make_setup())
    h.arrive("c1")
    offer = h.offer_of("alice")
    assert h.do(ev.OfferRejected(offer, "bob")) == []
    assert h.engine.agents["alice"].live_offer == offer


# --------------------------------------------------------------------------- connected calls


def test_caller_hangs_up_connected_call_agent_hung_up_and_wrapup():
    h = Harness(make_setup(queue=queue(wrapup=5)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.answer("alice")
    h.now = 60
    out = h.do(ev.CallerHungUp("c1"))
    assert of(out, cmd.HangupAgent) == [cmd.HangupAgent(offer, "c1", "alice")]
    assert ("wrapup:alice", 65) in started(out)
    ended = [r.data for r in of(out, cmd.Record) if r.kind == "call.ended"]
    assert ended[0]["outcome"] == "completed" and ended[0]["hung_up_by"] == "caller"
    assert not h.engine.agents["alice"].eligible
    assert h.rang(h.arrive("c2")) == ["bob"], "alice is in wrap-up"
    h.advance(5)
    assert h.engine.agents["alice"].eligible


def test_agent_hangs_up_connected_call_caller_hung_up():
    h = Harness(make_setup(queue=queue(wrapup=0)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.answer("alice")
    out = h.leg_end(offer, 16)
    assert of(out, cmd.HangupCaller) == [cmd.HangupCaller("c1", "normal")]
    ended = [r.data for r in of(out, cmd.Record) if r.kind == "call.ended"]
    assert ended[0]["hung_up_by"] == "agent"
    assert h.engine.agents["alice"].eligible, "wrapup 0: ready at once"
    assert "c1" not in h.engine.calls, "finished calls are forgotten"


def test_agent_not_offered_again_until_previous_leg_is_gone():
    h = Harness(make_setup(agents=["alice"], queue=queue(reject_delay=0)), auto_legs=False)
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.do(ev.OfferRejected(offer, "alice"))
    assert h.rang(h.arrive("c2")) == [], "the rejected leg is still being hung up"
    out = h.leg_end(offer, 16)
    assert h.rang(out) == ["alice"]
    assert h.engine.agents["alice"].live_offer.startswith("c2")


# --------------------------------------------------------------------------- waiting & overflow


def test_max_wait_overflow_continues_in_dialplan():
    target = DialplanTarget("acd-overflow", "s", 1)
    h = Harness(make_setup(queue=queue(max_wait=30, overflow=target)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.advance(15)  # alice times out, bob rings
    offer = h.offer_of("bob")
    out = h.advance(15)
    assert cmd.CancelOffer(offer, "c1", "bob", CancelReason.OVERFLOW) in out
    assert of(out, cmd.Overflow) == [cmd.Overflow("c1", target)]
    (ended,) = [r.data for r in of(out, cmd.Record) if r.kind == "call.ended"]
    assert ended["outcome"] == CallOutcome.OVERFLOWED and ended["detail"] == "max_wait"
    assert h.engine.offers.get(offer) is None, "no offer outlives its call"


def test_max_wait_without_target_hangs_up():
    h = Harness(make_setup(agents=["alice"], logged_out=["alice"], queue=queue(max_wait=10)))
    h.arrive("c1")
    out = h.advance(10)
    assert of(out, cmd.HangupCaller) == [cmd.HangupCaller("c1", "overflow")]


def test_waiting_caller_gets_first_agent_who_logs_in():
    h = Harness(make_setup(agents=["alice"], logged_out=["alice"]))
    out = h.arrive("c1")
    assert h.rang(out) == []
    out = h.do(ev.AgentLogin("alice"))
    assert h.rang(out) == ["alice"]


def test_join_empty_false_overflows_at_once_when_nobody_logged_in():
    target = DialplanTarget("fallback", "s", 1)
    h = Harness(
        make_setup(logged_out=["alice", "bob", "carol"], queue=queue(join_empty=False, overflow=target))
    )
    out = h.arrive("c1")
    assert of(out, cmd.Overflow) == [cmd.Overflow("c1", target)]


def test_join_empty_false_waits_when_agents_logged_in_but_busy():
    h = Harness(make_setup(agents=["alice"], queue=queue(join_empty=False)))
    h.arrive("c1")
    out = h.arrive("c2")
    assert not of(out, cmd.Overflow)


def test_requeued_call_keeps_original_arrival():
    h = Harness(make_setup(agents=["alice"], logged_out=["alice"]))
    h.now = 100
    h.arrive("new")
    h.arrive("old", arrived_at=20)
    out = h.do(ev.AgentLogin("alice"))
    assert of(out, cmd.RingAgent)[0].call_id == "old"


def test_priority_then_arrival_across_queues():
    qs = [QueueConfig("support"), QueueConfig("sales")]
    h = Harness(make_setup(agents=["alice"], queues=qs, logged_out=["alice"]))
    h.arrive("s1", queue="support")
    h.now = 1
    h.arrive("v1", queue="sales", priority=5)
    h.now = 2
    h.arrive("s2", queue="support", priority=5)
    out = h.do(ev.AgentLogin("alice"))
    assert of(out, cmd.RingAgent)[0].call_id == "v1"


# --------------------------------------------------------------------------- agents


def test_logout_while_ringing_cancels_offer_and_next_agent():
    h = Harness(make_setup())
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.do(ev.AgentLogout("alice"))
    assert of(out, cmd.CancelOffer) == [cmd.CancelOffer(offer, "c1", "alice", CancelReason.AGENT_UNAVAILABLE)]
    assert h.rang(out) == ["bob"]


def test_paused_agent_not_offered_until_ready():
    h = Harness(make_setup(agents=["alice"]))
    h.do(ev.AgentPause("alice", "lunch"))
    assert h.engine.agents["alice"].status == "paused" and h.engine.agents["alice"].pause_reason == "lunch"
    assert h.rang(h.arrive("c1")) == []
    assert h.rang(h.do(ev.AgentReady("alice"))) == ["alice"]


def test_offline_endpoint_never_rung():
    h = Harness(make_setup(agents=["alice", "bob"]))
    h.do(ev.EndpointState("PJSIP/agent1", False))
    assert h.rang(h.arrive("c1")) == ["bob"]


def test_endpoint_going_offline_while_ringing_moves_on():
    h = Harness(make_setup(agents=["alice", "bob"]))
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.do(ev.EndpointState("PJSIP/agent1", False))
    assert h.engine.offers[offer].outcome is Outcome.UNREACHABLE
    assert h.rang(out) == ["bob"]


def test_agent_state_changes_recorded():
    h = Harness(make_setup(agents=["alice"]))
    out = h.do(ev.AgentPause("alice", "break"))
    (rec,) = [r for r in of(out, cmd.Record) if r.kind == "agent.state"]
    assert rec.data["agent"] == "alice" and rec.data["state"] == "paused" and rec.data["reason"] == "break"


# --------------------------------------------------------------------------- strategies


def _free(h: Harness, agent: str) -> None:
    """Let an agent's current call finish and wrap up."""
    h.do(ev.CallerHungUp(h.engine.agents[agent].call))


def test_penalty_tier_used_only_when_lower_tier_has_nobody():
    h = Harness(make_setup(agents=["alice", "bob"], penalties={"alice": 1, "bob": 0}, queue=queue(wrapup=0)))
    assert h.rang(h.arrive("c1")) == ["bob"]
    out = h.arrive("c2")
    assert h.rang(out) == ["alice"], "bob busy ringing: the next tier is used"


def test_linear_always_starts_with_first_listed():
    h = Harness(make_setup(queue=queue(strategy=Strategy.LINEAR, wrapup=0)))
    for i in range(3):
        out = h.arrive(f"c{i}")
        assert h.rang(out) == ["alice"]
        h.answer("alice")
        _free(h, "alice")


def test_longest_idle_prefers_agent_idle_longest():
    h = Harness(make_setup(queue=queue(strategy=Strategy.LONGEST_IDLE, wrapup=0)))
    h.arrive("c1")
    h.answer("alice")
    h.now = 10
    _free(h, "alice")
    assert h.rang(h.arrive("c2")) == ["bob"], "bob never had a call"
    assert h.rang(h.arrive("c3")) == ["carol"]


def test_round_robin_rotates():
    h = Harness(make_setup(queue=queue(strategy=Strategy.ROUND_ROBIN, wrapup=0)))
    order = []
    for i in range(6):
        out = h.arrive(f"c{i}")
        (agent,) = h.rang(out)
        order.append(agent)
        h.answer(agent)
        _free(h, agent)
    assert order == ["alice", "bob", "carol", "alice", "bob", "carol"]


def test_fewest_calls():
    h = Harness(make_setup(queue=queue(strategy=Strategy.FEWEST_CALLS, wrapup=0)))
    h.arrive("c1")
    h.answer("alice")
    _free(h, "alice")
    h.arrive("c2")
    assert h.engine.agents["bob"].live_offer is not None
    h.answer("bob")
    _free(h, "bob")
    assert h.rang(h.arrive("c3")) == ["carol"]


def test_random_is_seedable_and_spreads():
    def picks(seed):
        h = Harness(
            make_setup(agents=[f"a{i}" for i in range(10)], queue=queue(strategy=Strategy.RANDOM, wrapup=0)),
            seed=seed,
        )
        out = []
        for i in range(30):
            (agent,) = h.rang(h.arrive(f"c{i}"))
            out.append(agent)
            h.answer(agent)
            _free(h, agent)
        return out

    assert picks(1) == picks(1)
    assert picks(1) != picks(2)
    assert len(set(picks(3))) >= 5


def test_ring_all_rings_best_tier_only_and_retries_next_tier():
    h = Harness(make_setup(penalties={"carol": 1}, queue=queue(strategy=Strategy.RING_ALL)))
    out = h.arrive("c1")
    assert sorted(h.rang(out)) == ["alice", "bob"]
    h.decline("alice")
    out = h.decline("bob")
    assert h.rang(out) == ["carol"]


def test_stale_callback_of_a_cancelled_timer_never_fires_its_successor():
    h = Harness(make_setup(agents=["alice"], queue=queue(retry=5, reject_delay=0)))
    h.arrive("c1")
    h.decline("alice")
    (first,) = [
        c.timer_id for c in h.log if isinstance(c, cmd.StartTimer) and c.timer_id.startswith("retry:")
    ]
    h.advance(5)  # new round: alice rings again
    h.decline("alice")  # a second retry timer starts for the same call
    retries = [c.timer_id for c in h.log if isinstance(c, cmd.StartTimer) and c.timer_id.startswith("retry:")]
    assert len(retries) == 2 and retries[0] == first != retries[1]
    assert h.do(ev.TimerFired(first)) == [], "the old instance's late callback changes nothing"
    assert h.engine.calls["c1"].state is CallState.WAITING


# --------------------------------------------------------------------------- restart


def test_restored_bridged_call_is_taken_back_without_commands_to_asterisk():
    h = Harness(make_setup(queue=queue(wrapup=5)))
    h.now = 100
    out = h.do(ev.CallRestored("c1", "support", "alice", "5551234", "Maria", arrived_at=40, bridged=True))
    assert not of(out, cmd.Connect) and not of(out, cmd.RingAgent)
    assert h.engine.agents["alice"].status == "talking"
    assert h.rang(h.arrive("c2")) == ["bob"], "alice is busy with the restored call"
    out = h.do(ev.CallerHungUp("c1"))
    assert of(out, cmd.HangupAgent) and ("wrapup:alice", 105) in started(out)


def test_restored_answered_leg_for_a_waiting_caller_is_connected():
    h = Harness(make_setup())
    out = h.do(ev.CallRestored("c1", "support", "bob", bridged=False))
    (connect,) = of(out, cmd.Connect)
    assert connect.call_id == "c1" and connect.agent_id == "bob"


def test_restore_refused_when_agent_busy_or_unknown():
    h = Harness(make_setup())
    h.arrive("c1")
    h.answer("alice")
    assert h.do(ev.CallRestored("c9", "support", "alice")) == []
    assert h.do(ev.CallRestored("c9", "support", "nobody")) == []
    assert h.do(ev.CallRestored("c9", "nosuch", "bob")) == []
    assert h.engine.stats["restore_refused"] == 3 and "c9" not in h.engine.calls


# --------------------------------------------------------------------------- desktop acceptance


def test_desktop_offer_shows_on_screen_without_ringing_the_phone():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.DESKTOP, ring_timeout=15)))
    out = h.arrive("c1")
    assert not of(out, cmd.RingAgent), "the phone does not ring at first"
    (note,) = [n for n in of(out, cmd.Notify) if n.kind == "offer.created"]
    assert note.agent_id == "alice" and note.data["acceptance"] == "desktop" and note.data["expires_at"] == 15


def test_desktop_accept_calls_phone_with_auto_answer_and_connects_on_answer():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.DESKTOP, connect_timeout=8)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    out = h.do(ev.OfferAccepted(offer, "alice"))
    (ring,) = of(out, cmd.RingAgent)
    assert ring.auto_answer and ring.agent_id == "alice"
    assert ("connect:" + offer, 8) in started(out)
    assert not of(out, cmd.Connect), "connected only when the phone is up"
    out = h.do(ev.AgentLegAnswered(offer))
    assert of(out, cmd.Connect) == [cmd.Connect("c1", offer, "alice")]


def test_desktop_reject_or_countdown_moves_to_next_agent():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.DESKTOP, ring_timeout=10)))
    h.arrive("c1")
    out = h.do(ev.OfferRejected(h.offer_of("alice"), "alice"))
    assert not of(out, cmd.CancelOffer), "no leg to hang up"
    assert [n.agent_id for n in of(out, cmd.Notify) if n.kind == "offer.created"] == ["bob"]
    out = h.advance(10)
    assert [n.agent_id for n in of(out, cmd.Notify) if n.kind == "offer.created"] == ["carol"]
    assert h.engine.agents["bob"].misses == 1


def test_desktop_auto_answered_leg_failing_is_no_answer():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.DESKTOP)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.do(ev.OfferAccepted(offer, "alice"))
    out = h.leg_end(offer, 17, 486)
    assert h.engine.offers[offer].outcome is Outcome.NO_ANSWER
    assert [n.agent_id for n in of(out, cmd.Notify) if n.kind == "offer.created"] == ["bob"]


def test_desktop_auto_answer_timeout_is_no_answer():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.DESKTOP, connect_timeout=5)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.do(ev.OfferAccepted(offer, "alice"))
    out = h.advance(5)
    assert cmd.CancelOffer(offer, "c1", "alice", CancelReason.TIMED_OUT) in out
    assert h.engine.offers[offer].detail == "auto_answer_timeout"


def test_accept_twice_or_after_expiry_changes_nothing():
    h = Harness(make_setup(queue=queue(acceptance=Acceptance.DESKTOP, ring_timeout=5)))
    h.arrive("c1")
    offer = h.offer_of("alice")
    h.do(ev.OfferAccepted(offer, "alice"))
    assert h.do(ev.OfferAccepted(offer, "alice")) == []
    h2 = Harness(make_setup(queue=queue(acceptance=Acceptance.DESKTOP, ring_timeout=5)))
    h2.arrive("c1")
    late = h2.offer_of("alice")
    h2.advance(5)
    assert h2.do(ev.OfferAccepted(late, "alice")) == []
    assert h2.engine.stats["stale_panel_action"] == 1


# --------------------------------------------------------------------------- empty queues


def test_join_empty_false_overflows_when_members_logged_in_but_unreachable_or_paused():
    target = DialplanTarget("fallback", "s", 1)
    h = Harness(make_setup(agents=["alice", "bob"], queue=queue(join_empty=False, overflow=target)))
    h.do(ev.EndpointState("PJSIP/agent1", False))  # alice's phone is not registered
    h.do(ev.AgentPause("bob", "lunch"))
    out = h.arrive("c1")
    assert of(out, cmd.Overflow) == [cmd.Overflow("c1", target)]
    assert h.engine.calls.get("c1") is None or h.engine.calls["c1"].outcome is CallOutcome.OVERFLOWED
    h.do(ev.EndpointState("PJSIP/agent1", True))
    assert h.rang(h.arrive("c2")) == ["alice"]


def test_waiting_callers_stay_when_last_member_goes_by_default():
    h = Harness(make_setup(agents=["alice"], queue=queue(join_empty=False, wrapup=0)))
    h.arrive("c1")
    h.arrive("c2")  # waits: alice is busy ringing for c1, but could take it
    out = h.do(ev.EndpointState("PJSIP/agent1", False))
    assert not of(out, cmd.Overflow) and h.engine.calls["c2"].state is CallState.WAITING


def test_leave_when_empty_overflows_waiting_callers_when_last_member_goes():
    target = DialplanTarget("fallback", "s", 1)
    h = Harness(make_setup(agents=["alice", "bob"], queue=queue(leave_when_empty=True, overflow=target)))
    h.arrive("c1")
    h.arrive("c2")
    h.arrive("c3")  # waiting: alice and bob ring for c1 and c2
    assert not of(h.do(ev.AgentLogout("alice")), cmd.Overflow), "bob can still take calls"
    out = h.do(ev.EndpointState("PJSIP/agent2", False))
    assert sorted(c.call_id for c in of(out, cmd.Overflow)) == ["c1", "c2", "c3"]
    assert all(o.target == target for o in of(out, cmd.Overflow))
    assert not h.engine._waiting["support"]


def test_leave_when_empty_when_the_last_member_stops_responding_to_this_caller():
    h = Harness(make_setup(agents=["alice"], queue=queue(leave_when_empty=True, max_no_answer=1)))
    h.arrive("c1")
    out = h.advance(15)  # alice lets it ring out: not responding, nobody left for the caller
    assert h.engine.agents["alice"].presence is Presence.NOT_RESPONDING
    assert of(out, cmd.HangupCaller) == [cmd.HangupCaller("c1", "overflow")]


# --------------------------------------------------------------------------- restart


def _restored(h: Harness) -> Harness:
    """A new engine for the same queue file, fed what the old one's records say."""
    new = Harness(h.engine.setup)
    new.now = h.now
    for agent_id in h.engine.agents:
        snap = h.engine.agent_snapshot(agent_id)
        new.do(
            ev.AgentStateRestored(
                agent_id, snap["presence"], snap["pause_reason"], snap["misses"], snap["wrapup_until"]
            )
        )
    return new


def test_agent_state_restored_after_restart():
    setup = make_setup(agents=["alice", "bob", "carol", "dave"], queue=queue(wrapup=30, max_no_answer=2))
    h = Harness(setup)
    h.do(ev.AgentPause("alice", "lunch"))
    h.do(ev.AgentLogout("bob"))
    h.arrive("c1")
    h.answer("carol")
    h.do(ev.CallerHungUp("c1"))  # carol in wrap-up until 30
    h.arrive("c2")
    h.advance(15)  # dave rings out once: 1 miss
    assert h.engine.agents["dave"].misses == 1
    h.do(ev.CallerHungUp("c2"))
    h.now = 20
    new = _restored(h)
    a = new.engine.agents
    assert (a["alice"].presence, a["alice"].pause_reason) == (Presence.PAUSED, "lunch")
    assert a["bob"].presence is Presence.LOGGED_OUT
    assert a["carol"].in_wrapup and a["carol"].wrapup_until == 30
    assert a["dave"].misses == 1 and a["dave"].presence is Presence.AVAILABLE
    assert new.rang(new.arrive("c3")) == ["dave"], "carol in wrap-up, alice paused, bob logged out"
    out = new.advance(15)  # carol's wrap-up ends at 30, dave's second miss at 35
    assert a["dave"].presence is Presence.NOT_RESPONDING, "two misses in a row across the restart"
    assert not a["carol"].in_wrapup and new.rang(out) == ["carol"]


def test_not_responding_restored_with_its_reason():
    h = Harness(make_setup(agents=["alice"], queue=queue(max_no_answer=1)))
    h.arrive("c1")
    h.advance(15)
    assert h.engine.agents["alice"].presence is Presence.NOT_RESPONDING
    a = _restored(h).engine.agents["alice"]
    assert a.presence is Presence.NOT_RESPONDING and a.pause_reason == "1 offers not answered"


def test_misses_changes_are_recorded_for_the_store():
    h = Harness(make_setup(agents=["alice"], queue=queue(max_no_answer=3)))
    h.arrive("c1")
    out = h.advance(15)
    (rec,) = [r for r in of(out, cmd.Record) if r.kind == "agent.state"]
    assert rec.data["misses"] == 1 and rec.data["presence"] == "available"
    out = h.advance(5)  # retry: alice rung again and answers -> misses back to 0
    out = h.answer("alice")
    (rec,) = [r for r in of(out, cmd.Record) if r.kind == "agent.state"]
    assert rec.data["misses"] == 0


def test_restored_state_of_unknown_agent_or_presence_is_refused():
    h = Harness(make_setup(agents=["alice"]))
    h.do(ev.AgentStateRestored("ghost", "paused"))
    h.do(ev.AgentStateRestored("alice", "on_the_moon"))
    assert h.engine.stats["unknown_agent"] == 1 and h.engine.stats["restore_refused"] == 1
    assert h.engine.agents["alice"].presence is Presence.AVAILABLE


def test_past_wrapup_end_is_not_restored():
    h = Harness(make_setup(agents=["alice"]))
    h.now = 50
    h.do(ev.AgentStateRestored("alice", "available", wrapup_until=40))
    assert not h.engine.agents["alice"].in_wrapup and not h.timers


# --------------------------------------------------------------------------- reload


def _reload(h: Harness, setup) -> list[cmd.Command]:
    return h.do(ev.SetupReloaded(setup))


def test_reload_adds_agents_and_queues_and_new_agent_takes_waiting_caller():
    h = Harness(make_setup(agents=["alice"], queue=queue(wrapup=0)))
    h.arrive("c1")
    h.arrive("c2")  # waits: alice rings for c1
    out = _reload(h, make_setup(agents=["alice", "bob"], queues=[queue(wrapup=0), QueueConfig("sales")]))
    assert h.rang(out) == ["bob"]
    assert h.rang(h.arrive("s1", queue="sales")) == [], "everybody busy"
    assert "sales" in h.engine.setup.queues and not of(h.log, cmd.Overflow)


def test_reload_changed_settings_apply_to_new_offers():
    h = Harness(make_setup(agents=["alice"], queue=queue(ring_timeout=15)))
    h.arrive("c1")
    first = h.engine.offers[h.offer_of("alice")]
    _reload(h, make_setup(agents=["alice"], queue=queue(ring_timeout=40)))
    assert first.ring_deadline == 15, "the live offer keeps its timer"
    h.advance(15)
    h.advance(5)  # retry: the next offer uses the new ring timeout
    assert h.engine.offers[h.offer_of("alice")].ring_deadline == h.now + 40


def test_reload_removed_agent_finishes_its_call_then_goes_and_ringing_offer_moves_on():
    h = Harness(make_setup(agents=["alice", "bob", "carol"], queue=queue(wrapup=10)))
    h.arrive("c1")
    h.answer("alice")
    h.arrive("c2")
    assert h.offer_of("bob")
    out = _reload(h, make_setup(agents=["carol"], queue=queue(wrapup=10)))
    assert h.rang(out) == ["carol"], "bob's ringing offer is cancelled, the caller goes on"
    assert not of(out, cmd.HangupAgent) and not of(out, cmd.HangupCaller), "alice's call goes on"
    assert "bob" not in h.engine.agents and h.engine.agents["alice"].call == "c1"
    h.do(ev.CallerHungUp("c1"))
    assert "alice" not in h.engine.agents and not h.timers.keys() - {
        t for t in h.timers if t.startswith(("ring:", "maxwait:"))
    }
    assert h.rang(h.arrive("c3")) == []


def test_reload_removed_queue_sends_waiting_callers_to_the_dialplan():
    qs = [queue(wrapup=0), QueueConfig("sales", wrapup=0)]
    h = Harness(make_setup(agents=["alice"], queues=qs, memberships={"alice": ("support", "sales")}))
    h.arrive("c1")
    h.answer("alice")
    h.arrive("s1", queue="sales")
    out = _reload(h, make_setup(agents=["alice"], queue=queue(wrapup=0)))
    assert of(out, cmd.Overflow) == [cmd.Overflow("s1", None)]
    out = h.arrive("s2", queue="sales")
    assert of(out, cmd.Overflow) == [cmd.Overflow("s2", None)], "like any unknown queue"


def test_reload_removed_queue_connected_call_keeps_its_settings():
    qs = [queue(), QueueConfig("sales", wrapup=7)]
    h = Harness(make_setup(agents=["alice"], queues=qs, memberships={"alice": ("sales",)}))
    h.arrive("s1", queue="sales")
    h.answer("alice")
    out = _reload(h, make_setup(agents=["alice"], queues=[queue()], memberships={"alice": ("support",)}))
    assert not of(out, cmd.Overflow)
    out = h.do(ev.CallerHungUp("s1"))
    assert ("wrapup:alice", h.now + 7) in started(out)
