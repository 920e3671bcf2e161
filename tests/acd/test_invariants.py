"""Property-based tests: random interleavings of calls, answers, hangups, timers and agent
actions, checked against the invariants the product promises.

A small model of the shell and of Asterisk sits between the engine and the random events:
it keeps the agent legs the engine asked for, lets their hang-ups complete later (so an
answer can race a cancel), fires timers at their deadlines and sometimes delivers a timer
the engine had already cancelled, as a real event loop can.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import Engine, OfferState, Presence
from controller.acd.setup import (
    Acceptance,
    AcdSetup,
    AgentConfig,
    AgentStartState,
    DialplanTarget,
    Membership,
    QueueConfig,
    Strategy,
)

QUEUES = ("support", "sales")
AGENTS = ("a1", "a2", "a3", "a4")
STEPS = {"count": 0}


@dataclass
class Leg:
    offer_id: str
    call_id: str
    agent_id: str
    started: float
    answered: bool = False
    confirmed: bool = False
    hangup_requested: bool = False
    ended: bool = False
    auto_answer: bool = False


@dataclass
class CallModel:
    call_id: str
    queue: str
    caller_gone: bool = False
    connects: list[str] = field(default_factory=list)
    terminal: int = 0


queue_configs = st.builds(
    lambda name, strategy, acceptance, ring, wrapup, max_wait, retry, delays, mna, empty: QueueConfig(
        name=name,
        strategy=strategy,
        acceptance=acceptance,
        ring_timeout=ring,
        wrapup=wrapup,
        max_wait=max_wait,
        overflow=DialplanTarget("overflow", "s", 1) if max_wait % 2 else None,
        retry=retry,
        reject_delay=delays[0],
        busy_delay=delays[1],
        no_answer_delay=delays[2],
        unreachable_delay=delays[3],
        max_no_answer=mna,
        join_empty=empty[0],
        leave_when_empty=empty[1],
    ),
    st.sampled_from(QUEUES),
    st.sampled_from(list(Strategy)),
    st.sampled_from(list(Acceptance)),
    st.sampled_from([3.0, 5.0, 15.0]),
    st.sampled_from([0.0, 2.0, 5.0]),
    st.sampled_from([0.0, 20.0, 45.0]),
    st.sampled_from([0.0, 3.0]),
    st.tuples(*[st.sampled_from([0.0, 2.0, 10.0])] * 4),
    st.integers(0, 3),
    st.tuples(st.booleans(), st.booleans()),
)
member_lists = st.lists(
    st.tuples(
        st.lists(st.integers(0, 1), min_size=1, max_size=2, unique=True),
        st.integers(0, 2),
        st.booleans(),
    ),
    min_size=len(AGENTS),
    max_size=len(AGENTS),
)


def build_setup(confs, members, present=AGENTS) -> AcdSetup:
    queues = {q.name: q for q in confs}
    names = list(queues)
    agents = {}
    for agent_id, (idx, penalty, out) in zip(AGENTS, members, strict=True):
        if agent_id not in present:
            continue
        qs = tuple(Membership(names[j % len(names)], penalty) for j in idx)
        qs = tuple({m.queue: m for m in qs}.values())
        state = AgentStartState.LOGGED_OUT if out else AgentStartState.AVAILABLE
        agents[agent_id] = AgentConfig(agent_id, agent_id, f"PJSIP/{agent_id}", qs, state)
    return AcdSetup(queues, agents)


class EngineMachine(RuleBasedStateMachine):
    @initialize(
        confs=st.lists(queue_configs, min_size=1, max_size=2, unique_by=lambda q: q.name),
        members=member_lists,
        seed=st.integers(0, 1000),
    )
    def setup(self, confs, members, seed):
        self.setup_ = build_setup(confs, members)
        self.ring_timeouts = {q.name: q.ring_timeout for q in confs}  # longest ever, per queue
        self.acceptance: dict[str, Acceptance] = {}  # offer id -> mode it was made in
        self.engine = Engine(self.setup_, seed=seed)
        self.now = 0.0
        self.timers: dict[str, float] = {}
        self.cancelled_timers: list[str] = []
        self.legs: dict[str, Leg] = {}
        self.offered: list[tuple[str, str]] = []  # (offer id, agent id) of every offer shown
        self.accepted_on_screen: set[str] = set()
        self.calls: dict[str, CallModel] = {}
        self.n_calls = 0
        self.history: list[ev.Event] = []

    # ------------------------------------------------------------------ feeding

    def feed(self, event: ev.Event) -> None:
        STEPS["count"] += 1
        self.history.append(event)
        out = self.engine.handle(event, self.now)
        for c in out:  # the offer's mode first: its RingAgent comes before its offer.created
            if isinstance(c, cmd.Notify) and c.kind == "offer.created":
                self.acceptance[c.data["offer_id"]] = Acceptance(c.data["acceptance"])
        for c in out:
            self.apply(c)

    def apply(self, c: cmd.Command) -> None:
        if isinstance(c, cmd.StartTimer):
            assert c.at >= self.now - 1e-9, "timer in the past"
            self.timers[c.timer_id] = c.at
        elif isinstance(c, cmd.CancelTimer):
            assert c.timer_id in self.timers, f"cancel of unknown timer {c.timer_id}"
            del self.timers[c.timer_id]
            self.cancelled_timers.append(c.timer_id)
        elif isinstance(c, cmd.RingAgent):
            open_legs = [leg for leg in self.legs.values() if leg.agent_id == c.agent_id and not leg.ended]
            assert not open_legs, f"{c.agent_id} rung while a leg of ours is still on its phone: {open_legs}"
            assert not self.calls[c.call_id].caller_gone, "rang an agent for a caller who left"
            agent = self.engine.agents[c.agent_id]
            assert agent.presence is Presence.AVAILABLE and agent.reachable
            desktop = self.acceptance[c.offer_id] is Acceptance.DESKTOP
            assert c.auto_answer == desktop, "auto-answer only after a desktop Accept"
            assert not desktop or c.offer_id in self.accepted_on_screen, (
                "desktop: the phone rang before Accept"
            )
            self.legs[c.offer_id] = Leg(
                c.offer_id, c.call_id, c.agent_id, self.now, auto_answer=c.auto_answer
            )
        elif isinstance(c, cmd.Notify) and c.kind == "offer.created":
            self.offered.append((c.data["offer_id"], c.agent_id))
        elif isinstance(c, cmd.CancelOffer | cmd.HangupAgent):
            self.legs[c.offer_id].hangup_requested = True
        elif isinstance(c, cmd.Connect):
            leg = self.legs[c.offer_id]
            call = self.calls[c.call_id]
            assert leg.answered and not leg.ended and not leg.hangup_requested, (
                "connect without a live answered leg"
            )
            acceptance = self.acceptance[c.offer_id]
            if acceptance is Acceptance.CONFIRM:
                assert leg.confirmed, "confirm mode connected without the agent pressing 1"
            if acceptance is Acceptance.DESKTOP:
                assert leg.auto_answer and c.offer_id in self.accepted_on_screen, (
                    "desktop: connect needs Accept"
                )
            assert not call.caller_gone, "connected a caller who already left"
            assert self.engine.agents[c.agent_id].presence not in (Presence.LOGGED_OUT, Presence.PAUSED)
            call.connects.append(c.agent_id)
            assert len(call.connects) == 1, "call connected twice"
        elif isinstance(c, cmd.Record) and c.kind == "call.ended":
            self.calls[c.data["call"]].terminal += 1
            assert self.calls[c.data["call"]].terminal == 1, "call ended twice"
        elif isinstance(c, cmd.Overflow | cmd.HangupCaller):
            self.calls[c.call_id].caller_gone = True

    # ------------------------------------------------------------------ rules

    @rule(queue=st.sampled_from(QUEUES + ("unknown",)), priority=st.integers(0, 2))
    def arrive(self, queue, priority):
        self.n_calls += 1
        call_id = f"c{self.n_calls}"
        self.calls[call_id] = CallModel(call_id, queue)
        self.feed(ev.CallArrived(call_id, queue, "555", "Caller", priority))

    @rule(data=st.data())
    def caller_hangs_up(self, data):
        live = [c for c in self.calls.values() if not c.caller_gone]
        if live:
            call = data.draw(st.sampled_from(live))
            call.caller_gone = True
            self.feed(ev.CallerHungUp(call.call_id))

    def _open_legs(self, answered: bool | None = None) -> list[Leg]:
        return [
            leg
            for leg in self.legs.values()
            if not leg.ended and (answered is None or leg.answered == answered)
        ]

    @rule(data=st.data())
    def agent_answers(self, data):
        legs = self._open_legs(answered=False)
        if legs:
            leg = data.draw(st.sampled_from(legs))
            leg.answered = True
            self.feed(ev.AgentLegAnswered(leg.offer_id))

    @rule(
        data=st.data(),
        end=st.sampled_from(
            [
                (21, 603, False),
                (17, 486, False),
                (19, 480, False),
                (19, 480, True),
                (34, 503, False),
                (16, None, False),
                (0, None, False),
            ]
        ),
    )
    def agent_leg_ends(self, data, end):
        legs = self._open_legs()
        if legs:
            leg = data.draw(st.sampled_from(legs))
            leg.ended = True
            cause, tech, dial_timeout = end
            self.feed(
                ev.AgentLegEnded(leg.offer_id, cause, tech, dial_timeout=dial_timeout and not leg.answered)
            )

    @rule(data=st.data())
    def requested_hangup_completes(self, data):
        legs = [leg for leg in self.legs.values() if leg.hangup_requested and not leg.ended]
        if legs:
            leg = data.draw(st.sampled_from(legs))
            leg.ended = True
            self.feed(ev.AgentLegEnded(leg.offer_id, 16))

    @rule(data=st.data(), digit=st.sampled_from(["1", "2", "7"]))
    def digit(self, data, digit):
        legs = self._open_legs(answered=True)
        if legs:
            leg = data.draw(st.sampled_from(legs))
            offer = self.engine.offers.get(leg.offer_id)
            if digit == "1" and offer is not None and offer.state is OfferState.CONFIRMING:
                leg.confirmed = True
            self.feed(ev.ConfirmDigit(leg.offer_id, digit))

    @rule(data=st.data(), own=st.booleans(), accept=st.booleans())
    def panel_click(self, data, own, accept):
        if self.offered:
            offer_id, owner = data.draw(st.sampled_from(self.offered[-12:]))
            agent = owner if own else data.draw(st.sampled_from(AGENTS))
            if accept:
                offer = self.engine.offers.get(offer_id)
                if offer is not None and agent == owner:
                    if offer.state is OfferState.CONFIRMING:
                        self.legs[offer_id].confirmed = True
                    elif offer.state is OfferState.RINGING:
                        self.accepted_on_screen.add(offer_id)
                self.feed(ev.OfferAccepted(offer_id, agent))
            else:
                self.feed(ev.OfferRejected(offer_id, agent))

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 5.0, 15.0, 40.0]))
    def time_passes(self, seconds):
        target = self.now + seconds
        while True:
            due = sorted((at, tid) for tid, at in self.timers.items() if at <= target)
            if not due:
                break
            at, tid = due[0]
            self.now = max(self.now, at)
            del self.timers[tid]
            self.feed(ev.TimerFired(tid))
        self.now = target

    @rule(data=st.data())
    def stale_timer_delivered(self, data):
        if self.cancelled_timers:
            self.feed(ev.TimerFired(data.draw(st.sampled_from(self.cancelled_timers))))

    @rule(agent=st.sampled_from(AGENTS), action=st.sampled_from(["login", "logout", "pause", "ready"]))
    def agent_action(self, agent, action):
        event = {
            "login": ev.AgentLogin(agent),
            "logout": ev.AgentLogout(agent),
            "pause": ev.AgentPause(agent, "break"),
            "ready": ev.AgentReady(agent),
        }[action]
        self.feed(event)

    @rule(agent=st.sampled_from(AGENTS), reachable=st.booleans())
    def endpoint(self, agent, reachable):
        self.feed(ev.EndpointState(f"PJSIP/{agent}", reachable))

    @rule(
        confs=st.lists(queue_configs, min_size=1, max_size=2, unique_by=lambda q: q.name),
        members=member_lists,
        present=st.lists(st.sampled_from(AGENTS), unique=True),
    )
    def reload(self, confs, members, present):
        """The queue file changes under live calls: agents and queues come and go."""
        self.setup_ = build_setup(confs, members, present)
        for q in confs:
            self.ring_timeouts[q.name] = max(self.ring_timeouts.get(q.name, 0.0), q.ring_timeout)
        self.feed(ev.SetupReloaded(self.setup_))

    @rule(data=st.data())
    def replay_old_event(self, data):
        if self.history:
            old = data.draw(st.sampled_from(self.history[-20:]))
            if isinstance(old, ev.AgentLegAnswered | ev.CallerHungUp | ev.ConfirmDigit | ev.OfferRejected):
                # duplicates of facts already delivered; must change nothing harmful
                leg = self.legs.get(getattr(old, "offer_id", ""))
                if leg is not None and leg.ended:
                    return  # an answer for a destroyed channel cannot happen
                if isinstance(old, ev.ConfirmDigit) and old.digit == "1" and leg is not None:
                    offer = self.engine.offers.get(leg.offer_id)
                    if offer is not None and offer.state is OfferState.CONFIRMING:
                        leg.confirmed = True
                self.feed(old)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def one_live_offer_per_agent_and_in_sync(self):
        live: dict[str, int] = {}
        for offer in self.engine.offers.values():
            if offer.state in (OfferState.RINGING, OfferState.CONFIRMING):
                live[offer.agent_id] = live.get(offer.agent_id, 0) + 1
                assert self.engine.agents[offer.agent_id].live_offer == offer.id
        assert all(n <= 1 for n in live.values()), live

    @invariant()
    def no_offer_rings_longer_than_ring_timeout(self):
        for offer in self.engine.offers.values():
            if offer.state is OfferState.RINGING:
                call = self.engine.calls[offer.call_id]
                assert self.now - offer.started_at <= self.ring_timeouts[call.queue] + 1e-9

    @invariant()
    def no_offer_outlives_its_call(self):
        for leg in self.legs.values():
            if self.calls[leg.call_id].terminal:
                assert leg.ended or leg.hangup_requested, f"leg {leg.offer_id} outlived {leg.call_id}"
                offer = self.engine.offers.get(leg.offer_id)
                assert offer is None or offer.state is OfferState.ENDED, offer

    @invariant()
    def timers_in_sync(self):
        assert set(self.timers) == set(self.engine.timers)

    def teardown(self):
        if not hasattr(self, "engine"):
            return
        # Everybody hangs up, every requested hangup completes, time runs out: every call
        # has exactly one terminal outcome and every timer fired or was cancelled.
        for call in self.calls.values():
            if not call.caller_gone:
                call.caller_gone = True
                self.feed(ev.CallerHungUp(call.call_id))
        for _ in range(3):
            for leg in list(self.legs.values()):
                if not leg.ended and leg.hangup_requested:
                    leg.ended = True
                    self.feed(ev.AgentLegEnded(leg.offer_id, 16))
        self.time_passes(10_000)
        for call in self.calls.values():
            assert call.terminal == 1, f"{call.call_id} ended {call.terminal} times"
        assert not self.timers and not self.engine.timers
        assert all(leg.ended for leg in self.legs.values()), "a leg was left ringing"
        assert not self.engine.calls and not self.engine.offers, "finished calls and offers are forgotten"


def test_engine_invariants_hold_over_random_event_sequences():
    STEPS["count"] = 0
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(
            max_examples=int(os.environ.get("ACD_ENGINE_EXAMPLES", "600")),
            stateful_step_count=100,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print(f"engine invariant steps: {STEPS['count']}")
    assert STEPS["count"] >= 10_000, f"only {STEPS['count']} events were generated"
