"""The routing engine: every ACD decision, with no I/O and no clock of its own.

``Engine.handle(event, now)`` applies one event at engine time ``now`` and returns the
commands the shell must carry out, in order. The engine keeps calls, offers and agents;
the shell keeps channels, bridges and timers. Because nothing here awaits or reads a
clock, a test can replay any interleaving of answers, hangups and timers exactly.

Vocabulary:
- call: a customer waiting in a queue (``WAITING`` while no offer is live, ``OFFERING``
  while one is ringing or being confirmed, then ``CONNECTED``, then ``ENDED``).
- offer: one attempt to give a call to one agent (one agent leg). ``ring_all`` makes several
  offers for one call at once; every other strategy makes one at a time.
- eligible agent: available, reachable, idle (no offer, no call, no wrap-up, no delay, no
  agent leg still open). Only eligible agents sit in the per-queue selection sets.
- present member: available and reachable, busy or not: could be offered a call now or once
  free. A queue with none is "empty" (``join_empty``, ``leave_when_empty``).

The queue file can be swapped while calls go on (``SetupReloaded``), and what a restart would
lose about each agent is exposed as plain data (``agent_snapshot``) and put back at start
(``AgentStateRestored``); both are ordinary events, so they replay like any other.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import count
from typing import Any

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.commands import CancelReason, Command
from controller.acd.outcome import Outcome, classify_leg_end
from controller.acd.ranked import RandomSet, RankedSet
from controller.acd.setup import (
    INVITE_HEADERS,
    Acceptance,
    AcdSetup,
    AgentConfig,
    AgentStartState,
    QueueConfig,
    Strategy,
)


class CallState(StrEnum):
    WAITING = "waiting"
    OFFERING = "offering"
    CONNECTED = "connected"
    ENDED = "ended"


class CallOutcome(StrEnum):
    COMPLETED = "completed"  # was connected to an agent
    ABANDONED = "abandoned"  # caller hung up while waiting
    OVERFLOWED = "overflowed"  # left the queue: max_wait, join_empty, or unknown queue


class OfferState(StrEnum):
    RINGING = "ringing"
    CONFIRMING = "confirming"  # answered in confirm mode, waiting for the digit
    CONNECTING = "connecting"  # desktop mode: accepted on screen, the auto-answered leg is on its way
    CONNECTED = "connected"
    ENDED = "ended"


class Presence(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    PAUSED = "paused"
    NOT_RESPONDING = "not_responding"


LIVE_OFFER_STATES = (OfferState.RINGING, OfferState.CONFIRMING, OfferState.CONNECTING)


@dataclass(slots=True, eq=False)
class Call:
    id: str
    queue: str
    caller_number: str
    caller_name: str
    priority: int
    info: dict[str, str]
    arrived_at: float
    seq: int
    state: CallState = CallState.WAITING
    live_offers: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)  # agents offered this call in the current round
    history: list[tuple[str, str]] = field(default_factory=list)  # (agent_id, outcome) per ended offer
    offer_count: int = 0
    open_legs: int = 0  # agent legs of this call not yet reported gone
    connected_offer: str | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    outcome: CallOutcome | None = None
    hung_up_by: str | None = None

    @property
    def rank(self) -> tuple[int, float, int]:
        """Calls are served by priority (higher first), then arrival."""
        return (-self.priority, self.arrived_at, self.seq)


@dataclass(slots=True, eq=False)
class Offer:
    id: str
    call_id: str
    agent_id: str
    started_at: float
    ring_deadline: float
    state: OfferState = OfferState.RINGING
    acceptance: Acceptance = Acceptance.ANSWER  # the queue's mode when the offer was made
    leg_open: bool = True
    answered_at: float | None = None
    ended_at: float | None = None
    outcome: Outcome | None = None
    detail: str = ""
    cause: int | None = None
    tech_cause: int | None = None


@dataclass(slots=True, eq=False)
class Agent:
    id: str
    name: str
    endpoint: str
    order: int
    penalties: dict[str, int]  # queue -> penalty
    presence: Presence = Presence.AVAILABLE
    pause_reason: str = ""
    reachable: bool = True
    live_offer: str | None = None
    call: str | None = None  # connected call
    open_legs: int = 0
    in_wrapup: bool = False
    wrapup_until: float | None = None
    delayed: bool = False
    delay_until: float | None = None
    misses: int = 0
    calls_taken: int = 0
    idle_since: float = -math.inf
    last_offered: int = 0
    tried_calls: set[str] = field(default_factory=set)
    eligible: bool = False
    retired: bool = False  # removed from the queue file; goes once its call and legs are over

    @property
    def status(self) -> str:
        """One word for panels and logs."""
        if self.call is not None:
            return "talking"
        if self.live_offer is not None:
            return "ringing"
        if self.presence is not Presence.AVAILABLE:
            return self.presence.value
        if not self.reachable:
            return "unreachable"
        if self.in_wrapup:
            return "wrapup"
        if self.delayed or self.open_legs:
            return "delayed"
        return "ready"


class _Tier:
    """Eligible agents of one penalty level of one queue, ordered by the queue's strategy."""

    __slots__ = ("penalty", "members")

    def __init__(self, penalty: int, members: RankedSet[str] | RandomSet[str]) -> None:
        self.penalty = penalty
        self.members = members


class Engine:
    """Pure ACD state machine. See the module docstring."""

    def __init__(self, setup: AcdSetup, *, seed: int | None = None, recent_limit: int = 10_000) -> None:
        self.setup = setup
        self.rng = random.Random(seed)
        # Hot standby: offers of a later term get ids of their own ("<call>-t2.1"), so the store
        # never mixes an offer of this term with one of an earlier term of the same call.
        self.offer_prefix = ""
        self.calls: dict[str, Call] = {}
        self.offers: dict[str, Offer] = {}
        self.agents: dict[str, Agent] = {}
        # Timer ids are unique per start ("ring:c1-1#7"), so a callback of a cancelled timer
        # that the shell had already queued can never fire its successor.
        self.timers: dict[str, float] = {}  # live timer id -> deadline
        self._timer_ids: dict[str, str] = {}  # key ("ring:c1-1") -> live timer id
        self._timer_seq = count(1)
        self.stats: Counter[str] = Counter()
        self._by_endpoint: dict[str, str] = {}
        self._tiers: dict[str, list[_Tier]] = {}  # queue -> tiers by ascending penalty
        self._agent_tiers: dict[str, list[tuple[str, _Tier]]] = {}
        self._waiting: dict[str, RankedSet[str]] = {q: RankedSet() for q in setup.queues}
        # queue -> members who could be offered a call now (available and reachable): "empty" = 0
        self._present: Counter[str] = Counter()
        self._queues: dict[str, QueueConfig] = dict(setup.queues)  # + removed queues with live calls
        self._call_seq = count()
        self._offer_seq = count(1)
        self._recent: deque[str] = deque()  # ids of finished calls, to tell duplicates
        self._recent_set: set[str] = set()
        self._recent_limit = recent_limit
        self._out: list[Command] = []
        self._now = 0.0
        self._build(setup)

    # ------------------------------------------------------------------ setup

    def _build(self, setup: AcdSetup) -> None:
        for conf in setup.agents.values():
            self._add_agent(conf)
        self._build_tiers()
        for agent in self.agents.values():
            self._refresh(agent, dispatch=False)

    def _add_agent(self, conf: AgentConfig) -> Agent:
        presence = Presence.AVAILABLE if conf.state == AgentStartState.AVAILABLE else Presence.LOGGED_OUT
        penalties = {m.queue: m.penalty for m in conf.queues}
        order = max((a.order for a in self.agents.values()), default=-1) + 1
        agent = Agent(conf.id, conf.name, conf.endpoint, order, penalties, presence=presence)
        self.agents[conf.id] = agent
        self._by_endpoint[conf.endpoint] = conf.id
        if self._offerable(agent):
            for queue in penalties:
                self._present[queue] += 1
        return agent

    def _build_tiers(self) -> None:
        """(Re)build every queue's selection sets from the agents' memberships; nobody is in them
        afterwards (``agent.eligible`` is reset), so callers ``_refresh`` each agent next."""
        penalties_by_queue: dict[str, set[int]] = {q: set() for q in self.setup.queues}
        for agent in self.agents.values():
            for queue, penalty in agent.penalties.items():
                penalties_by_queue.setdefault(queue, set()).add(penalty)
        self._tiers = {}
        for queue, levels in penalties_by_queue.items():
            conf = self.setup.queues.get(queue)
            strategy = conf.strategy if conf is not None else Strategy.LINEAR
            self._tiers[queue] = [_Tier(p, self._new_members(strategy)) for p in sorted(levels)]
            self._waiting.setdefault(queue, RankedSet())
        self._agent_tiers = {}
        for agent in self.agents.values():
            agent.eligible = False
            self._agent_tiers[agent.id] = [
                (queue, next(t for t in self._tiers[queue] if t.penalty == penalty))
                for queue, penalty in agent.penalties.items()
            ]

    def _new_members(self, strategy: Strategy) -> RankedSet[str] | RandomSet[str]:
        return RandomSet(self.rng) if strategy is Strategy.RANDOM else RankedSet()

    # ------------------------------------------------------------------ entry point

    def handle(self, event: ev.Event, now: float) -> list[Command]:
        """Apply one event at time ``now``; return the commands to carry out, in order."""
        self._now = now
        self._out = []
        handler = self._handlers.get(type(event))
        if handler is None:
            self.stats["unknown_event_type"] += 1
        else:
            handler(self, event)
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ calls

    def _on_call_arrived(self, e: ev.CallArrived) -> None:
        if e.call_id in self.calls or e.call_id in self._recent_set:
            self.stats["duplicate_call"] += 1
            return
        now = self._now
        arrived = now if e.arrived_at is None else min(e.arrived_at, now)
        queue = self.setup.queues.get(e.queue)
        call = Call(
            e.call_id,
            e.queue,
            e.caller_number,
            e.caller_name,
            e.priority,
            dict(e.info),
            arrived,
            next(self._call_seq),
        )
        self._record(
            "call.queued",
            call,
            requeued=e.arrived_at is not None,
            arrived_at=arrived,
            caller_number=call.caller_number,
            caller_name=call.caller_name,
            priority=call.priority,
        )
        if queue is None:
            # Not ours to route: continue after Stasis() so the dialplan's fallback takes it.
            self.stats["unknown_queue"] += 1
            self.calls[call.id] = call
            self._finish_call(call, CallOutcome.OVERFLOWED, detail="unknown_queue")
            self._emit(cmd.Overflow(call.id, None))
            return
        self.calls[call.id] = call
        self._emit(cmd.ParkCaller(call.id, queue.hold))
        if not queue.join_empty and self._present[queue.name] == 0:
            self._overflow(call, detail="empty")
            return
        if queue.max_wait > 0:
            deadline = arrived + queue.max_wait
            if deadline <= now:
                self._overflow(call, detail="max_wait")
                return
            self._start_timer(f"maxwait:{call.id}", deadline)
        self._waiting[call.queue].add(call.id, call.rank)
        self._dispatch_call(call)

    def _on_call_restored(self, e: ev.CallRestored) -> None:
        agent = self.agents.get(e.agent_id)
        if (
            e.call_id in self.calls
            or e.call_id in self._recent_set
            or e.queue not in self.setup.queues
            or agent is None
            or agent.call is not None
            or agent.live_offer is not None
        ):
            self.stats["restore_refused"] += 1
            return
        now = self._now
        arrived = now if e.arrived_at is None else min(e.arrived_at, now)
        call = Call(e.call_id, e.queue, e.caller_number, e.caller_name, 0, {}, arrived, next(self._call_seq))
        call.offer_count = 1
        call.open_legs = 1
        offer = Offer(
            f"{call.id}-{self.offer_prefix}1", call.id, agent.id, now, now, state=OfferState.CONNECTED
        )
        offer.outcome, offer.answered_at = Outcome.ACCEPTED, now
        call.state, call.connected_offer, call.connected_at = CallState.CONNECTED, offer.id, now
        self.calls[call.id] = call
        self.offers[offer.id] = offer
        agent.call = call.id
        agent.open_legs += 1
        self._refresh(agent)
        self._record("call.restored", call, offer=offer.id, agent=agent.id, bridged=e.bridged)
        if not e.bridged:
            self._emit(cmd.Connect(call.id, offer.id, agent.id))

    def _on_caller_hung_up(self, e: ev.CallerHungUp) -> None:
        call = self.calls.get(e.call_id)
        if call is None or call.state is CallState.ENDED:
            self.stats["duplicate_or_unknown_call_event"] += 1
            return
        call.hung_up_by = "caller"
        if call.state is CallState.CONNECTED:
            offer = self.offers[call.connected_offer]  # type: ignore[index]
            self._emit(cmd.HangupAgent(offer.id, call.id, offer.agent_id))
            self._end_connected(call, offer)
            return
        self._cancel_live_offers(call, CancelReason.CALLER_GONE)
        self._finish_call(call, CallOutcome.ABANDONED)

    def _overflow(self, call: Call, detail: str) -> None:
        queue = self._queues[call.queue]
        self._cancel_live_offers(call, CancelReason.OVERFLOW)
        self._finish_call(call, CallOutcome.OVERFLOWED, detail=detail)
        if queue.overflow is not None:
            self._emit(cmd.Overflow(call.id, queue.overflow))
        else:
            self._emit(cmd.HangupCaller(call.id, "overflow"))

    def _finish_call(self, call: Call, outcome: CallOutcome, detail: str = "") -> None:
        call.state = CallState.ENDED
        call.outcome = outcome
        call.ended_at = self._now
        waiting = self._waiting.get(call.queue)
        if waiting is not None:
            waiting.discard(call.id)
        self._cancel_timer(f"maxwait:{call.id}")
        self._cancel_timer(f"retry:{call.id}")
        for agent_id in call.tried:
            agent = self.agents.get(agent_id)
            if agent is not None:
                agent.tried_calls.discard(call.id)
        call.tried.clear()
        answered = call.connected_at
        self._record(
            "call.ended",
            call,
            outcome=outcome.value,
            detail=detail,
            hung_up_by=call.hung_up_by,
            arrived_at=call.arrived_at,
            connected_at=answered,
            wait=(answered if answered is not None else self._now) - call.arrived_at,
            talk=self._now - answered if answered is not None else 0.0,
            agent=self.offers[call.connected_offer].agent_id if call.connected_offer else None,
        )
        self._forget_call_if_done(call)

    def _forget_call_if_done(self, call: Call) -> None:
        """Drop a finished call once its last agent leg is gone (memory stays bounded)."""
        if call.id in self.calls and call.state is CallState.ENDED and call.open_legs == 0:
            for offer_id in self._offers_of(call):
                self.offers.pop(offer_id, None)
            self.calls.pop(call.id, None)
            self._remember(call.id)

    def _offers_of(self, call: Call) -> Iterable[str]:
        return (f"{call.id}-{self.offer_prefix}{n}" for n in range(1, call.offer_count + 1))

    # ------------------------------------------------------------------ dispatch

    def _dispatch_call(self, call: Call) -> None:
        """Offer a waiting call to the best eligible agent(s) of its queue, best tier first.

        Agents already offered this call are passed over. When only they are eligible, the
        call starts a new round after the queue's ``retry`` pause (at once if it is 0), so a
        caller never waits forever beside idle agents, and an agent who just said no is not
        rung again for the same call the same instant.
        """
        if call.state is not CallState.WAITING:
            return
        if self._offer_best(call):
            return
        if call.tried and not self._retry_pending(call):
            retry = self._queues[call.queue].retry
            if retry <= 0:
                self._new_round(call)
                self._offer_best(call)
            else:
                self._start_timer(f"retry:{call.id}", self._now + retry)

    def _retry_pending(self, call: Call) -> bool:
        return f"retry:{call.id}" in self._timer_ids

    def _offer_best(self, call: Call) -> bool:
        queue = self._queues[call.queue]
        for tier in self._tiers.get(call.queue, ()):
            if queue.strategy is Strategy.RING_ALL:
                chosen = [a for a in tier.members if a not in call.tried]
                details = self._call_details(call)  # once for the whole tier
                for agent_id in chosen:
                    self._make_offer(call, self.agents[agent_id], queue, details)
                if chosen:
                    return True
            else:
                agent_id = tier.members.best(call.tried)
                if agent_id is not None:
                    self._make_offer(call, self.agents[agent_id], queue)
                    return True
        return False

    def _new_round(self, call: Call) -> None:
        for agent_id in call.tried:
            self.agents[agent_id].tried_calls.discard(call.id)
        call.tried.clear()
        self.stats["new_round"] += 1

    def _dispatch_agent(self, agent: Agent) -> None:
        """A newly eligible agent takes the best waiting call across its queues."""
        best: Call | None = None
        for queue in agent.penalties:
            waiting = self._waiting.get(queue)
            if not waiting:
                continue
            call_id = waiting.best(agent.tried_calls)
            if call_id is not None:
                call = self.calls[call_id]
                if best is None or call.rank < best.rank:
                    best = call
        if best is None:
            return
        queue = self._queues[best.queue]
        if queue.strategy is Strategy.RING_ALL:
            self._dispatch_call(best)  # ring everybody eligible, this agent included
        else:
            self._make_offer(best, agent, queue)

    def _make_offer(
        self, call: Call, agent: Agent, queue: QueueConfig, details: dict[str, Any] | None = None
    ) -> None:
        now = self._now
        call.offer_count += 1
        offer = Offer(
            f"{call.id}-{self.offer_prefix}{call.offer_count}",
            call.id,
            agent.id,
            now,
            now + queue.ring_timeout,
        )
        offer.leg_open = False
        offer.acceptance = queue.acceptance
        self.offers[offer.id] = offer
        call.live_offers.add(offer.id)
        call.tried.add(agent.id)
        call.state = CallState.OFFERING
        self._waiting[call.queue].discard(call.id)
        self._cancel_timer(f"retry:{call.id}")
        agent.tried_calls.add(call.id)
        agent.live_offer = offer.id
        agent.last_offered = next(self._offer_seq)
        self._refresh(agent)
        if queue.acceptance is not Acceptance.DESKTOP:  # desktop: the phone rings only after Accept
            self._ring(offer, call, agent, queue.ring_timeout + queue.dial_backstop, auto_answer=False)
        self._start_timer(f"ring:{offer.id}", offer.ring_deadline)
        details = (details or self._call_details(call)) | {
            "offer_id": offer.id,
            "ring_timeout": queue.ring_timeout,
            "expires_at": offer.ring_deadline,
            "acceptance": queue.acceptance.value,
        }
        self._emit(cmd.Notify(agent.id, "offer.created", details))
        self._record("offer.created", call, offer=offer.id, agent=agent.id)

    def _ring(self, offer: Offer, call: Call, agent: Agent, backstop: float, auto_answer: bool) -> None:
        """Open the offer's agent leg: the phone rings (or, desktop mode, answers by itself)."""
        offer.leg_open = True
        call.open_legs += 1
        agent.open_legs += 1
        wait = int(self._now - call.arrived_at)
        who = call.caller_name or call.caller_number or "unknown"
        self._emit(
            cmd.RingAgent(
                offer_id=offer.id,
                call_id=call.id,
                agent_id=agent.id,
                endpoint=agent.endpoint,
                display_name=f"[{call.queue} {wait // 60}:{wait % 60:02d}] {who}",
                display_number=call.caller_number,
                headers=self._invite_headers(call, offer, wait),
                dial_timeout=math.ceil(backstop),
                auto_answer=auto_answer,
            )
        )

    def _invite_headers(self, call: Call, offer: Offer, wait: int) -> dict[str, str]:
        """The X-Acd-* headers the queue puts on the INVITE (``invite_headers``)."""
        queue = self.setup.queues.get(call.queue)
        keys = queue.invite_headers if queue is not None else tuple(INVITE_HEADERS)
        values = {
            "queue": call.queue,
            "call_id": call.id,
            "offer_id": offer.id,
            "caller": call.caller_number,
            "wait": str(wait),
        }
        return {INVITE_HEADERS[k]: values[k] for k in keys}

    def _call_details(self, call: Call) -> dict[str, Any]:
        return {
            "call_id": call.id,
            "queue": call.queue,
            "caller_number": call.caller_number,
            "caller_name": call.caller_name,
            "priority": call.priority,
            "arrived_at": call.arrived_at,
            "waiting": self._now - call.arrived_at,
            "info": dict(call.info),
            "previous_offers": [{"agent": a, "outcome": o} for a, o in call.history],
        }

    # ------------------------------------------------------------------ offers

    def _on_leg_answered(self, e: ev.AgentLegAnswered) -> None:
        offer = self.offers.get(e.offer_id)
        if offer is None:
            self.stats["unknown_offer_event"] += 1
            return
        if offer.state is OfferState.ENDED:
            # The answer lost the race against a timeout/cancel: never connect it.
            self.stats["late_answer"] += 1
            if offer.leg_open:
                self._emit(cmd.CancelOffer(offer.id, offer.call_id, offer.agent_id, CancelReason.STALE))
            return
        if offer.state is OfferState.CONNECTING:
            self._accept(offer, self.calls[offer.call_id])  # the auto-answered phone is up
            return
        if offer.state is not OfferState.RINGING:
            self.stats["duplicate_answer"] += 1
            return
        offer.answered_at = self._now
        self._cancel_timer(f"ring:{offer.id}")
        call = self.calls[offer.call_id]
        queue = self._queues[call.queue]
        if offer.acceptance is Acceptance.CONFIRM:
            offer.state = OfferState.CONFIRMING
            self._start_timer(f"confirm:{offer.id}", self._now + queue.confirm_timeout)
            wait = int(self._now - call.arrived_at)
            self._emit(cmd.PlayConfirmPrompt(offer.id, call.id, call.queue, call.caller_number, wait))
            self._record("offer.answered", call, offer=offer.id, agent=offer.agent_id)
        else:
            self._accept(offer, call)

    def _accept(self, offer: Offer, call: Call) -> None:
        now = self._now
        agent = self.agents[offer.agent_id]
        self._cancel_timer(f"confirm:{offer.id}")
        self._cancel_timer(f"connect:{offer.id}")
        call.live_offers.discard(offer.id)
        offer.state = OfferState.CONNECTED
        offer.outcome = Outcome.ACCEPTED
        if offer.answered_at is None:
            offer.answered_at = now
        call.state = CallState.CONNECTED
        call.connected_offer = offer.id
        call.connected_at = now
        self._cancel_timer(f"maxwait:{call.id}")
        agent.live_offer = None
        agent.call = call.id
        agent.calls_taken += 1
        if agent.misses:
            agent.misses = 0
            self._agent_state(agent, "misses_reset")
        self._emit(cmd.Connect(call.id, offer.id, agent.id))
        self._cancel_live_offers(call, CancelReason.ANSWERED_ELSEWHERE)
        self._emit(cmd.Notify(agent.id, "offer.accepted", self._call_details(call) | {"offer_id": offer.id}))
        self._record_offer_end(offer, call)
        self._record("call.connected", call, offer=offer.id, agent=agent.id, wait=now - call.arrived_at)

    def _on_leg_ended(self, e: ev.AgentLegEnded) -> None:
        offer = self.offers.get(e.offer_id)
        if offer is None or not offer.leg_open:
            self.stats["unknown_offer_event"] += 1
            return
        offer.leg_open = False
        offer.cause, offer.tech_cause = e.cause, e.tech_cause
        agent = self.agents[offer.agent_id]
        agent.open_legs -= 1
        call = self.calls[offer.call_id]
        call.open_legs -= 1
        if offer.state in LIVE_OFFER_STATES:
            if e.lost:
                outcome, detail = Outcome.CANCELED, "lost"  # cause unknown: nobody's fault
            elif e.not_stored:
                outcome, detail = Outcome.CANCELED, "not_stored"  # never rang: nobody's fault
            elif offer.state is OfferState.CONFIRMING:
                outcome, detail = Outcome.REJECTED, "hung_up_in_confirm"
            elif offer.state is OfferState.CONNECTING:
                outcome, detail = Outcome.NO_ANSWER, "auto_answer_failed"
            else:
                outcome, detail = classify_leg_end(
                    e.cause, e.tech_cause, dial_timeout=e.dial_timeout, allocation_failed=e.allocation_failed
                )
            self._end_offer(offer, outcome, detail, cancel=None)
            self._redispatch(call)
        elif offer.state is OfferState.CONNECTED:
            call.hung_up_by = "agent"
            self._emit(cmd.HangupCaller(call.id, "normal"))
            self._end_connected(call, offer)
        else:
            self._refresh(agent)
        self._forget_call_if_done(call)

    def _end_connected(self, call: Call, offer: Offer) -> None:
        agent = self.agents[offer.agent_id]
        offer.state = OfferState.ENDED
        offer.ended_at = self._now
        agent.call = None
        agent.idle_since = self._now
        wrapup = self._queues[call.queue].wrapup
        if wrapup > 0:
            agent.in_wrapup = True
            agent.wrapup_until = self._now + wrapup
            self._start_timer(f"wrapup:{agent.id}", agent.wrapup_until)
        self._finish_call(call, CallOutcome.COMPLETED)
        self._agent_state(agent, "call_ended")
        self._refresh(agent)

    def _end_offer(self, offer: Offer, outcome: Outcome, detail: str, cancel: CancelReason | None) -> None:
        """Close a live offer with its outcome, penalise the agent as the outcome says."""
        call = self.calls[offer.call_id]
        agent = self.agents[offer.agent_id]
        offer.state = OfferState.ENDED
        offer.outcome = outcome
        offer.detail = detail
        offer.ended_at = self._now
        call.live_offers.discard(offer.id)
        call.history.append((agent.id, outcome.value))
        agent.live_offer = None
        self._cancel_timer(f"ring:{offer.id}")
        self._cancel_timer(f"confirm:{offer.id}")
        self._cancel_timer(f"connect:{offer.id}")
        if cancel is not None and offer.leg_open:
            self._emit(cmd.CancelOffer(offer.id, call.id, agent.id, cancel))
        queue = self._queues[call.queue]
        delay = {
            Outcome.REJECTED: queue.reject_delay,
            Outcome.BUSY: queue.busy_delay,
            Outcome.NO_ANSWER: queue.no_answer_delay,
            Outcome.UNREACHABLE: queue.unreachable_delay,
        }.get(outcome, 0.0)
        if delay > 0:
            until = self._now + delay
            if agent.delay_until is None or until > agent.delay_until:
                agent.delayed = True
                agent.delay_until = until
                self._start_timer(f"delay:{agent.id}", until)
        if outcome is Outcome.NO_ANSWER:
            agent.misses += 1
            limit = queue.max_no_answer
            if limit and agent.misses >= limit and agent.presence is Presence.AVAILABLE:
                reason = f"{agent.misses} offers not answered"
                self._set_presence(agent, Presence.NOT_RESPONDING, reason=reason)
            else:
                self._agent_state(agent, "missed")  # the count survives a restart
        elif outcome is Outcome.REJECTED and agent.misses:
            agent.misses = 0  # an explicit answer proves the agent is there
            self._agent_state(agent, "misses_reset")
        kind = {
            Outcome.REJECTED: "offer.rejected",
            Outcome.NO_ANSWER: "offer.timeout",
            Outcome.CANCELED: "offer.canceled",
        }.get(outcome, "offer.failed")
        data = {"offer_id": offer.id, "call_id": call.id, "outcome": outcome.value, "detail": detail}
        self._emit(cmd.Notify(agent.id, kind, data))
        self._record_offer_end(offer, call)
        self._refresh(agent)

    def _record_offer_end(self, offer: Offer, call: Call) -> None:
        self._record(
            "offer.ended",
            call,
            offer=offer.id,
            agent=offer.agent_id,
            outcome=offer.outcome.value if offer.outcome else None,
            detail=offer.detail,
            cause=offer.cause,
            tech_cause=offer.tech_cause,
            started_at=offer.started_at,
            answered_at=offer.answered_at,
            ring_time=(offer.answered_at or self._now) - offer.started_at,
        )

    def _cancel_live_offers(self, call: Call, reason: CancelReason) -> None:
        for offer_id in sorted(call.live_offers):
            self._end_offer(self.offers[offer_id], Outcome.CANCELED, reason.value, cancel=reason)

    def _redispatch(self, call: Call) -> None:
        if call.state is CallState.OFFERING and not call.live_offers:
            call.state = CallState.WAITING
            self._waiting[call.queue].add(call.id, call.rank)
            self._leave_if_empty(call.queue)  # e.g. the agent who let it ring became not responding
            if call.state is CallState.WAITING:
                self._dispatch_call(call)

    def _on_confirm_digit(self, e: ev.ConfirmDigit) -> None:
        offer = self.offers.get(e.offer_id)
        if offer is None or offer.state is not OfferState.CONFIRMING:
            self.stats["stale_digit"] += 1
            return
        call = self.calls[offer.call_id]
        if e.digit == "1":
            self._accept(offer, call)
        elif e.digit == "2":
            self._end_offer(offer, Outcome.REJECTED, "digit_2", cancel=CancelReason.REJECTED)
            self._redispatch(call)
        else:
            self.stats["ignored_digit"] += 1

    def _on_offer_rejected(self, e: ev.OfferRejected) -> None:
        offer = self.offers.get(e.offer_id)
        if offer is None or offer.agent_id != e.agent_id or offer.state not in LIVE_OFFER_STATES:
            self.stats["stale_panel_action"] += 1
            return
        self._end_offer(offer, Outcome.REJECTED, "panel", cancel=CancelReason.REJECTED)
        self._redispatch(self.calls[offer.call_id])

    def _on_offer_accepted(self, e: ev.OfferAccepted) -> None:
        offer = self.offers.get(e.offer_id)
        if offer is None or offer.agent_id != e.agent_id or offer.state not in LIVE_OFFER_STATES:
            self.stats["stale_panel_action"] += 1
            return
        call = self.calls[offer.call_id]
        queue = self._queues[call.queue]
        if offer.state is OfferState.CONFIRMING:
            self._accept(offer, call)  # the click stands in for the digit 1
        elif offer.state is OfferState.RINGING and offer.acceptance is Acceptance.DESKTOP:
            # Now call the agent's phone, asking it to pick up by itself; connect when it does.
            offer.state = OfferState.CONNECTING
            offer.answered_at = self._now
            self._cancel_timer(f"ring:{offer.id}")
            self._ring(
                offer,
                call,
                self.agents[offer.agent_id],
                queue.connect_timeout + queue.dial_backstop,
                auto_answer=True,
            )
            self._start_timer(f"connect:{offer.id}", self._now + queue.connect_timeout)
            self._record("offer.answered", call, offer=offer.id, agent=offer.agent_id, on="desktop")
        else:
            # answer/confirm modes: the phone is the accept; a click cannot connect a leg
            # that has not been answered. Anything else: the offer is no longer available.
            self.stats["stale_panel_action"] += 1

    # ------------------------------------------------------------------ timers

    def _on_timer(self, e: ev.TimerFired) -> None:
        if self.timers.pop(e.timer_id, None) is None:
            self.stats["stale_timer"] += 1  # cancelled, but the shell's callback was already queued
            return
        key = e.timer_id.rpartition("#")[0]
        del self._timer_ids[key]
        kind, _, ref = key.partition(":")
        if kind == "ring":
            offer = self.offers[ref]
            self._end_offer(offer, Outcome.NO_ANSWER, "ring_timeout", cancel=CancelReason.TIMED_OUT)
            self._redispatch(self.calls[offer.call_id])
        elif kind == "confirm":
            offer = self.offers[ref]
            self._end_offer(offer, Outcome.NO_ANSWER, "no_digit", cancel=CancelReason.TIMED_OUT)
            self._redispatch(self.calls[offer.call_id])
        elif kind == "connect":
            offer = self.offers[ref]
            self._end_offer(offer, Outcome.NO_ANSWER, "auto_answer_timeout", cancel=CancelReason.TIMED_OUT)
            self._redispatch(self.calls[offer.call_id])
        elif kind == "maxwait":
            self._overflow(self.calls[ref], detail="max_wait")
        elif kind == "retry":
            call = self.calls[ref]
            self._new_round(call)
            self._dispatch_call(call)
        elif kind == "wrapup":
            agent = self.agents[ref]
            agent.in_wrapup = False
            agent.wrapup_until = None
            self._agent_state(agent, "wrapup_ended")
            self._refresh(agent)
        elif kind == "delay":
            agent = self.agents[ref]
            agent.delayed = False
            agent.delay_until = None
            self._refresh(agent)

    def _start_timer(self, key: str, at: float) -> None:
        self._cancel_timer(key)
        timer_id = f"{key}#{next(self._timer_seq)}"
        self._timer_ids[key] = timer_id
        self.timers[timer_id] = at
        self._emit(cmd.StartTimer(timer_id, at))

    def _cancel_timer(self, key: str) -> None:
        timer_id = self._timer_ids.pop(key, None)
        if timer_id is not None:
            del self.timers[timer_id]
            self._emit(cmd.CancelTimer(timer_id))

    # ------------------------------------------------------------------ agents

    def _agent(self, agent_id: str) -> Agent | None:
        agent = self.agents.get(agent_id)
        if agent is None:
            self.stats["unknown_agent"] += 1
        return agent

    def _on_login(self, e: ev.AgentLogin) -> None:
        agent = self._agent(e.agent_id)
        if agent is not None and agent.presence is Presence.LOGGED_OUT:
            agent.misses = 0
            self._set_presence(agent, Presence.AVAILABLE, by=e.by)

    def _on_ready(self, e: ev.AgentReady) -> None:
        agent = self._agent(e.agent_id)
        if agent is not None and agent.presence is not Presence.AVAILABLE:
            agent.misses = 0
            self._set_presence(agent, Presence.AVAILABLE, by=e.by)

    def _on_logout(self, e: ev.AgentLogout) -> None:
        agent = self._agent(e.agent_id)
        if agent is not None and agent.presence is not Presence.LOGGED_OUT:
            self._set_presence(agent, Presence.LOGGED_OUT, by=e.by)

    def _on_pause(self, e: ev.AgentPause) -> None:
        agent = self._agent(e.agent_id)
        if agent is not None and agent.presence is not Presence.LOGGED_OUT:
            self._set_presence(agent, Presence.PAUSED, reason=e.reason, by=e.by)

    def _on_endpoint(self, e: ev.EndpointState) -> None:
        agent_id = self._by_endpoint.get(e.endpoint)
        if agent_id is None:
            self.stats["unknown_endpoint"] += 1
            return
        agent = self.agents[agent_id]
        if agent.reachable == e.reachable:
            return
        before = self._offerable(agent)
        agent.reachable = e.reachable
        self._agent_state(agent, "endpoint_online" if e.reachable else "endpoint_offline")
        offer = self.offers.get(agent.live_offer) if agent.live_offer else None
        if offer is not None and not e.reachable and offer.state is OfferState.RINGING:
            reason = CancelReason.AGENT_UNAVAILABLE
            self._end_offer(offer, Outcome.UNREACHABLE, "endpoint_offline", cancel=reason)
            self._redispatch(self.calls[offer.call_id])
        self._refresh(agent)
        self._count_presence(agent, before)

    def _set_presence(self, agent: Agent, presence: Presence, reason: str = "", by: str = "") -> None:
        before = self._offerable(agent)
        agent.presence = presence
        agent.pause_reason = reason
        self._agent_state(agent, reason or presence.value, by)
        # An agent who stops taking calls must not keep ringing for one.
        offer = self.offers.get(agent.live_offer) if agent.live_offer else None
        if offer is not None and presence in (Presence.LOGGED_OUT, Presence.PAUSED):
            reason_ = CancelReason.AGENT_UNAVAILABLE
            self._end_offer(offer, Outcome.CANCELED, "agent_" + presence.value, cancel=reason_)
            self._redispatch(self.calls[offer.call_id])
        self._refresh(agent)
        self._count_presence(agent, before)

    @staticmethod
    def _offerable(agent: Agent) -> bool:
        """Could be offered a call of its queues (now or once its current call ends)."""
        return agent.presence is Presence.AVAILABLE and agent.reachable

    def _count_presence(self, agent: Agent, before: bool) -> None:
        """Keep ``_present`` in step; a queue left with nobody may send its callers on."""
        after = self._offerable(agent)
        if before == after:
            return
        for queue in agent.penalties:
            self._present[queue] += 1 if after else -1
        if not after:
            for queue in agent.penalties:
                self._leave_if_empty(queue)

    def _leave_if_empty(self, queue_name: str) -> None:
        """``leave_when_empty``: waiting callers of a queue nobody can take calls in overflow
        (like Asterisk's ``leavewhenempty``; off by default, as there)."""
        queue = self.setup.queues.get(queue_name)
        if queue is None or not queue.leave_when_empty or self._present[queue_name] > 0:
            return
        waiting = self._waiting.get(queue_name)
        for call_id in list(waiting or ()):
            self._overflow(self.calls[call_id], detail="empty")

    def _on_agent_restored(self, e: ev.AgentStateRestored) -> None:
        """Put back what a restart would lose (see ``agent_snapshot``); before any call arrives."""
        agent = self._agent(e.agent_id)
        if agent is None:
            return
        try:
            presence = Presence(e.presence)
        except ValueError:
            self.stats["restore_refused"] += 1
            return
        if agent.live_offer is not None or agent.call is not None or agent.open_legs:
            self.stats["restore_refused"] += 1  # only meant for the start, before any call
            return
        before = self._offerable(agent)
        agent.presence = presence
        agent.pause_reason = e.pause_reason if presence is not Presence.AVAILABLE else ""
        agent.misses = max(0, e.misses)
        if e.wrapup_until is not None and e.wrapup_until > self._now and agent.call is None:
            agent.in_wrapup = True
            agent.wrapup_until = e.wrapup_until
            self._start_timer(f"wrapup:{agent.id}", e.wrapup_until)
        self._agent_state(agent, "restored")
        self._refresh(agent)
        self._count_presence(agent, before)

    def agent_snapshot(self, agent_id: str) -> dict[str, Any]:
        """What survives a restart, as plain data (times are engine times)."""
        agent = self.agents[agent_id]
        return {
            "agent": agent.id,
            "presence": agent.presence.value,
            "pause_reason": agent.pause_reason,
            "misses": agent.misses,
            "wrapup_until": agent.wrapup_until if agent.in_wrapup else None,
        }

    def _agent_state(self, agent: Agent, reason: str, by: str = "") -> None:
        data: dict[str, Any] = {
            "agent": agent.id,
            "state": agent.status,
            "presence": agent.presence.value,
            "reason": reason,
            "misses": agent.misses,
            "pause_reason": agent.pause_reason,
            "wrapup_until": agent.wrapup_until if agent.in_wrapup else None,
        }
        if by:  # an action from the API: who did it goes to the history with the change
            data["by"] = by
        self._emit(cmd.Notify(agent.id, "agent.state", data))
        self._emit(cmd.Record("agent.state", data | {"at": self._now}))

    # ------------------------------------------------------------------ reload

    def _on_reload(self, e: ev.SetupReloaded) -> None:
        """Swap in a new queue file's setup without dropping anybody.

        Changed queue settings apply from the next offer, wrap-up or timer on. New agents start
        in their configured state. A removed agent's live offer is cancelled at once (the caller
        goes to the next agent); a call it is connected to ends normally, then the agent goes.
        Callers waiting in a removed queue continue in the dialplan after ``Stasis()``, exactly
        like a caller who arrives for an unknown queue (the dialplan's fallback takes them);
        connected calls of a removed queue keep its settings until they end.
        """
        new = e.setup
        self.setup = new
        self._queues.update(new.queues)
        for name in new.queues:
            self._waiting.setdefault(name, RankedSet())
        retiring: list[Agent] = []
        for agent in list(self.agents.values()):
            conf = new.agents.get(agent.id)
            if conf is None:
                if not agent.retired:
                    agent.retired = True
                    agent.penalties = {}
                    retiring.append(agent)
                continue
            agent.retired = False
            agent.name = conf.name
            agent.penalties = {m.queue: m.penalty for m in conf.queues}
            if conf.endpoint != agent.endpoint:
                if self._by_endpoint.get(agent.endpoint) == agent.id:
                    del self._by_endpoint[agent.endpoint]
                agent.endpoint = conf.endpoint
            self._by_endpoint[conf.endpoint] = agent.id
        for conf in new.agents.values():
            if conf.id not in self.agents:
                self._add_agent(conf)
        for order, conf in enumerate(new.agents.values()):  # file order, for "linear"
            self.agents[conf.id].order = order
        self._build_tiers()
        self._present = Counter(q for a in self.agents.values() if self._offerable(a) for q in a.penalties)
        for agent in self.agents.values():
            if not agent.retired:
                self._refresh(agent, dispatch=False)
        for name in [q for q in self._waiting if q not in new.queues]:
            for call in [c for c in self.calls.values() if c.queue == name]:
                if call.state in (CallState.WAITING, CallState.OFFERING):
                    self._cancel_live_offers(call, CancelReason.OVERFLOW)
                    self._finish_call(call, CallOutcome.OVERFLOWED, detail="queue_removed")
                    self._emit(cmd.Overflow(call.id, None))
            del self._waiting[name]
        for agent in retiring:
            offer = self.offers.get(agent.live_offer) if agent.live_offer else None
            if offer is not None:
                reason = CancelReason.AGENT_UNAVAILABLE
                self._end_offer(offer, Outcome.CANCELED, "agent_removed", cancel=reason)
                self._redispatch(self.calls[offer.call_id])
            self._refresh(agent)
        live = {c.queue for c in self.calls.values() if c.state is not CallState.ENDED}
        self._queues = {n: q for n, q in self._queues.items() if n in new.queues or n in live}
        for name in new.queues:  # new members and settings may serve callers already waiting
            waiting = self._waiting[name]
            for call_id in list(waiting):
                call = self.calls.get(call_id)
                if call is not None:
                    self._dispatch_call(call)
            self._leave_if_empty(name)

    def _drop_agent(self, agent: Agent) -> None:
        """Forget a removed agent once nothing of it is live any more."""
        self._cancel_timer(f"wrapup:{agent.id}")
        self._cancel_timer(f"delay:{agent.id}")
        for call_id in agent.tried_calls:
            call = self.calls.get(call_id)
            if call is not None:
                call.tried.discard(agent.id)
        del self.agents[agent.id]
        self._agent_tiers.pop(agent.id, None)
        if self._by_endpoint.get(agent.endpoint) == agent.id:
            del self._by_endpoint[agent.endpoint]

    def _refresh(self, agent: Agent, dispatch: bool = True) -> None:
        """Keep the selection sets in step with the agent's eligibility."""
        if agent.retired:
            idle = agent.call is None and agent.live_offer is None and agent.open_legs == 0
            if idle and self.agents.get(agent.id) is agent:
                self._drop_agent(agent)
            return
        eligible = (
            agent.presence is Presence.AVAILABLE
            and agent.reachable
            and agent.live_offer is None
            and agent.call is None
            and agent.open_legs == 0
            and not agent.in_wrapup
            and not agent.delayed
        )
        if eligible == agent.eligible:
            return
        agent.eligible = eligible
        for queue, tier in self._agent_tiers[agent.id]:
            if eligible:
                tier.members.add(agent.id, self._agent_key(agent, queue))
            else:
                tier.members.discard(agent.id)
        if eligible and dispatch:
            self._dispatch_agent(agent)

    def _agent_key(self, agent: Agent, queue: str) -> tuple[Any, ...]:
        strategy = self._queues[queue].strategy
        if strategy is Strategy.LONGEST_IDLE:
            return (agent.idle_since, agent.order)
        if strategy is Strategy.FEWEST_CALLS:
            return (agent.calls_taken, agent.idle_since, agent.order)
        if strategy is Strategy.ROUND_ROBIN:
            return (agent.last_offered, agent.order)
        return (agent.order,)  # linear, ring_all (and ignored by random)

    # ------------------------------------------------------------------ helpers

    def _emit(self, command: Command) -> None:
        self._out.append(command)

    def _record(self, kind: str, call: Call, **data: Any) -> None:
        self._emit(cmd.Record(kind, {"call": call.id, "queue": call.queue, "at": self._now, **data}))

    def _remember(self, ident: str) -> None:
        self._recent.append(ident)
        self._recent_set.add(ident)
        if len(self._recent) > self._recent_limit:
            self._recent_set.discard(self._recent.popleft())

    _handlers: dict[type, Callable[[Engine, Any], None]] = {
        ev.CallArrived: _on_call_arrived,
        ev.CallerHungUp: _on_caller_hung_up,
        ev.AgentLegAnswered: _on_leg_answered,
        ev.AgentLegEnded: _on_leg_ended,
        ev.OfferAccepted: _on_offer_accepted,
        ev.OfferRejected: _on_offer_rejected,
        ev.ConfirmDigit: _on_confirm_digit,
        ev.TimerFired: _on_timer,
        ev.AgentLogin: _on_login,
        ev.AgentLogout: _on_logout,
        ev.AgentPause: _on_pause,
        ev.AgentReady: _on_ready,
        ev.EndpointState: _on_endpoint,
        ev.CallRestored: _on_call_restored,
        ev.AgentStateRestored: _on_agent_restored,
        ev.SetupReloaded: _on_reload,
    }
