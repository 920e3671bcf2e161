"""Model-based property test of the routing engine.

Random interleavings of arrivals, answers, hang-ups, digits, panel clicks, timers, agent
actions, endpoint changes and restarts (``CallRestored``) are fed to the engine. The test keeps
its OWN model of what the callers, phones, agents and the shell did, and predicts from it, for
every event, the commands the engine must emit: which offer connects (``Connect`` must name the
leg's own call and agent), which offers end and with which outcome, which legs are cancelled and
why, ``PlayConfirmPrompt``, the desktop auto-answer ring, ``Overflow``/``HangupCaller``/
``HangupAgent`` and every call's single outcome. "Accepted" means what the test itself did
(answered the leg, pressed 1, clicked Accept), never what the engine's offer state says. Timer
deadlines are checked against the model (ring, confirm, connect, max-wait, retry, wrap-up, delay).

The only commands the model does not predict are new offers, because which agent a strategy
picks is the engine's choice; each new offer is checked against the rules instead:

- it goes to a member of the call's queue who is idle in the model: available, reachable, no
  live offer (ringing, confirming or connecting), no call, no agent leg still open, not in
  wrap-up, not in a reject/busy/no-answer/unreachable delay;
- the call is not connected, ended or abandoned, and has no other live offer (``ring_all``
  rings its whole tier in one step);
- an agent is offered the same call twice only in a new round (``retry`` 0, or its retry
  timer fired);
- priority, then arrival: no better-ranked call the agent has not yet tried in this round
  waits in one of the agent's queues.

Liveness, checked after every step:

- no call waits past its queue's ``max_wait``;
- no call waits (no live offer) while a member of its queue is idle in the model, except when
  that agent was already offered the call in the current round and the call's retry timer is
  pending (``retry`` > 0: "an agent who just said no is not rung again for the same call the
  same instant"). Not idle, hence no exception needed: an agent in wrap-up, in a delay after a
  rejected/busy/unanswered/unreachable offer, paused/logged out/not responding, unreachable,
  or whose previous agent leg Asterisk has not yet reported destroyed;
- no offer rings, waits for its digit, or waits for the auto-answer longer than its timeout.

The model of the shell and of Asterisk keeps the agent legs the engine asked for and lets
their hang-ups complete later (so an answer can race a cancel), fires timers at their deadlines
and sometimes delivers a timer the engine had already cancelled, as a real event loop can.

CI runs a fixed set of sequences (``derandomize=True``); ``python bench/run.py acd_fuzz``
runs the same machine on fresh random sequences for as long as asked.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.commands import CancelReason
from controller.acd.engine import Engine, OfferState, Presence
from controller.acd.outcome import Outcome, classify_leg_end
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

RINGING, CONFIRMING, CONNECTING = "ringing", "confirming", "connecting"
CONNECTED, ENDED = "connected", "ended"
LIVE = (RINGING, CONFIRMING, CONNECTING)
OFFER_END_KINDS = ("offer.rejected", "offer.timeout", "offer.canceled", "offer.failed")


@dataclass
class MOffer:
    id: str
    call_id: str
    agent_id: str
    started: float
    state: str = RINGING
    since: float = 0.0  # when it entered its current state
    leg: str = "none"  # none -> open (RingAgent) -> ended (AgentLegEnded fed by the test)
    answered: bool = False  # the test answered the leg
    hangup_requested: bool = False
    step: int = 0  # the feed that created it


@dataclass
class MCall:
    id: str
    queue: str
    priority: int
    arrived: float
    seq: int
    state: str = "waiting"  # waiting / offering / connected / ended
    live: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)  # agents offered the call in this round
    offers: list[str] = field(default_factory=list)
    connected_offer: str | None = None
    caller_gone: bool = False  # hung up, or the engine sent them away
    ends: int = 0

    @property
    def rank(self) -> tuple[int, float, int]:
        return (-self.priority, self.arrived, self.seq)


@dataclass
class MAgent:
    id: str
    endpoint: str
    queues: dict[str, int]
    presence: Presence
    reachable: bool = True
    live_offer: str | None = None
    call: str | None = None
    wrapup_until: float = -math.inf
    delay_until: float = -math.inf
    misses: int = 0


@dataclass
class Expect:
    """What one event must make the engine do (besides new offers and timers)."""

    sigs: Counter = field(default_factory=Counter)


queue_configs = st.builds(
    lambda name, strategy, acceptance, ring, wrapup, max_wait, retry, delays, mna, join_empty: QueueConfig(
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
        join_empty=join_empty,
        confirm_timeout=4.0,
        connect_timeout=6.0,
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
    st.booleans(),
)


def sig(c: cmd.Command) -> tuple | None:
    """The part of a command the model predicts exactly (None: not predicted)."""
    if isinstance(c, cmd.ParkCaller):
        return ("park", c.call_id, c.hold)
    if isinstance(c, cmd.Connect):
        return ("connect", c.call_id, c.offer_id, c.agent_id)
    if isinstance(c, cmd.CancelOffer):
        return ("cancel", c.offer_id, c.call_id, c.agent_id, c.reason)
    if isinstance(c, cmd.HangupAgent):
        return ("hangup_agent", c.offer_id, c.call_id, c.agent_id)
    if isinstance(c, cmd.HangupCaller):
        return ("hangup_caller", c.call_id, c.reason)
    if isinstance(c, cmd.Overflow):
        return ("overflow", c.call_id, c.target)
    if isinstance(c, cmd.PlayConfirmPrompt):
        return ("prompt", c.offer_id, c.call_id, c.queue, c.caller_number, c.wait_seconds)
    if isinstance(c, cmd.RingAgent) and c.auto_answer:
        return ("ring_auto", c.offer_id, c.call_id, c.agent_id)
    if isinstance(c, cmd.Notify) and c.kind in OFFER_END_KINDS:
        return ("offer_end", c.data["offer_id"], c.data["outcome"])
    if isinstance(c, cmd.Record) and c.kind == "call.ended":
        return ("call_end", c.data["call"], c.data["outcome"])
    return None


class EngineMachine(RuleBasedStateMachine):
    @initialize(
        confs=st.lists(queue_configs, min_size=1, max_size=2, unique_by=lambda q: q.name),
        members=st.lists(
            st.tuples(
                st.lists(st.integers(0, 1), min_size=1, max_size=2, unique=True),
                st.integers(0, 2),
                st.booleans(),
            ),
            min_size=len(AGENTS),
            max_size=len(AGENTS),
        ),
        seed=st.integers(0, 1000),
    )
    def setup(self, confs, members, seed):
        queues = {q.name: q for q in confs}
        names = list(queues)
        agents = {}
        self.agents: dict[str, MAgent] = {}
        for agent_id, (idx, penalty, out) in zip(AGENTS, members, strict=True):
            qs = tuple(Membership(names[j % len(names)], penalty) for j in idx)
            qs = tuple({m.queue: m for m in qs}.values())
            state = AgentStartState.LOGGED_OUT if out else AgentStartState.AVAILABLE
            agents[agent_id] = AgentConfig(agent_id, agent_id, f"PJSIP/{agent_id}", qs, state)
            presence = Presence.LOGGED_OUT if out else Presence.AVAILABLE
            self.agents[agent_id] = MAgent(
                agent_id, f"PJSIP/{agent_id}", {m.queue: m.penalty for m in qs}, presence
            )
        self.queues = queues
        self.engine = Engine(AcdSetup(queues, agents), seed=seed)
        self.now = 0.0
        self.timers: dict[str, float] = {}  # the shell's live timers
        self.cancelled_timers: list[str] = []
        self.offers: dict[str, MOffer] = {}
        self.calls: dict[str, MCall] = {}
        self.offered: list[str] = []  # every offer shown, for panel clicks
        self.n_calls = 0
        self.seq = 0
        self.step = 0
        self.history: list[ev.Event] = []

    # ------------------------------------------------------------------ the model's own view

    def idle(self, agent: MAgent) -> bool:
        """Free to take a call, by what the test fed and the timers it fired."""
        return (
            agent.presence is Presence.AVAILABLE
            and agent.reachable
            and agent.live_offer is None
            and agent.call is None
            and not self.open_legs(agent.id)
            and self.now >= agent.wrapup_until
            and self.now >= agent.delay_until
        )

    def open_legs(self, agent_id: str) -> list[MOffer]:
        return [o for o in self.offers.values() if o.agent_id == agent_id and o.leg == "open"]

    def forgotten(self, call: MCall) -> bool:
        """The engine drops a finished call once none of its legs is open."""
        return call.state == "ended" and not any(self.offers[o].leg == "open" for o in call.offers)

    def present(self, queue: str) -> int:
        """Members who could take a call now or once free (available, phone reachable): a queue
        with none is "empty" for ``join_empty`` (``leave_when_empty`` stays off here)."""
        return sum(
            1
            for a in self.agents.values()
            if queue in a.queues and a.presence is Presence.AVAILABLE and a.reachable
        )

    def retry_pending(self, call_id: str) -> bool:
        return any(t.rpartition("#")[0] == f"retry:{call_id}" for t in self.timers)

    # ------------------------------------------------------------------ predicted effects

    def end_offer(self, x: Expect, o: MOffer, outcome: Outcome, cancel: CancelReason | None) -> None:
        call, agent = self.calls[o.call_id], self.agents[o.agent_id]
        queue = self.queues[call.queue]
        assert o.state in LIVE, o
        o.state, o.since = ENDED, self.now
        call.live.discard(o.id)
        agent.live_offer = None
        x.sigs[("offer_end", o.id, outcome.value)] += 1
        if cancel is not None and o.leg == "open":
            x.sigs[("cancel", o.id, call.id, agent.id, cancel)] += 1
        delay = {
            Outcome.REJECTED: queue.reject_delay,
            Outcome.BUSY: queue.busy_delay,
            Outcome.NO_ANSWER: queue.no_answer_delay,
            Outcome.UNREACHABLE: queue.unreachable_delay,
        }.get(outcome, 0.0)
        if delay > 0:
            agent.delay_until = max(agent.delay_until, self.now + delay)
        if outcome is Outcome.NO_ANSWER:
            agent.misses += 1
            limit = queue.max_no_answer
            if limit and agent.misses >= limit and agent.presence is Presence.AVAILABLE:
                agent.presence = Presence.NOT_RESPONDING
        elif outcome is Outcome.REJECTED:
            agent.misses = 0
        if call.state == "offering" and not call.live:
            call.state = "waiting"

    def accept(self, x: Expect, o: MOffer) -> None:
        call, agent = self.calls[o.call_id], self.agents[o.agent_id]
        o.state, o.since = CONNECTED, self.now
        call.live.discard(o.id)
        call.state, call.connected_offer = "connected", o.id
        agent.live_offer, agent.call, agent.misses = None, call.id, 0
        x.sigs[("connect", call.id, o.id, agent.id)] += 1
        for other in sorted(call.live):
            self.end_offer(x, self.offers[other], Outcome.CANCELED, CancelReason.ANSWERED_ELSEWHERE)

    def finish(self, x: Expect, call: MCall, outcome: str) -> None:
        call.state = "ended"
        call.tried.clear()
        x.sigs[("call_end", call.id, outcome)] += 1

    def end_connected(self, x: Expect, call: MCall) -> None:
        o = self.offers[call.connected_offer]
        agent = self.agents[o.agent_id]
        o.state, o.since = ENDED, self.now
        agent.call = None
        wrapup = self.queues[call.queue].wrapup
        if wrapup > 0:
            agent.wrapup_until = self.now + wrapup
        self.finish(x, call, "completed")

    def overflow(self, x: Expect, call: MCall) -> None:
        queue = self.queues[call.queue]
        for o in sorted(call.live):
            self.end_offer(x, self.offers[o], Outcome.CANCELED, CancelReason.OVERFLOW)
        self.finish(x, call, "overflowed")
        call.caller_gone = True
        if queue.overflow is not None:
            x.sigs[("overflow", call.id, queue.overflow)] += 1
        else:
            x.sigs[("hangup_caller", call.id, "overflow")] += 1

    def set_presence(self, x: Expect, agent: MAgent, presence: Presence) -> None:
        agent.presence = presence
        o = self.offers.get(agent.live_offer) if agent.live_offer else None
        if o is not None and presence in (Presence.LOGGED_OUT, Presence.PAUSED):
            self.end_offer(x, o, Outcome.CANCELED, CancelReason.AGENT_UNAVAILABLE)

    def live_offer_of_event(self, offer_id: str) -> MOffer | None:
        o = self.offers.get(offer_id)
        if o is None or self.forgotten(self.calls[o.call_id]):
            return None
        return o

    def predict(self, e: ev.Event, x: Expect) -> None:  # noqa: C901 - one branch per event type
        now = self.now
        if isinstance(e, ev.CallArrived):
            if e.call_id in self.calls:
                return  # duplicate: nothing at all
            self.seq += 1
            arrived = now if e.arrived_at is None else min(e.arrived_at, now)
            call = self.calls[e.call_id] = MCall(e.call_id, e.queue, e.priority, arrived, self.seq)
            queue = self.queues.get(e.queue)
            if queue is None:
                self.finish(x, call, "overflowed")
                call.caller_gone = True
                x.sigs[("overflow", call.id, None)] += 1
                return
            x.sigs[("park", call.id, queue.hold)] += 1
            empty = not queue.join_empty and self.present(e.queue) == 0
            if empty or (queue.max_wait > 0 and arrived + queue.max_wait <= now):
                self.overflow(x, call)
        elif isinstance(e, ev.CallerHungUp):
            call = self.calls.get(e.call_id)
            if call is None or call.state == "ended":
                return
            call.caller_gone = True
            if call.state == "connected":
                o = self.offers[call.connected_offer]
                x.sigs[("hangup_agent", o.id, call.id, o.agent_id)] += 1
                self.end_connected(x, call)
            else:
                for o in sorted(call.live):
                    self.end_offer(x, self.offers[o], Outcome.CANCELED, CancelReason.CALLER_GONE)
                self.finish(x, call, "abandoned")
        elif isinstance(e, ev.AgentLegAnswered):
            o = self.live_offer_of_event(e.offer_id)
            assert o is not None and o.leg == "open", "the test answers only legs that exist"
            o.answered = True
            call = self.calls[o.call_id]
            if o.state == ENDED:
                x.sigs[("cancel", o.id, call.id, o.agent_id, CancelReason.STALE)] += 1
            elif o.state == CONNECTING:
                self.accept(x, o)
            elif o.state == RINGING:
                queue = self.queues[call.queue]
                if queue.acceptance is Acceptance.CONFIRM:
                    o.state, o.since = CONFIRMING, now
                    wait = int(now - call.arrived)
                    x.sigs[("prompt", o.id, call.id, call.queue, "555", wait)] += 1
                else:
                    self.accept(x, o)
        elif isinstance(e, ev.AgentLegEnded):
            o = self.offers[e.offer_id]
            assert o.leg == "open", "the test ends only legs that exist"
            o.leg = "ended"
            call = self.calls[o.call_id]
            if o.state in LIVE:
                if o.state == CONFIRMING:
                    outcome = Outcome.REJECTED
                elif o.state == CONNECTING:
                    outcome = Outcome.NO_ANSWER
                else:
                    outcome, _ = classify_leg_end(e.cause, e.tech_cause, dial_timeout=e.dial_timeout)
                self.end_offer(x, o, outcome, None)
            elif o.state == CONNECTED:
                call.caller_gone = True
                x.sigs[("hangup_caller", call.id, "normal")] += 1
                self.end_connected(x, call)
        elif isinstance(e, ev.OfferAccepted):
            o = self.live_offer_of_event(e.offer_id)
            if o is None or o.agent_id != e.agent_id:
                return
            queue = self.queues[self.calls[o.call_id].queue]
            if o.state == CONFIRMING:
                self.accept(x, o)
            elif o.state == RINGING and queue.acceptance is Acceptance.DESKTOP:
                o.state, o.since = CONNECTING, now
                x.sigs[("ring_auto", o.id, o.call_id, o.agent_id)] += 1
        elif isinstance(e, ev.OfferRejected):
            o = self.live_offer_of_event(e.offer_id)
            if o is not None and o.agent_id == e.agent_id and o.state in LIVE:
                self.end_offer(x, o, Outcome.REJECTED, CancelReason.REJECTED)
        elif isinstance(e, ev.ConfirmDigit):
            o = self.live_offer_of_event(e.offer_id)
            if o is not None and o.state == CONFIRMING:
                if e.digit == "1":
                    self.accept(x, o)
                elif e.digit == "2":
                    self.end_offer(x, o, Outcome.REJECTED, CancelReason.REJECTED)
        elif isinstance(e, ev.TimerFired):
            if e.timer_id not in self.timers:
                return  # stale: cancelled before its callback ran
            at = self.timers.pop(e.timer_id)
            assert at == now, f"{e.timer_id} fired at {now}, due {at}"
            kind, _, ref = e.timer_id.rpartition("#")[0].partition(":")
            if kind in ("ring", "confirm", "connect"):
                o = self.offers[ref]
                want = {"ring": RINGING, "confirm": CONFIRMING, "connect": CONNECTING}[kind]
                assert o.state == want, f"{kind} timer of {o.id} still live in state {o.state}"
                self.end_offer(x, o, Outcome.NO_ANSWER, CancelReason.TIMED_OUT)
            elif kind == "maxwait":
                call = self.calls[ref]
                assert call.state in ("waiting", "offering"), f"max-wait timer live for a {call.state} call"
                self.overflow(x, call)
            elif kind == "retry":
                call = self.calls[ref]
                assert call.state == "waiting" and call.tried, f"retry timer live for {call}"
                call.tried.clear()
            elif kind == "wrapup":
                assert self.agents[ref].wrapup_until == now
            elif kind == "delay":
                assert self.agents[ref].delay_until == now
            else:
                raise AssertionError(f"unknown timer {e.timer_id}")
        elif isinstance(e, ev.AgentLogin | ev.AgentReady | ev.AgentLogout | ev.AgentPause):
            agent = self.agents[e.agent_id]
            login = isinstance(e, ev.AgentLogin) and agent.presence is Presence.LOGGED_OUT
            if login or (isinstance(e, ev.AgentReady) and agent.presence is not Presence.AVAILABLE):
                agent.misses = 0
                self.set_presence(x, agent, Presence.AVAILABLE)
            elif isinstance(e, ev.AgentLogout) and agent.presence is not Presence.LOGGED_OUT:
                self.set_presence(x, agent, Presence.LOGGED_OUT)
            elif isinstance(e, ev.AgentPause) and agent.presence is not Presence.LOGGED_OUT:
                self.set_presence(x, agent, Presence.PAUSED)
        elif isinstance(e, ev.EndpointState):
            agent = next(a for a in self.agents.values() if a.endpoint == e.endpoint)
            if agent.reachable == e.reachable:
                return
            agent.reachable = e.reachable
            o = self.offers.get(agent.live_offer) if agent.live_offer else None
            if o is not None and not e.reachable and o.state == RINGING:
                self.end_offer(x, o, Outcome.UNREACHABLE, CancelReason.AGENT_UNAVAILABLE)
        elif isinstance(e, ev.CallRestored):
            agent = self.agents.get(e.agent_id)
            if (
                e.call_id in self.calls
                or e.queue not in self.queues
                or agent is None
                or agent.call is not None
                or agent.live_offer is not None
            ):
                return  # refused
            self.seq += 1
            arrived = now if e.arrived_at is None else min(e.arrived_at, now)
            call = self.calls[e.call_id] = MCall(e.call_id, e.queue, 0, arrived, self.seq, state="connected")
            o = self.offers[f"{call.id}-1"] = MOffer(f"{call.id}-1", call.id, agent.id, now, CONNECTED, now)
            o.leg, o.answered, o.step = "open", True, self.step
            call.offers.append(o.id)
            call.connected_offer = o.id
            agent.call = call.id
            if not e.bridged:
                x.sigs[("connect", call.id, o.id, agent.id)] += 1
        else:
            raise AssertionError(f"unexpected event {e}")

    # ------------------------------------------------------------------ feeding

    def feed(self, event: ev.Event) -> list[cmd.Command]:
        STEPS["count"] += 1
        self.step += 1
        self.history.append(event)
        x = Expect()
        self.predict(event, x)
        out = self.engine.handle(event, self.now)
        for c in out:  # new offers first: a desktop offer's ring timer precedes its notice
            if isinstance(c, cmd.RingAgent) or (isinstance(c, cmd.Notify) and c.kind == "offer.created"):
                self.observe(c)
        for c in out:
            if not isinstance(c, cmd.RingAgent | cmd.Notify):
                self.observe(c)
        got = Counter(s for s in map(sig, out) if s is not None)
        assert got == x.sigs, f"after {event}:\n  missing {x.sigs - got}\n  unexpected {got - x.sigs}"
        presences = {
            c.agent_id: c.data["presence"]
            for c in out
            if isinstance(c, cmd.Notify) and c.kind == "agent.state"
        }
        for agent_id, presence in presences.items():
            assert presence == self.agents[agent_id].presence.value, (event, agent_id, presence)
        return out

    def observe(self, c: cmd.Command) -> None:
        """The shell's side of one command, and the rules every new offer must obey."""
        if isinstance(c, cmd.RingAgent):
            if c.offer_id not in self.offers:
                self.new_offer(c.offer_id, c.call_id, c.agent_id)
            o = self.offers[c.offer_id]
            desktop = self.queues[self.calls[c.call_id].queue].acceptance is Acceptance.DESKTOP
            assert c.auto_answer == desktop, "auto-answer only (and always) after a desktop Accept"
            assert (c.call_id, c.agent_id) == (o.call_id, o.agent_id), c
            assert o.leg == "none", f"{o.id} rung twice"
            assert not self.open_legs(c.agent_id), f"{c.agent_id} rung while a leg is still on its phone"
            assert not self.calls[c.call_id].caller_gone, "rang an agent for a caller who left"
            assert c.endpoint == self.agents[c.agent_id].endpoint
            o.leg = "open"
        elif isinstance(c, cmd.Notify) and c.kind == "offer.created":
            if c.data["offer_id"] not in self.offers:
                self.new_offer(c.data["offer_id"], c.data["call_id"], c.agent_id)
            self.offered.append(c.data["offer_id"])
        elif isinstance(c, cmd.CancelOffer | cmd.HangupAgent):
            o = self.offers[c.offer_id]
            assert o.leg == "open", f"hang-up of a leg that is not open: {c}"
            o.hangup_requested = True
        elif isinstance(c, cmd.StartTimer):
            self.check_timer(c)
            self.timers[c.timer_id] = c.at
        elif isinstance(c, cmd.CancelTimer):
            assert c.timer_id in self.timers, f"cancel of unknown timer {c.timer_id}"
            del self.timers[c.timer_id]
            self.cancelled_timers.append(c.timer_id)

    def new_offer(self, offer_id: str, call_id: str, agent_id: str) -> None:
        call, agent = self.calls[call_id], self.agents[agent_id]
        queue = self.queues[call.queue]
        assert call.queue in agent.queues, f"{agent_id} offered a call of {call.queue}, not its queue"
        assert call.state in ("waiting", "offering") and not call.caller_gone, (
            f"offer for a {call.state} call"
        )
        assert self.idle(agent), f"offer to {agent_id} who is not idle: {agent}"
        if call.live:
            assert queue.strategy is Strategy.RING_ALL, f"{call_id} offered twice at once"
            assert all(self.offers[o].step == self.step for o in call.live), "ring_all rings one tier at once"
        if agent_id in call.tried:
            assert queue.retry <= 0, f"{agent_id} offered {call_id} again within one round"
            call.tried.clear()
        for other in self.calls.values():
            if (
                other is not call
                and other.state == "waiting"
                and other.queue in agent.queues
                and other.rank < call.rank
                and agent_id not in other.tried
            ):
                raise AssertionError(f"{agent_id} got {call_id} while better-ranked {other.id} waits")
        o = self.offers[offer_id] = MOffer(
            offer_id, call_id, agent_id, self.now, since=self.now, step=self.step
        )
        call.offers.append(offer_id)
        call.live.add(offer_id)
        call.tried.add(agent_id)
        call.state = "offering"
        agent.live_offer = o.id

    def check_timer(self, c: cmd.StartTimer) -> None:
        kind, _, ref = c.timer_id.rpartition("#")[0].partition(":")
        now = self.now
        if kind in ("ring", "confirm", "connect"):
            o = self.offers[ref]
            queue = self.queues[self.calls[o.call_id].queue]
            want = {
                "ring": (RINGING, o.started + queue.ring_timeout),
                "confirm": (CONFIRMING, now + queue.confirm_timeout),
                "connect": (CONNECTING, now + queue.connect_timeout),
            }[kind]
            assert (o.state, c.at) == want, (c, o)
        elif kind == "maxwait":
            call = self.calls[ref]
            assert c.at == call.arrived + self.queues[call.queue].max_wait > now
        elif kind == "retry":
            call = self.calls[ref]
            assert self.queues[call.queue].retry > 0 and c.at == now + self.queues[call.queue].retry
        elif kind == "wrapup":
            assert c.at == self.agents[ref].wrapup_until > now
        elif kind == "delay":
            assert c.at == self.agents[ref].delay_until > now
        else:
            raise AssertionError(f"unknown timer {c.timer_id}")

    # ------------------------------------------------------------------ rules

    @rule(
        queue=st.sampled_from(QUEUES + ("unknown",)),
        priority=st.integers(0, 2),
        requeued=st.sampled_from([None, None, None, 0.0, 10.0, 60.0]),
    )
    def arrive(self, queue, priority, requeued):
        self.n_calls += 1
        arrived_at = None if requeued is None else self.now - requeued
        self.feed(ev.CallArrived(f"c{self.n_calls}", queue, "555", "Caller", priority, arrived_at=arrived_at))

    @rule(data=st.data())
    def duplicate_arrival(self, data):
        if self.calls:
            call = data.draw(st.sampled_from(sorted(self.calls)))
            assert self.feed(ev.CallArrived(call, "support", "555")) == []

    @rule(data=st.data())
    def caller_hangs_up(self, data):
        live = [c.id for c in self.calls.values() if not c.caller_gone]
        if live:
            self.feed(ev.CallerHungUp(data.draw(st.sampled_from(live))))

    def _legs(self, answered: bool | None = None) -> list[str]:
        return [
            o.id
            for o in self.offers.values()
            if o.leg == "open" and (answered is None or o.answered == answered)
        ]

    @rule(data=st.data())
    def agent_answers(self, data):
        legs = self._legs(answered=False)
        if legs:
            self.feed(ev.AgentLegAnswered(data.draw(st.sampled_from(legs))))

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
        legs = self._legs()
        if legs:
            o = self.offers[data.draw(st.sampled_from(legs))]
            cause, tech, dial_timeout = end
            self.feed(ev.AgentLegEnded(o.id, cause, tech, dial_timeout=dial_timeout and not o.answered))

    @rule(data=st.data())
    def requested_hangup_completes(self, data):
        legs = [o.id for o in self.offers.values() if o.hangup_requested and o.leg == "open"]
        if legs:
            self.feed(ev.AgentLegEnded(data.draw(st.sampled_from(legs)), 16))

    @rule(data=st.data(), digit=st.sampled_from(["1", "2", "7"]))
    def digit(self, data, digit):
        legs = self._legs(answered=True)
        if legs:
            self.feed(ev.ConfirmDigit(data.draw(st.sampled_from(legs)), digit))

    @rule(data=st.data(), own=st.booleans(), accept=st.booleans())
    def panel_click(self, data, own, accept):
        if self.offered:
            offer_id = data.draw(st.sampled_from(self.offered[-12:]))
            owner = self.offers[offer_id].agent_id
            agent = owner if own else data.draw(st.sampled_from(AGENTS))
            self.feed(ev.OfferAccepted(offer_id, agent) if accept else ev.OfferRejected(offer_id, agent))

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 5.0, 15.0, 40.0]))
    def time_passes(self, seconds):
        target = self.now + seconds
        while True:
            due = sorted((at, tid) for tid, at in self.timers.items() if at <= target)
            if not due:
                break
            at, tid = due[0]
            self.now = max(self.now, at)
            self.feed(ev.TimerFired(tid))
        self.now = target

    @rule(data=st.data())
    def stale_timer_delivered(self, data):
        if self.cancelled_timers:
            assert self.feed(ev.TimerFired(data.draw(st.sampled_from(self.cancelled_timers)))) == []

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
        data=st.data(),
        queue=st.sampled_from(QUEUES + ("unknown",)),
        agent=st.sampled_from(AGENTS + ("ghost",)),
        bridged=st.booleans(),
        reuse=st.booleans(),
    )
    def restart_restores_a_call(self, data, queue, agent, bridged, reuse):
        """After a restart the shell hands back a customer with the agent leg answered for them."""
        if reuse and self.calls:
            call_id = data.draw(st.sampled_from(sorted(self.calls)))
        else:
            self.n_calls += 1
            call_id = f"r{self.n_calls}"
        self.feed(ev.CallRestored(call_id, queue, agent, "555", "Caller", self.now - 30, bridged=bridged))

    @rule(data=st.data())
    def replay_old_event(self, data):
        if self.history:
            old = data.draw(st.sampled_from(self.history[-20:]))
            if isinstance(old, ev.AgentLegAnswered | ev.CallerHungUp | ev.ConfirmDigit | ev.OfferRejected):
                o = self.offers.get(getattr(old, "offer_id", ""))
                if o is not None and o.leg != "open":
                    return  # a destroyed channel answers or sends digits no more
                self.feed(old)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def liveness(self):
        """No call waits while an idle member of its queue could take it (see the module doc)."""
        if not hasattr(self, "engine"):
            return
        for call in self.calls.values():
            if call.state not in ("waiting", "offering"):
                continue
            queue = self.queues[call.queue]
            if queue.max_wait > 0:
                assert self.now < call.arrived + queue.max_wait, f"{call.id} waits past max_wait"
            if call.state == "offering":
                assert call.live
                continue
            for agent in self.agents.values():
                if call.queue not in agent.queues or not self.idle(agent):
                    continue
                if agent.id in call.tried and queue.retry > 0 and self.retry_pending(call.id):
                    continue
                raise AssertionError(f"{call.id} waits while {agent.id} is idle: {agent}, tried {call.tried}")

    @invariant()
    def offers_end_in_time(self):
        if not hasattr(self, "engine"):
            return
        for o in self.offers.values():
            queue = self.queues[self.calls[o.call_id].queue]
            limit = {
                RINGING: queue.ring_timeout,
                CONFIRMING: queue.confirm_timeout,
                CONNECTING: queue.connect_timeout,
            }.get(o.state)
            if limit is not None:
                assert self.now - o.since <= limit, f"{o.id} {o.state} for {self.now - o.since}s"

    @invariant()
    def one_live_offer_per_agent(self):
        if not hasattr(self, "engine"):
            return
        owners = Counter(o.agent_id for o in self.offers.values() if o.state in LIVE)
        assert all(n <= 1 for n in owners.values()), owners
        for o in self.offers.values():
            if self.calls[o.call_id].state == "ended":
                assert o.state not in LIVE and (o.leg != "open" or o.hangup_requested), (
                    f"{o} outlived its call"
                )

    @invariant()
    def engine_agrees_with_the_model(self):
        """A cross-check that pins a divergence to the step that caused it."""
        if not hasattr(self, "engine"):
            return
        assert set(self.timers) == set(self.engine.timers)
        for agent in self.agents.values():
            mine = self.engine.agents[agent.id]
            assert (mine.presence, mine.reachable, mine.live_offer, mine.call) == (
                agent.presence,
                agent.reachable,
                agent.live_offer,
                agent.call,
            ), agent.id
            assert mine.eligible == self.idle(agent), agent
        for call in self.calls.values():
            if self.forgotten(call):
                assert call.id not in self.engine.calls
            else:
                assert self.engine.calls[call.id].state.value == call.state, call
        for o in self.offers.values():
            theirs = self.engine.offers.get(o.id)
            if theirs is not None:
                assert theirs.state is OfferState(o.state), o

    def teardown(self):
        if not hasattr(self, "engine"):
            return
        # Everybody hangs up, every requested hangup completes, time runs out: every call
        # has exactly one terminal outcome and every timer fired or was cancelled.
        for call in list(self.calls.values()):
            if not call.caller_gone:
                self.feed(ev.CallerHungUp(call.id))
        for o in list(self.offers.values()):
            if o.leg == "open":
                assert o.hangup_requested, f"{o.id} left on the agent's phone"
                self.feed(ev.AgentLegEnded(o.id, 16))
        self.time_passes(10_000)
        for call in self.calls.values():
            assert call.state == "ended", call
        assert not self.timers and not self.engine.timers
        assert not self.engine.calls and not self.engine.offers, "finished calls and offers are forgotten"


def run(examples: int, *, derandomize: bool, steps: int = 100, shrink: bool = True) -> int:
    """Run the machine; returns the number of events fed. ``shrink=False`` reports the first
    failing sequence as found (shrinking 100-step sequences can take minutes)."""
    STEPS["count"] = 0
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]
    run_state_machine_as_test(
        EngineMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            derandomize=derandomize,
            phases=phases,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    return STEPS["count"]


def test_engine_invariants_hold_over_random_event_sequences():
    """A fixed set of sequences (the same in every CI run); bench/acd_fuzz.py runs fresh ones."""
    examples = int(os.environ.get("ACD_ENGINE_EXAMPLES", "600"))
    count = run(examples, derandomize=True, shrink=os.environ.get("ACD_ENGINE_SHRINK", "1") != "0")
    print(f"engine invariant steps: {count}")
    assert count >= 10_000, f"only {count} events were generated"
