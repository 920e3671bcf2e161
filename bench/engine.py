"""Engine benchmark: the cost of one ``Engine.handle()`` call under contact-center load.

Requirement: choosing an agent must not scan all agents. With 10,000 agents and 1,000 waiting
calls, median ``handle()`` <= 50 µs and p99 <= 200 µs; show how the cost grows from 100 to
10,000 agents.

What is measured (each ``handle()`` timed alone with ``perf_counter_ns``; the driver's own
bookkeeping, i.e. the simulated shell, phones and callers, is outside the timed region):

1. Mixed stream, per size (100, 1,000, 10,000 agents): 10 queues with mixed strategies
   (longest_idle, round_robin, fewest_calls, linear, random; two queues in confirm mode), each
   agent in 1-3 queues with penalty 0/1. Arrivals are paced to hold ~1,000 calls waiting, so
   nearly every agent is busy. The stream holds arrivals, answers, confirm digits, declines
   (21/603), panel rejects, busy (17/486), ring time-outs, caller hang-ups while waiting and
   while connected, agent hang-ups, agent legs ending after the engine hung them up, wrap-up,
   retry, delay and max-wait timers, pause/ready, logout/login, agents marked not responding.
2. The two selection paths alone: "call arrives, an agent is free" (half the agents talking,
   nobody waiting) and "agent becomes free (wrap-up ends), 1,000 calls waiting".
3. ``ring_all``, which rings a whole tier by design, with small tiers (10 and 50 agents).

Deterministic: the event stream depends only on ``--seed`` (timings of course vary).
Run: ``.venv/bin/python bench/engine.py [--quick] [--json]`` or ``make bench ARGS=engine``.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import math
import os
import platform
import random
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import CallState, Engine
from controller.acd.setup import (
    Acceptance,
    AcdSetup,
    AgentConfig,
    DialplanTarget,
    HoldMode,
    Membership,
    QueueConfig,
    Strategy,
)

perf_ns = time.perf_counter_ns

TARGET_AGENTS = 10_000
TARGET_WAITING = 1_000
TARGET_MEDIAN_US = 50.0
TARGET_P99_US = 200.0

TALK_MEAN = 180.0  # seconds
N_QUEUES = 10
STRATEGIES = (
    Strategy.LONGEST_IDLE,
    Strategy.ROUND_ROBIN,
    Strategy.FEWEST_CALLS,
    Strategy.LINEAR,
    Strategy.RANDOM,
    Strategy.LONGEST_IDLE,
    Strategy.ROUND_ROBIN,
    Strategy.FEWEST_CALLS,
    Strategy.LONGEST_IDLE,
    Strategy.RANDOM,
)
CONFIRM_QUEUES = {2, 6}
MAX_WAIT_QUEUES = {1, 5}  # these overflow after 4x the expected wait
NAMES = ("Maria", "Jean", "Ana", "Li", "Omar", "", "Sofia", "Piet")


@dataclass(frozen=True)
class Params:
    sizes: tuple[int, ...]
    waiting: int
    warmup: int  # events after the queue has filled, not measured
    events: int  # measured events per size (mixed stream)
    path_events: int  # measured events per size and selection path
    ring_all_tiers: tuple[int, ...]
    ring_all_rounds: int
    seed: int


FULL = Params((100, 1_000, 10_000), TARGET_WAITING, 10_000, 60_000, 20_000, (10, 50), 2_000, 1)
QUICK = Params((100, 1_000), 200, 1_000, 5_000, 2_000, (10,), 200, 1)


# ---------------------------------------------------------------------------- setup


def build_setup(n_agents: int, rng: random.Random, max_wait: float = 0.0) -> AcdSetup:
    queues: dict[str, QueueConfig] = {}
    for i in range(N_QUEUES):
        name = f"q{i}"
        queues[name] = QueueConfig(
            name,
            strategy=STRATEGIES[i % len(STRATEGIES)],
            ring_timeout=15.0,
            acceptance=Acceptance.CONFIRM if i in CONFIRM_QUEUES else Acceptance.ANSWER,
            hold=HoldMode.RING if i % 4 == 3 else HoldMode.MOH,
            wrapup=5.0 + i,  # 5..14 s
            max_wait=max_wait if i in MAX_WAIT_QUEUES else 0.0,
            overflow=DialplanTarget("overflow", "s") if i == 1 else None,
        )
    names = list(queues)
    agents: dict[str, AgentConfig] = {}
    for k in range(n_agents):
        picked = rng.sample(names, rng.choice((1, 2, 2, 3)))
        members = tuple(Membership(q, 0 if j == 0 or rng.random() < 0.3 else 1) for j, q in enumerate(picked))
        agent_id = f"a{k:05d}"
        agents[agent_id] = AgentConfig(agent_id, f"Agent {k}", f"PJSIP/{agent_id}", members)
    return AcdSetup(queues=queues, agents=agents)


# ---------------------------------------------------------------------------- statistics


def percentile(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile, in µs."""
    if not sorted_ns:
        return math.nan
    i = min(len(sorted_ns) - 1, max(0, math.ceil(q * len(sorted_ns)) - 1))
    return sorted_ns[i] / 1000.0


def summarize(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    total = sum(s)
    return {
        "events": len(s),
        "median_us": percentile(s, 0.5),
        "p90_us": percentile(s, 0.9),
        "p99_us": percentile(s, 0.99),
        "p999_us": percentile(s, 0.999),
        "max_us": s[-1] / 1000.0 if s else math.nan,
        "mean_us": total / len(s) / 1000.0 if s else math.nan,
        "events_per_s": len(s) / (total / 1e9) if total else math.nan,
    }


# ---------------------------------------------------------------------------- mixed stream


def _ignore(_: Any) -> None:
    pass


# Scheduled happenings of the simulated world (heap entries: at, seq, kind, a, b).
(
    ARRIVAL_TICK,  # the arrival process: next customer
    PRESENCE_TICK,  # the pause/logout process: next agent stepping away
    TIMER,  # an engine timer is due
    ANSWER,
    DIGIT,
    DECLINE,
    PANEL_REJECT,
    BUSY,
    LEG_GONE,  # an agent leg the engine hung up is gone
    ABANDON,  # customer gives up while waiting (or while an agent rings)
    CALLER_BYE,  # customer ends a connected call
    AGENT_BYE,  # agent ends a connected call
    READY,
    LOGIN,
) = range(14)

RINGING, CONFIRMING, CONNECTED = 0, 1, 2
QUEUED = 0


class Sim:
    """Plays the shell, Asterisk, the agents' phones and the callers around one Engine.

    A discrete-event simulation with a virtual clock: engine timers and the world's reactions
    (answer after a few seconds, talk time, caller patience...) sit in one heap.
    """

    def __init__(self, n_agents: int, target_waiting: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.target = target_waiting
        # calls per second the agents can take: talk + wrap-up (~9.5 s) + ringing (~5 s)
        self.throughput = n_agents / (TALK_MEAN + 9.5 + 5.0)
        self.expected_wait = max(1.0, target_waiting / self.throughput)
        self.patience = 2.5 * self.expected_wait  # mean
        self.setup = build_setup(n_agents, self.rng, max_wait=4 * self.expected_wait)
        self.engine = Engine(self.setup, seed=seed)
        self.handle = self.engine.handle
        self.queue_names = list(self.setup.queues)
        self.agent_ids = list(self.setup.agents)
        self.now = 0.0
        self.heap: list[tuple[float, int, int, Any, Any]] = []
        self.seq = count()
        self.timers: dict[str, float] = {}
        self.offers: dict[str, list[Any]] = {}  # offer id -> [state, call id, agent id]
        self.calls: dict[str, int] = {}  # call id -> QUEUED | CONNECTED (gone: absent)
        self.queued = 0  # calls not connected yet: waiting in line or being offered
        self.live = 0  # offers ringing or being confirmed (one per offered call: no ring_all here)
        self.away: set[str] = set()  # agents with a pending ready/login
        self.call_seq = count(1)
        self.measuring = False
        self.samples: list[int] = []
        self.labels: list[str] = []
        self.line_sum = 0
        self.live_sum = 0
        self.fingerprint = 0  # of the event stream: labels and command counts
        self.label_codes: dict[str, int] = {}
        self.n_events = 0
        self.on_command: dict[type, Callable[[Any], None]] = {
            cmd.StartTimer: self._c_start_timer,
            cmd.CancelTimer: self._c_cancel_timer,
            cmd.RingAgent: self._c_ring,
            cmd.PlayConfirmPrompt: self._c_confirm_prompt,
            cmd.Connect: self._c_connect,
            cmd.CancelOffer: self._c_leg_hung_up,
            cmd.HangupAgent: self._c_leg_hung_up,
            cmd.HangupCaller: self._c_caller_gone,
            cmd.Overflow: self._c_caller_gone,
            cmd.Notify: self._c_notify,
            cmd.ParkCaller: _ignore,
            cmd.Record: _ignore,
        }
        self.push(0.0, ARRIVAL_TICK)
        self.push(self.rng.expovariate(self._presence_rate()), PRESENCE_TICK)

    def _presence_rate(self) -> float:
        return len(self.agent_ids) / 3600.0  # each agent steps away about once an hour

    def push(self, at: float, kind: int, a: Any = None, b: Any = None) -> None:
        heapq.heappush(self.heap, (at, next(self.seq), kind, a, b))

    # -- sending -------------------------------------------------------------

    def send(self, event: ev.Event, label: str) -> None:
        t0 = perf_ns()
        out = self.handle(event, self.now)
        t1 = perf_ns()
        self.n_events += 1
        if self.measuring:
            self.samples.append(t1 - t0)
            self.labels.append(label)
            self.line_sum += self.queued - self.live
            self.live_sum += self.live
        code = self.label_codes.get(label)
        if code is None:
            code = self.label_codes[label] = zlib.crc32(label.encode())
        self.fingerprint = (self.fingerprint * 1_000_003 + code + len(out)) & 0xFFFFFFFFFFFF
        on = self.on_command
        for c in out:
            on.get(type(c), _ignore)(c)

    # -- the engine's commands -------------------------------------------------

    def _c_start_timer(self, c: cmd.StartTimer) -> None:
        self.timers[c.timer_id] = c.at
        self.push(c.at, TIMER, c.timer_id)

    def _c_cancel_timer(self, c: cmd.CancelTimer) -> None:
        self.timers.pop(c.timer_id, None)

    def _c_ring(self, c: cmd.RingAgent) -> None:
        self.offers[c.offer_id] = [RINGING, c.call_id, c.agent_id]
        self.live += 1
        r = self.rng.random()
        now, uniform = self.now, self.rng.uniform
        if r < 0.78:
            self.push(now + uniform(1.5, 8.0), ANSWER, c.offer_id)
        elif r < 0.84:
            self.push(now + uniform(1.0, 6.0), DECLINE, c.offer_id)
        elif r < 0.87:
            self.push(now + uniform(1.0, 6.0), PANEL_REJECT, c.offer_id, c.agent_id)
        elif r < 0.91:
            self.push(now + uniform(0.1, 0.5), BUSY, c.offer_id)
        # else: nobody picks up, the engine's ring timer ends the offer

    def _c_confirm_prompt(self, c: cmd.PlayConfirmPrompt) -> None:
        self.offers[c.offer_id][0] = CONFIRMING
        digit = "1" if self.rng.random() < 0.9 else "2"
        self.push(self.now + self.rng.uniform(1.0, 4.0), DIGIT, c.offer_id, digit)

    def _c_connect(self, c: cmd.Connect) -> None:
        self.offers[c.offer_id][0] = CONNECTED
        self.calls[c.call_id] = CONNECTED
        self.queued -= 1
        self.live -= 1
        talk = 10.0 + self.rng.expovariate(1.0 / (TALK_MEAN - 10.0))
        if self.rng.random() < 0.6:
            self.push(self.now + talk, CALLER_BYE, c.call_id)
        else:
            self.push(self.now + talk, AGENT_BYE, c.offer_id, c.call_id)

    def _c_leg_hung_up(self, c: cmd.CancelOffer | cmd.HangupAgent) -> None:
        offer = self.offers.pop(c.offer_id, None)
        if offer is not None and offer[0] != CONNECTED:
            self.live -= 1
        elsewhere = getattr(c, "reason", None) is cmd.CancelReason.ANSWERED_ELSEWHERE
        self.push(self.now + self.rng.uniform(0.02, 0.2), LEG_GONE, c.offer_id, 26 if elsewhere else 16)

    def _c_caller_gone(self, c: cmd.HangupCaller | cmd.Overflow) -> None:
        if self.calls.pop(c.call_id, None) == QUEUED:
            self.queued -= 1

    def _c_notify(self, c: cmd.Notify) -> None:
        if c.kind == "agent.state" and c.data["presence"] == "not_responding" and c.agent_id not in self.away:
            self.away.add(c.agent_id)
            self.push(self.now + self.rng.uniform(20.0, 90.0), READY, c.agent_id)

    # -- the world -------------------------------------------------------------

    def step(self) -> bool:
        """Deliver the next due happening; False if it turned out void (nothing sent)."""
        at, _, kind, a, b = heapq.heappop(self.heap)
        if at > self.now:
            self.now = at
        offers, calls = self.offers, self.calls
        if kind == TIMER:
            if self.timers.pop(a, None) is None:
                return False
            self.send(ev.TimerFired(a), "timer:" + a.partition(":")[0])
        elif kind == ANSWER:
            if offers.get(a, (None,))[0] != RINGING:
                return False
            self.send(ev.AgentLegAnswered(a), "answer")
        elif kind == DIGIT:
            if offers.get(a, (None,))[0] != CONFIRMING:
                return False
            self.send(ev.ConfirmDigit(a, b), "confirm digit " + b)
        elif kind == DECLINE:
            if offers.get(a, (None,))[0] != RINGING:
                return False
            del offers[a]
            self.live -= 1
            self.send(ev.AgentLegEnded(a, 21, 603), "decline 21/603")
        elif kind == BUSY:
            if offers.get(a, (None,))[0] != RINGING:
                return False
            del offers[a]
            self.live -= 1
            self.send(ev.AgentLegEnded(a, 17, 486), "busy 17/486")
        elif kind == PANEL_REJECT:
            if offers.get(a, (None,))[0] != RINGING:
                return False
            self.send(ev.OfferRejected(a, b), "panel reject")
        elif kind == LEG_GONE:
            self.send(ev.AgentLegEnded(a, b), "leg ended (engine hung up)")
        elif kind == ABANDON:
            if calls.get(a) != QUEUED:
                return False
            del calls[a]
            self.queued -= 1
            self.send(ev.CallerHungUp(a), "caller hangs up waiting")
        elif kind == CALLER_BYE:
            if calls.get(a) != CONNECTED:
                return False
            del calls[a]
            self.send(ev.CallerHungUp(a), "caller hangs up connected")
        elif kind == AGENT_BYE:
            if calls.get(b) != CONNECTED:
                return False
            del calls[b]
            offers.pop(a, None)
            self.send(ev.AgentLegEnded(a, 16), "agent hangs up connected")
        elif kind == ARRIVAL_TICK:
            self._arrive()
        elif kind == PRESENCE_TICK:
            return self._step_away()
        elif kind == READY:
            self.away.discard(a)
            self.send(ev.AgentReady(a), "ready")
        elif kind == LOGIN:
            self.away.discard(a)
            self.send(ev.AgentLogin(a), "login")
        return True

    def _arrive(self) -> None:
        rng = self.rng
        n = next(self.call_seq)
        call_id = f"c{n}"
        queue = self.queue_names[rng.randrange(N_QUEUES)]
        self.calls[call_id] = QUEUED
        self.queued += 1
        event = ev.CallArrived(
            call_id,
            queue,
            caller_number=f"+3361{n % 10_000_000:07d}",
            caller_name=NAMES[n % len(NAMES)],
            priority=1 if rng.random() < 0.1 else 0,
            info={"X-Account": str(n * 7 % 100_000), "X-Lang": "fr"},
        )
        # patience: about a third of the callers give up
        self.push(self.now + rng.expovariate(1.0 / self.patience), ABANDON, call_id)
        # pace arrivals to hold the line near the target: expected departures, plus a correction
        gap = (self.target - (self.queued - self.live)) / self.target
        rate = (self.throughput + self.queued / self.patience) * min(3.0, max(0.3, 1.0 + 10.0 * gap))
        self.push(self.now + rng.expovariate(rate), ARRIVAL_TICK)
        self.send(event, "call arrives")

    def _step_away(self) -> bool:
        rng = self.rng
        self.push(self.now + rng.expovariate(self._presence_rate()), PRESENCE_TICK)
        agent_id = self.agent_ids[rng.randrange(len(self.agent_ids))]
        if agent_id in self.away:
            return False
        self.away.add(agent_id)
        if rng.random() < 0.85:
            self.push(self.now + rng.uniform(30.0, 300.0), READY, agent_id)
            self.send(ev.AgentPause(agent_id, "break"), "pause")
        else:
            self.push(self.now + rng.uniform(120.0, 900.0), LOGIN, agent_id)
            self.send(ev.AgentLogout(agent_id), "logout")
        return True

    # -- phases ------------------------------------------------------------------

    def fill(self, max_events: int) -> None:
        """Run until the waiting line reaches the target (95 %)."""
        goal = int(self.target * 0.95)
        while self.queued - self.live < goal and self.n_events < max_events:
            self.step()

    def run(self, n_events: int) -> None:
        end = self.n_events + n_events
        while self.n_events < end:
            self.step()


class Bench:
    """One measured scenario. ``prepare()`` builds the state and warms up, ``run(k)`` adds k
    measured events; scenarios of one table are run interleaved in chunks (see ``interleave``)."""

    def prepare(self) -> None:
        raise NotImplementedError

    def run(self, k: int) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, Any]:
        raise NotImplementedError


class Mixed(Bench):
    """The mixed event stream around ``n_agents`` agents and ``p.waiting`` calls in line."""

    def __init__(self, n_agents: int, p: Params) -> None:
        self.n_agents, self.p = n_agents, p

    def prepare(self) -> None:
        p = self.p
        self.sim = sim = Sim(self.n_agents, p.waiting, p.seed)
        sim.fill(max_events=20 * (self.n_agents + p.waiting) + 100_000)
        self.filled_at = sim.now
        sim.run(p.warmup)
        sim.measuring = True

    def run(self, k: int) -> None:
        self.sim.run(k)

    def result(self) -> dict[str, Any]:
        sim = self.sim
        statuses = Counter(a.status for a in sim.engine.agents.values())
        result = summarize(sim.samples)
        by_label: dict[str, list[int]] = {}
        for label, ns in zip(sim.labels, sim.samples, strict=True):
            by_label.setdefault(label, []).append(ns)
        result.update(
            agents=self.n_agents,
            waiting_avg=sim.line_sum / max(1, len(sim.samples)),
            offering_avg=sim.live_sum / max(1, len(sim.samples)),
            waiting_at_end=sum(1 for c in sim.engine.calls.values() if c.state is CallState.WAITING),
            sim_seconds_filled=self.filled_at,
            sim_seconds_measured=sim.now - self.filled_at,
            agent_status_at_end=dict(statuses.most_common()),
            by_event={k: summarize(v) for k, v in sorted(by_label.items(), key=lambda kv: -len(kv[1]))},
            stream_fingerprint=f"{sim.fingerprint:012x}",
        )
        return result


def interleave(benches: Sequence[Bench], events: int, chunk: int = 2_000) -> list[dict[str, Any]]:
    """Prepare every scenario, then measure them in turns, ``chunk`` events at a time, so that
    load from other processes on a shared machine hits every size alike (fair growth ratios).

    The state built by ``prepare()`` is frozen (``gc.freeze``): objects made while measuring are
    collected as usual, but no scenario's collections scan the others' engines. The cost of a
    full collection with one scenario in memory is reported as ``full_gc_ms``."""
    gc_ms: list[float] = []
    for b in benches:
        b.prepare()
        t0 = perf_ns()
        gc.collect()  # a full collection, with this scenario's objects only (the others are frozen)
        gc_ms.append((perf_ns() - t0) / 1e6)
        gc.freeze()  # the other scenarios' state must not lengthen this one's collections
    done = 0
    while done < events:
        k = min(chunk, events - done)
        for b in benches:
            b.run(k)
        done += k
    results = [b.result() for b in benches]
    for r, ms in zip(results, gc_ms, strict=True):
        r["full_gc_ms"] = ms
    gc.unfreeze()
    del benches
    gc.collect()
    return results


# ---------------------------------------------------------------------------- selection paths


class Shell:
    """A synchronous shell for the focused scenarios: keeps timers and legs, nothing random."""

    def __init__(self, setup: AcdSetup, seed: int) -> None:
        self.setup = setup
        self.engine = Engine(setup, seed=seed)
        self.now = 0.0
        self.timer_ids: dict[str, str] = {}  # key ("wrapup:a00001") -> live timer id
        self.timer_at: dict[str, float] = {}
        self.connected: dict[str, tuple[str, str]] = {}  # agent -> (offer, call)
        self.call_seq = count(1)

    def send(
        self, event: ev.Event, into: list[int] | None = None, legs_into: list[int] | None = None
    ) -> list[cmd.Command]:
        """Handle one event (its time appended to ``into``), then report the agent legs the
        engine hung up as gone (their times appended to ``legs_into``)."""
        t0 = perf_ns()
        out = self.engine.handle(event, self.now)
        t1 = perf_ns()
        if into is not None:
            into.append(t1 - t0)
        gone: list[tuple[str, int]] = []
        for c in out:
            t = type(c)
            if t is cmd.StartTimer:
                key = c.timer_id.rpartition("#")[0]
                self.timer_ids[key] = c.timer_id
                self.timer_at[c.timer_id] = c.at
            elif t is cmd.CancelTimer:
                key = c.timer_id.rpartition("#")[0]
                self.timer_at.pop(c.timer_id, None)
                if self.timer_ids.get(key) == c.timer_id:
                    del self.timer_ids[key]
            elif t is cmd.Connect:
                self.connected[c.agent_id] = (c.offer_id, c.call_id)
            elif t is cmd.CancelOffer:
                gone.append((c.offer_id, 26 if c.reason is cmd.CancelReason.ANSWERED_ELSEWHERE else 16))
            elif t is cmd.HangupAgent:
                gone.append((c.offer_id, 16))
                self.connected.pop(c.agent_id, None)
        for offer_id, cause in gone:
            self.send(ev.AgentLegEnded(offer_id, cause), into=legs_into)
        return out

    def fire(self, key: str, into: list[int] | None = None) -> list[cmd.Command]:
        timer_id = self.timer_ids.pop(key)
        self.now = max(self.now, self.timer_at.pop(timer_id))
        return self.send(ev.TimerFired(timer_id), into)

    def arrive(self, queue: str, into: list[int] | None = None) -> tuple[str, list[cmd.Command]]:
        n = next(self.call_seq)
        call_id = f"c{n}"
        event = ev.CallArrived(
            call_id, queue, f"+3361{n:07d}", NAMES[n % len(NAMES)], info={"X-Account": str(n)}
        )
        return call_id, self.send(event, into)

    def take(self, offer_id: str, queue: str) -> None:
        """The agent answers (and presses 1 in confirm mode): the call is connected."""
        self.send(ev.AgentLegAnswered(offer_id))
        if self.setup.queues[queue].acceptance is Acceptance.CONFIRM:
            self.send(ev.ConfirmDigit(offer_id, "1"))

    def hang_up_connected(self, agent_id: str) -> None:
        """The agent ends the connected call; the wrap-up timer starts (not fired)."""
        offer_id, _ = self.connected.pop(agent_id)
        self.send(ev.AgentLegEnded(offer_id, 16))


def rings(out: list[cmd.Command]) -> list[cmd.RingAgent]:
    return [c for c in out if type(c) is cmd.RingAgent]


class AgentFree(Bench):
    """Call arrives while agents are free: half the agents talking, nobody waiting."""

    def __init__(self, n_agents: int, p: Params) -> None:
        self.n_agents, self.p = n_agents, p
        self.samples: list[int] = []
        self.missed = 0

    def prepare(self) -> None:
        self.rng = rng = random.Random(self.p.seed)
        self.shell = shell = Shell(build_setup(self.n_agents, rng), self.p.seed)
        self.queues = list(shell.setup.queues)
        for _ in range(self.n_agents // 2):  # make half the agents busy
            queue = self.queues[rng.randrange(N_QUEUES)]
            call_id, out = shell.arrive(queue)
            ring = rings(out)
            if ring:
                shell.take(ring[0].offer_id, queue)
            else:
                shell.send(ev.CallerHungUp(call_id))  # keep nobody waiting
        self.run(self.p.path_events // 10)  # warm-up
        self.samples.clear()
        self.missed = 0

    def run(self, k: int) -> None:
        shell, rng, queues = self.shell, self.rng, self.queues
        for _ in range(k):
            shell.now += 0.5
            queue = queues[rng.randrange(N_QUEUES)]
            call_id, out = shell.arrive(queue, into=self.samples)
            ring = rings(out)
            if not ring:
                self.missed += 1
                shell.send(ev.CallerHungUp(call_id))
                continue
            agent_id = ring[0].agent_id
            shell.take(ring[0].offer_id, queue)
            shell.hang_up_connected(agent_id)
            shell.fire(f"wrapup:{agent_id}")  # free again (at the back of the line for longest_idle)

    def result(self) -> dict[str, Any]:
        result = summarize(self.samples)
        result.update(agents=self.n_agents, waiting=0, no_agent_free=self.missed)
        return result


class CallsWaiting(Bench):
    """An agent's wrap-up ends while ``p.waiting`` calls wait: the agent takes the best one."""

    def __init__(self, n_agents: int, p: Params) -> None:
        self.n_agents, self.p = n_agents, p
        self.samples: list[int] = []
        self.missed = 0

    def prepare(self) -> None:
        self.rng = rng = random.Random(self.p.seed)
        self.shell = shell = Shell(build_setup(self.n_agents, rng), self.p.seed)
        queues = list(shell.setup.queues)
        waiting = 0
        while waiting < self.p.waiting:  # every agent busy, then the line fills
            queue = queues[rng.randrange(N_QUEUES)]
            _, out = shell.arrive(queue)
            ring = rings(out)
            if ring:
                shell.take(ring[0].offer_id, queue)
            else:
                waiting += 1
        self.talking = sorted(shell.connected)
        self.run(self.p.path_events // 10)  # warm-up
        self.samples.clear()
        self.missed = 0

    def run(self, k: int) -> None:
        shell, rng, talking = self.shell, self.rng, self.talking
        for _ in range(k):
            shell.now += 0.5
            agent_id = talking[rng.randrange(len(talking))]
            if agent_id not in shell.connected:
                self.missed += 1
                continue
            shell.hang_up_connected(agent_id)
            out = shell.fire(f"wrapup:{agent_id}", into=self.samples)
            ring = rings(out)
            if not ring:
                self.missed += 1
                continue
            queue = shell.engine.calls[ring[0].call_id].queue
            shell.take(ring[0].offer_id, queue)
            _, out = shell.arrive(queue)  # a new caller keeps the line at the same length
            ring = rings(out)
            if ring:  # an agent was free in that queue after all
                shell.take(ring[0].offer_id, queue)

    def result(self) -> dict[str, Any]:
        result = summarize(self.samples)
        waiting_now = sum(1 for c in self.shell.engine.calls.values() if c.state is CallState.WAITING)
        result.update(agents=self.n_agents, waiting=waiting_now, no_call_offered=self.missed)
        return result


class RingAll(Bench):
    """A ring_all queue with one tier of ``tier`` free agents, among ``total_agents`` agents."""

    def __init__(self, tier: int, total_agents: int, p: Params) -> None:
        self.tier, self.total_agents, self.p = tier, total_agents, p
        self.arrive_ns: list[int] = []
        self.answer_ns: list[int] = []
        self.leg_ns: list[int] = []

    def prepare(self) -> None:
        self.rng = rng = random.Random(self.p.seed)
        base = build_setup(self.total_agents - self.tier, rng)
        queues = {**base.queues, "all": QueueConfig("all", strategy=Strategy.RING_ALL, wrapup=5.0)}
        agents = dict(base.agents)
        for k in range(self.tier):
            agent_id = f"r{k:03d}"
            agents[agent_id] = AgentConfig(agent_id, f"Ring {k}", f"PJSIP/{agent_id}", (Membership("all"),))
        self.shell = Shell(AcdSetup(queues=queues, agents=agents), self.p.seed)
        self.run(self.p.ring_all_rounds // 10)  # warm-up
        for samples in (self.arrive_ns, self.answer_ns, self.leg_ns):
            samples.clear()

    def run(self, k: int) -> None:
        shell, tier = self.shell, self.tier
        for _ in range(k):
            shell.now += 1.0
            _, out = shell.arrive("all", into=self.arrive_ns)
            ring = rings(out)
            if len(ring) != tier:
                raise RuntimeError(f"ring_all rang {len(ring)} of {tier} agents")
            winner = ring[self.rng.randrange(tier)]
            # answer: connects the winner and cancels the others, whose legs then end
            shell.send(ev.AgentLegAnswered(winner.offer_id), into=self.answer_ns, legs_into=self.leg_ns)
            shell.hang_up_connected(winner.agent_id)
            shell.fire(f"wrapup:{winner.agent_id}")

    def result(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "agents": self.total_agents,
            "arrival": summarize(self.arrive_ns),
            "answer": summarize(self.answer_ns),
            "leg_ended": summarize(self.leg_ns),
        }


# ---------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def _row(cells: Sequence[Any], widths: Sequence[int]) -> str:
    return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = [_row(headers, widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(r, widths) for r in rows]
    return "\n".join(lines)


def f1(x: float) -> str:
    return f"{x:,.1f}"


def run(p: Params, progress: Callable[[str], None]) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "params": p.__dict__}
    t0 = time.perf_counter()
    sizes = ", ".join(f"{n:,}" for n in p.sizes)
    progress(f"mixed stream, {sizes} agents ...")
    results["mixed"] = interleave([Mixed(n, p) for n in p.sizes], p.events)
    progress(f"selection paths, {sizes} agents ...")
    free = interleave([AgentFree(n, p) for n in p.sizes], p.path_events)
    waiting = interleave([CallsWaiting(n, p) for n in p.sizes], p.path_events)
    results["paths"] = [
        {"agents": n, "agent_free": a, "calls_waiting": w}
        for n, a, w in zip(p.sizes, free, waiting, strict=True)
    ]
    progress(f"ring_all, tiers of {', '.join(map(str, p.ring_all_tiers))} ...")
    total = max(p.sizes)
    results["ring_all"] = interleave([RingAll(t, total, p) for t in p.ring_all_tiers], p.ring_all_rounds, 200)
    results["wall_seconds"] = time.perf_counter() - t0
    results["target"] = target_verdict(results, p)
    return results


def target_verdict(results: dict[str, Any], p: Params) -> dict[str, Any]:
    row = next((r for r in results["mixed"] if r["agents"] == TARGET_AGENTS), None)
    if row is None or p.waiting != TARGET_WAITING:
        return {"measured": False}
    return {
        "measured": True,
        "median_us": row["median_us"],
        "p99_us": row["p99_us"],
        "median_ok": row["median_us"] <= TARGET_MEDIAN_US,
        "p99_ok": row["p99_us"] <= TARGET_P99_US,
    }


def growth(rows: list[dict[str, Any]], key: str) -> float | None:
    if len(rows) < 2:
        return None
    return rows[-1][key] / rows[0][key]


def report(results: dict[str, Any]) -> str:
    m, p = results["machine"], results["params"]
    mixed = results["mixed"]
    out = [
        f"Engine.handle() cost per event; {m['cpus']} CPUs, {m['implementation']} {m['python']}, "
        f"{m['platform']}",
        "",
        f"Mixed event stream, ~{p['waiting']:,} calls waiting (10 queues, mixed strategies, no ring_all):",
        table(
            [
                "agents",
                "waiting",
                "ringing",
                "events",
                "median µs",
                "p90 µs",
                "p99 µs",
                "p99.9 µs",
                "max µs",
                "events/s",
                "median vs first",
            ],
            [
                [
                    f"{r['agents']:,}",
                    f"{r['waiting_avg']:,.0f}",
                    f"{r['offering_avg']:,.0f}",
                    f"{r['events']:,}",
                    f1(r["median_us"]),
                    f1(r["p90_us"]),
                    f1(r["p99_us"]),
                    f1(r["p999_us"]),
                    f1(r["max_us"]),
                    f"{r['events_per_s']:,.0f}",
                    f"x{r['median_us'] / mixed[0]['median_us']:.2f}",
                ]
                for r in mixed
            ],
        ),
        "(waiting = calls in line, no agent ringing for them; ringing = calls being offered; both averaged"
        " over the measured events. events/s = events / time spent inside handle())",
    ]
    gcs = " / ".join(f"{r['full_gc_ms']:.1f}" for r in mixed)
    out.append(
        f"A full garbage collection with the engine in memory takes {gcs} ms; it is rare and lands on"
        " whichever handle() triggers it (state built before measuring is frozen with gc.freeze())."
    )
    g_med, g_p99 = growth(mixed, "median_us"), growth(mixed, "p99_us")
    if g_med is not None:
        out.append(
            f"Growth {mixed[0]['agents']:,} -> {mixed[-1]['agents']:,} agents "
            f"({mixed[-1]['agents'] // mixed[0]['agents']}x): median x{g_med:.2f}, p99 x{g_p99:.2f}"
        )
    paths = results["paths"]
    out += [
        "",
        "Selection paths (the timed event only):",
        table(
            ["path", "agents", "waiting", "events", "median µs", "p90 µs", "p99 µs", "max µs"],
            [
                [
                    label,
                    f"{row['agents']:,}",
                    f"{r['waiting']:,}",
                    f"{r['events']:,}",
                    f1(r["median_us"]),
                    f1(r["p90_us"]),
                    f1(r["p99_us"]),
                    f1(r["max_us"]),
                ]
                for key, label in (
                    ("agent_free", "call arrives, agent free"),
                    ("calls_waiting", "agent free, calls waiting"),
                )
                for row in paths
                for r in (row[key],)
            ],
        ),
    ]
    for key, label in (("agent_free", "call arrives"), ("calls_waiting", "agent free")):
        g = growth([row[key] for row in paths], "median_us")
        if g is not None:
            out.append(
                f"Growth {paths[0]['agents']:,} -> {paths[-1]['agents']:,} agents, {label}: median x{g:.2f}"
            )
    if results["ring_all"]:
        out += [
            "",
            f"ring_all (rings the whole tier by design), {results['ring_all'][0]['agents']:,} agents in all:",
            table(
                ["tier", "event", "events", "median µs", "p99 µs", "max µs"],
                [
                    [
                        r["tier"],
                        label,
                        f"{s['events']:,}",
                        f1(s["median_us"]),
                        f1(s["p99_us"]),
                        f1(s["max_us"]),
                    ]
                    for r in results["ring_all"]
                    for key, label in (
                        ("arrival", "call arrives (rings tier)"),
                        ("answer", "answer (cancels tier-1)"),
                        ("leg_ended", "cancelled leg ends"),
                    )
                    for s in (r[key],)
                ],
            ),
        ]
    big = mixed[-1]
    statuses = ", ".join(f"{k} {v:,}" for k, v in big["agent_status_at_end"].items())
    out += [
        "",
        f"Mixed stream at {big['agents']:,} agents, by event "
        f"({big['sim_seconds_measured']:,.0f} simulated s; agents at the end: {statuses}):",
        table(
            ["event", "count", "share", "median µs", "p99 µs", "max µs"],
            [
                [
                    label,
                    f"{s['events']:,}",
                    f"{100 * s['events'] / big['events']:.1f}%",
                    f1(s["median_us"]),
                    f1(s["p99_us"]),
                    f1(s["max_us"]),
                ]
                for label, s in big["by_event"].items()
            ],
        ),
        "",
    ]
    t = results["target"]
    if t["measured"]:
        verdict = "MET" if t["median_ok"] and t["p99_ok"] else "MISSED"
        out.append(
            f"Target ({TARGET_AGENTS:,} agents, {TARGET_WAITING:,} waiting): median {f1(t['median_us'])} µs "
            f"(<= {TARGET_MEDIAN_US:.0f}), p99 {f1(t['p99_us'])} µs (<= {TARGET_P99_US:.0f}): {verdict}"
        )
    else:
        out.append(f"Target ({TARGET_AGENTS:,} agents, {TARGET_WAITING:,} waiting): not measured in this run")
    out.append(
        f"Stream fingerprints (same seed, same stream): {' '.join(r['stream_fingerprint'] for r in mixed)}"
    )
    out.append(f"Wall time: {results['wall_seconds']:.1f} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/engine.py", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (100 and 1,000 agents, few events)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    ap.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), help="e.g. 100,1000,10000")
    ap.add_argument("--events", type=int, help="measured events per size in the mixed stream")
    ap.add_argument("--waiting", type=int, help="calls kept waiting")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--check", action="store_true", help="exit 1 if the target was measured and missed")
    args = ap.parse_args(argv)
    p = QUICK if args.quick else FULL
    overrides = {
        k: v
        for k, v in (
            ("sizes", args.sizes),
            ("events", args.events),
            ("waiting", args.waiting),
            ("seed", args.seed),
        )
        if v is not None
    }
    p = Params(**{**p.__dict__, **overrides})

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = run(p, progress)
    print(json.dumps(results, indent=2) if args.json else report(results))
    t = results["target"]
    if args.check and t["measured"] and not (t["median_ok"] and t["p99_ok"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
