"""ARI benchmark: the real controller against the simulated Asterisk over loopback HTTP/WebSocket.

Requirement (issue): 500 agents, 50 / 200 / 1,000 concurrent calls: sustained call setups/s; p50 and
p99 of (a) StasisStart received -> dial request sent, (b) agent answer event -> bridge request sent,
(c) agent decline event -> next agent's dial sent; controller CPU and memory per waiting call.
Targets: >= 300 setups/s with the controller on one core; p99 reaction <= 5 ms at 200 setups/s.

Processes. The simulated Asterisk (``controller.sim``) and the controller (``controller.app.Controller``)
run in two separate processes, each pinned to its own core when the machine has two or more (the
controller on CPU 0, the sim on CPU 1), so the controller's CPU time is measured alone
(``getrusage`` of its process) and it never shares its core with the load generator. The parent
process only orchestrates over pipes and sleeps. Clock speed 1.0: every time is real time.

Definitions.

- A *call setup* is one customer call taken from StasisStart to its agent bridge: the controller
  parks it (answer, holding bridge, music on hold), rings an agent (one originate), the agent
  answers and the controller bridges both (``call.connected``). Every call is also torn down in
  the same run (caller BYE, agent leg hung up, bridges destroyed), so "CPU per setup" is the
  whole life of a call. Setups/s = calls connected per second within the measurement window.
- Reactions (a), (b), (c) are the controller's own figures (the intervals of
  ``controller.shell.reactions``): (a) from handling StasisStart to just before the agent's
  ``POST /channels`` (originate: the one request that rings the agent);
  (b) from handling the agent leg's StasisStart (an originated leg enters Stasis once answered,
  right after its ``ChannelStateChange(Up)``) to the first bridge request;
  (c) from handling the declined leg's ``ChannelHangupRequest`` 21/603 (the leg ends there, before
  its ``ChannelDestroyed``) to the next agent's originate. They
  start when the event is *handled*, so time an event waits in the websocket buffer is not in them.
  The shell's (a)/(c) marks also cover calls that found no free agent: their "reaction" is then
  the queue wait. The bench tells the two apart (did the event itself make the engine ring an
  agent?) and reports (a)/(c) for "an agent was free" only; the queued ones are counted apart.
- "wire" columns: the same intervals as the simulated Asterisk sees them (event emitted -> request
  received, e.g. caller placed -> the agent's INVITE), measured in the sim process. They add the
  websocket/HTTP transport and queueing in both processes; (b) wire runs until the caller hears
  the agent (bridge created and both channels added: two round trips).
- Diagnostics: the originate round trip as the controller sees it (it follows (a)/(c), which end
  when the request is sent; it includes the sim's own delays), the event-loop lag of both processes
  (a 10 ms ticker), and the longest run of events the controller handled in one loop step.
- Concurrency N = calls in flight: the sim keeps exactly N customers in the system (a new call is
  placed the moment one ends). With 1,000 calls and 500 agents about half of them wait in queue.
  Talk and ring times are random (seeded), so arrivals are Poisson-like, not lock-step.
- "other load": CPU that other processes on the machine used during the window. The bench waits
  for a quiet machine before each phase and measures a disturbed phase again (``--retries``).

Scenarios.

1. Capacity: N in flight, agents answer at once (ring 0 s) and callers talk ~10 ms, so the
   processes, not the phones, limit the rate: sustained setups/s at N = 50, 200, 1,000, with the
   CPU use of both processes. "ctl ms/setup" is controller CPU per call; 1000 / that is the
   setups/s one fully busy controller core would carry ("ctl core cap").
2. Reaction times at ~200 setups/s, for N = 50, 200, 1,000: ring and talk times chosen so that
   N calls in flight give ~200 setups/s (N=1,000: 500 agents busy ~2.5 s, ~500 callers queued).
   10 % of calls (chosen by a hash of the caller number) are declined (603) by their first agent.
3. Paced load: Poisson arrivals at fixed rates (default 200, 300 setups/s; ring 0.1-0.3 s, talk
   ~1 s), to show whether the controller keeps up (connected rate = offered rate, in flight flat).
4. Waiting calls: every agent logged out, 1,000 callers arrive and wait (parked with music on
   hold). Controller RSS and tracemalloc growth per waiting call, CPU to admit one, CPU per
   waiting call while they wait, CPU to end one.
5. ``--what-if`` (+3 min): capacity and reactions at N=200 again with variants emulated from
   outside the controller: "nolog" (no logging), "nofilter" (the sim refuses
   ``PUT /applications/acd/eventFilter`` like an ARI without it, so every event of a call is sent),
   "yield" (the event consumer yields to the loop every 8 events), and "nolog+yield".

The controller sets the ARI event filter at connect (only the event types it handles reach it);
``--no-event-filter`` runs the whole bench with the sim refusing it (the behaviour before issue 14).

Workaround inside the bench: the controller subscribes to all agent endpoints in one request whose
URL is too long for 500 agents, so it cannot start (see ``_chunk_subscriptions``); the bench splits
that subscription into requests of 100 endpoints.

Run: ``.venv/bin/python bench/run.py ari [--quick] [--what-if] [--json] [--no-log] [--profile DIR]``.
``--quick`` is a smoke run (< 20 s). ``--profile DIR`` writes cProfile output of both processes
for the capacity scenario at N=200. By default the controller logs at INFO in text format to
/dev/null (what ``acdctl run`` does out of the box); ``--no-log`` removes logging from the picture.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import random
import resource
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)  # `python bench/ari.py` puts bench/, not the repo, on the path

USER = "bench"
PASSWORD = "bench-ari-secret"
QUEUE = "support"
AGENTS = 500
DECLINE_PCT = 10
CTL_CPU = 0
SIM_CPU = 1

TARGET_SETUPS = 300.0
TARGET_P99_MS = 5.0
LATENCY_RATE = 200.0
YIELD_EVERY = 8  # what-if "yield": the event consumer yields to the loop every N events
FOREIGN_MAX = 0.2  # cores other processes may use during a window before it is measured again
SUBSCRIBE_CHUNK = 100  # endpoint subscriptions per request (see _chunk_subscriptions)


# --------------------------------------------------------------------------------------------- helpers


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat; nan elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return math.nan
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _pin(cpu: int) -> list[int]:
    """Pin this process to one core when there are at least two; returns the allowed cores."""
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) >= 2:
            os.sched_setaffinity(0, {allowed[cpu % len(allowed)]})
        return sorted(os.sched_getaffinity(0))
    return []


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 50) * 1e3,
        "p99": pct(values, 99) * 1e3,
        "max": (max(values) * 1e3) if values else math.nan,
    }


# --------------------------------------------------------------------------------------------- child plumbing


def _child_main(kind: str, conn: Connection, cpu: int, profile: str | None) -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.insert(0, root)
    cores = _pin(cpu)
    side: Any = SimSide(cores) if kind == "sim" else CtlSide(cores)
    side.profile_dir = profile
    asyncio.run(_serve(side, conn))


async def _serve(side: Any, conn: Connection) -> None:
    while True:
        name, kw = await asyncio.to_thread(conn.recv)
        if name == "exit":
            try:
                await side.close()
            finally:
                conn.send(("ok", None))
            return
        try:
            result = await getattr(side, "cmd_" + name)(**kw)
        except Exception:
            conn.send(("err", traceback.format_exc()))
        else:
            conn.send(("ok", result))


class Child:
    """A benchmark process (sim or controller) driven by remote calls over a pipe."""

    def __init__(self, ctx: Any, kind: str, cpu: int, profile: str | None = None) -> None:
        self.kind = kind
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child_main, args=(kind, child_conn, cpu, profile), name=f"bench-ari-{kind}", daemon=True
        )
        self.proc.start()
        child_conn.close()

    def call(self, name: str, timeout: float = 300.0, **kw: Any) -> Any:
        self.conn.send((name, kw))
        if not self.conn.poll(timeout):
            raise TimeoutError(f"{self.kind}: {name} did not answer within {timeout} s")
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.kind}: {name} failed:\n{result}")
        return result

    def close(self) -> None:
        try:
            if self.proc.is_alive():
                self.call("exit", timeout=30)
        except Exception:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --------------------------------------------------------------------------------------------- sim process


@dataclass(slots=True)
class Track:
    """One customer call the bench placed, and the agent INVITEs made for it."""

    caller: Any
    decline: bool
    invites: list[Any] = field(default_factory=list)


class SimSide:
    """Runs the simulated Asterisk, the agent phones and the customer load."""

    def __init__(self, cores: list[int]) -> None:
        self.cores = cores
        self.profile_dir: str | None = None
        self.sim: Any = None
        self.active: dict[str, Track] = {}  # caller channel id -> track
        self.ring = 0.0
        self.talk_mean = 0.01
        self.patience: float | None = 120.0
        self.decline_pct = DECLINE_PCT
        self.running = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.numbers = itertools.count(1)
        self.rng = random.Random(0)
        self.connected: list[float] = []  # sim clock times of agent bridges
        self.a_wire: list[tuple[float, float, str]] = []  # (when, seconds, caller channel id)
        self.b_wire: list[tuple[float, float, str]] = []
        self.c_wire: list[tuple[float, float, str]] = []
        self.lags: list[float] = []  # event-loop lag of the sim (10 ms ticker)
        self.unanswered = 0  # callers that ended without ever talking to an agent
        self._profiler: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self.gc_pauses: list[tuple[int, float]] = []
        self._gc_t0 = 0.0

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self.sim is not None:
            await self.sim.stop()

    async def cmd_start(self, agents: int, seed: int, event_filter: bool = True) -> dict[str, Any]:
        from controller.clock import Clock
        from controller.sim import SimAsterisk

        self.rng = random.Random(f"bench-ari:{seed}")
        self.sim = SimAsterisk(
            clock=Clock(1.0), seed=seed, user=USER, password=PASSWORD, event_log_size=64, record_limit=2
        )
        base = await self.sim.start("127.0.0.1", 0)
        for i in range(agents):
            self.sim.add_phone(f"agent{i}", self._behaviour)
        if not event_filter:  # an ARI without PUT /applications/{app}/eventFilter: every event is sent
            self.sim.faults.add("PUT", r"/applications/.*/eventFilter", status=501, times=None)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        # Asterisk has no garbage collector: keep the sim's full collections short by taking its
        # start-up objects (500 phones, endpoints, the aiohttp app) out of them.
        gc.collect()
        gc.freeze()
        gc.callbacks.append(self._gc_callback)
        return {"url": base, "cores": self.cores, "pid": os.getpid()}

    def _behaviour(self, invite: Any) -> Any:
        from controller.sim import Answer, Decline

        track = self.active.get(invite.headers.get("X-Acd-Call-Id", ""))
        first = False
        if track is not None:
            track.invites.append(invite)
            first = len(track.invites) == 1
        # ring times spread uniformly over 0.5-1.5 x the mean, so answers do not echo dial bursts
        after = self.ring * (0.5 + self.rng.random()) if self.ring > 0 else 0.0
        if first and track is not None and track.decline:
            return Decline(after=after)
        return Answer(after=after)

    # -- load -----------------------------------------------------------------------------------
    def _place(self) -> Track | None:
        i = next(self.numbers)
        number = f"7{i:09d}"
        talk = self.rng.expovariate(1.0 / self.talk_mean) if self.talk_mean > 0 else 0.0
        caller = self.sim.place_call(
            "101", caller_number=number, caller_name="Bench", talk_time=talk, hangup_after=self.patience
        )
        if not caller.channel_id:
            self.unanswered += 1
            return None
        decline = zlib.crc32(number.encode()) % 100 < self.decline_pct
        track = Track(caller, decline)
        self.active[caller.channel_id] = track
        return track

    async def _watch(self, track: Track) -> None:
        try:
            await track.caller.wait_for(lambda c: c.ended, timeout=1e9)
        finally:
            self.active.pop(track.caller.channel_id, None)
            self._account(track)

    def _spawn_watch(self, track: Track) -> None:
        task = asyncio.get_running_loop().create_task(self._watch(track))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _slot(self) -> None:
        """Closed loop: keep one call in flight as long as the load runs."""
        while self.running:
            track = self._place()
            if track is None:
                await asyncio.sleep(0.01)
                continue
            await self._watch(track)

    async def _poisson(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        t = loop.time()
        while self.running:
            t += self.rng.expovariate(rate)
            delay = t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.running:
                return
            track = self._place()
            if track is not None:
                self._spawn_watch(track)

    def _account(self, track: Track) -> None:
        c = track.caller
        if not c.media:
            self.unanswered += 1
        else:
            self.connected.append(c.media[0].start)
        invites = track.invites
        cid = c.channel_id
        if invites:
            self.a_wire.append((c.placed_at, invites[0].at - c.placed_at, cid))
        for prev, nxt in itertools.pairwise(invites):
            if prev.outcome == "rejected" and prev.ended_at is not None:
                self.c_wire.append((prev.ended_at, nxt.at - prev.ended_at, cid))
        if c.media:
            for inv in invites:
                if inv.answered_at is not None and inv.phone == c.media[0].peer:
                    self.b_wire.append((inv.answered_at, c.media[0].start - inv.answered_at, cid))
                    break

    async def cmd_load(
        self,
        mode: str,
        n: int = 0,
        rate: float = 0.0,
        ring: float = 0.0,
        talk: float = 0.01,
        decline_pct: int = DECLINE_PCT,
        patience: float | None = 120.0,
    ) -> None:
        self.ring, self.talk_mean, self.decline_pct, self.patience = ring, talk, decline_pct, patience
        self.connected.clear()
        self.a_wire.clear()
        self.b_wire.clear()
        self.c_wire.clear()
        self.unanswered = 0
        self.running = True
        loop = asyncio.get_running_loop()
        if mode == "closed":
            for _ in range(n):
                task = loop.create_task(self._slot())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                await asyncio.sleep(0)  # the first N arrivals trickle in over a few loop turns
        elif mode == "poisson":
            task = loop.create_task(self._poisson(rate))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            raise ValueError(mode)

    async def _tick(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append(time.perf_counter() - t - 0.01)

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_t0))

    async def cmd_mark(self, profile: str | None = None, reset: bool = False) -> dict[str, Any]:
        lag = {
            "p99_ms": pct(self.lags, 99) * 1e3,
            "max_ms": max(self.lags, default=math.nan) * 1e3,
            "gc_max_ms": max((d for _, d in self.gc_pauses), default=0.0) * 1e3,
            "gc2": sum(1 for g, _ in self.gc_pauses if g == 2),
        }
        if reset:
            self.lags = []
            self.gc_pauses = []
        if profile == "start" and self.profile_dir:
            import cProfile

            self._profiler = cProfile.Profile()
            self._profiler.enable()
        elif profile == "stop" and self._profiler is not None:
            self._profiler.disable()
            self._profiler.dump_stats(os.path.join(self.profile_dir or ".", "sim.prof"))
            self._profiler = None
        return {
            "t": self.sim.clock.now(),
            "cpu": _cpu(),
            "rss": _rss(),
            "in_flight": len(self.active),
            "lag": lag,
        }

    async def cmd_stop_load(self, drain: float = 30.0) -> dict[str, Any]:
        """Stop placing calls, hang up whoever is still there, wait until every call ended."""
        self.running = False
        for track in list(self.active.values()):
            track.caller.hangup()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        while self.tasks and loop.time() < deadline:  # noqa: ASYNC110 (polling with a deadline)
            await asyncio.sleep(0.02)
        left = len(self.tasks)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
        return {"stuck": left}

    async def cmd_collect(self, t0: float, t1: float, queued: tuple[list[str], list[str]] = ([], [])) -> dict:
        """Wire samples in [t0, t1). ``queued``: caller channel ids whose first dial (a) or next dial
        after a decline (c) had to wait for an agent (the controller says which): left out."""
        skip_a, skip_c = set(queued[0]), set(queued[1])

        def window(samples: list[tuple[float, float, str]], skip: set[str] = set()) -> list[float]:  # noqa: B006
            return [v for t, v, cid in samples if t0 <= t < t1 and cid not in skip]

        return {
            "connected": sum(1 for t in self.connected if t0 <= t < t1),
            "a_wire": window(self.a_wire, skip_a),
            "b_wire": window(self.b_wire),
            "c_wire": window(self.c_wire, skip_c),
            "unanswered": self.unanswered,
        }

    async def cmd_leftovers(self) -> dict[str, Any]:
        """What the sim still holds once every call has ended (a clean run leaves nothing)."""
        bridges = list(self.sim.engine.bridges)
        return {
            "channels": len(self.sim.engine.channels),
            "holding_bridges": sum(1 for b in bridges if b.endswith("-hold")),
            "other_bridges": sum(1 for b in bridges if not b.endswith("-hold")),
        }

    # -- waiting callers ------------------------------------------------------------------------
    async def cmd_place_waiting(self, n: int, rate: float) -> dict[str, Any]:
        """Place ``n`` callers who wait forever (all agents logged out), at ``rate`` calls/s."""
        self.patience, self.talk_mean, self.decline_pct = None, 0.0, 0
        self.running = True
        t_start = time.perf_counter()
        for i in range(n):
            due = t_start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            track = self._place()
            if track is not None:
                self._spawn_watch(track)
        await self.sim.wait_for(
            lambda: all(t.caller.hearing_moh for t in self.active.values()), timeout=60, what="all parked"
        )
        return {"parked": sum(1 for t in self.active.values() if t.caller.hearing_moh)}

    async def cmd_hangup_all(self) -> dict[str, Any]:
        return await self.cmd_stop_load()


# ----------------------------------------------------------------------------------------- controller process


class _WarningCounter(logging.Handler):
    """Counts the controller's warnings and errors by message template."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.levelname} {record.msg}"
        self.counts[key] = self.counts.get(key, 0) + 1


class CtlSide:
    """Runs the controller, exactly as ``acdctl run`` builds it, plus counters."""

    def __init__(self, cores: list[int]) -> None:
        self.cores = cores
        self.profile_dir: str | None = None
        self.controller: Any = None
        self.records: dict[str, int] = {}
        self._profiler: Any = None
        # GC pauses (gc.callbacks) and event-loop lag (a 10 ms ticker), to explain latency tails
        self.gc_pauses: list[tuple[int, float]] = []  # (generation, seconds) since the last reset
        self._gc_t0 = 0.0
        self.lags: list[float] = []
        self._ticker: asyncio.Task[None] | None = None
        self.bursts: list[tuple[int, float]] = []  # (events, seconds) handled in one loop step
        self._burst_n = 0
        self._burst_t0 = 0.0
        self.warnings = _WarningCounter()
        self.split: dict[str, list[float]] = {
            f"{k}{suffix}": [] for k in "ac" for suffix in ("", "_own", "_queued", "_freed", "_freed_own")
        }
        self.queued_ids: dict[str, list[str]] = {"a": [], "c": []}
        self.create_rtts: list[float] = []

    def _gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_t0))

    async def _tick(self) -> None:
        period = 0.01
        while True:
            t = time.perf_counter()
            await asyncio.sleep(period)
            self.lags.append(time.perf_counter() - t - period)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self.controller is not None:
            await self.controller.stop()

    async def cmd_start(
        self, url: str, agents: int, seed: int, log: bool, logged_out: bool = False, yield_every: int = 0
    ) -> dict[str, Any]:
        from controller.acd import commands as cmd
        from controller.acd.setup import AcdSetup, AgentConfig, AgentStartState, Membership, QueueConfig
        from controller.app import Controller
        from controller.clock import Clock
        from controller.logs import setup_logging

        if log:
            sink = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 (at start-up, /dev/null)
            setup_logging("INFO", "text", secrets=[PASSWORD], stream=sink)
        else:
            logging.getLogger().addHandler(logging.NullHandler())  # no last-resort printing to stderr
        logging.getLogger().addHandler(self.warnings)
        state = AgentStartState.LOGGED_OUT if logged_out else AgentStartState.AVAILABLE
        setup = AcdSetup(
            queues={QUEUE: QueueConfig(QUEUE, wrapup=0.0)},
            agents={
                f"a{i}": AgentConfig(f"a{i}", f"Agent {i}", f"PJSIP/agent{i}", (Membership(QUEUE),), state)
                for i in range(agents)
            },
        )
        self.controller = Controller(
            setup, ari_url=url, ari_user=USER, ari_password=PASSWORD, clock=Clock(1.0), seed=seed
        )
        counts = self.records

        def count(c: Any) -> None:
            if isinstance(c, cmd.Record):
                counts[c.kind] = counts.get(c.kind, 0) + 1

        self.controller.shell.listeners.append(count)
        _chunk_subscriptions(self.controller.client)
        await self.controller.start()
        gc.collect()
        gc.callbacks.append(self._gc_callback)
        loop = asyncio.get_running_loop()
        self._ticker = loop.create_task(self._tick())
        # Count events handled back to back in one event-loop step (the consumer does not yield
        # while the websocket has buffered frames): a wrapper around the stream's handler.
        stream = self.controller.stream
        inner = stream._handler

        async def handler(event: Any) -> None:
            if self._burst_n == 0:
                self._burst_t0 = time.perf_counter()
                loop.call_soon(self._burst_end)
            self._burst_n += 1
            await inner(event)
            if yield_every and self._burst_n % yield_every == 0:
                await asyncio.sleep(0)  # what-if: the consumer lets REST replies in between events

        stream._handler = handler
        self._split_reactions(cmd)
        return {"cores": self.cores, "pid": os.getpid()}

    def _split_reactions(self, cmd: Any) -> None:
        """Split (a) and (c) into "an agent was free" (the dial follows from the event itself) and
        "queued" (no agent was free: the mark waits until one is, so the figure is queue time,
        not reaction time), and time the ``POST /channels`` (originate) round trip after (a)/(c).

        Wrappers on Telephony._execute (which RingAgent commands one event caused), on the stream
        handler (which event that was), on Telephony._reaction_done and AriClient.originate.
        """
        shell = self.controller.shell
        client = self.controller.client
        engine = self.controller.engine
        rang: set[str] = set()
        fresh: set[str] = set()  # call ids whose pending "dial" mark came with an immediate RingAgent
        rtt_of: dict[str, float] = {}
        trigger: dict[str, float] = {}  # call id -> when the event (or timer) that made it ring came in
        in_event = [False]
        execute = shell._execute

        def _execute(c: Any) -> None:
            if type(c) is cmd.RingAgent:
                rang.add(c.call_id)
                if not in_event[0]:
                    trigger[c.call_id] = time.perf_counter()  # a timer fired
            execute(c)

        shell._execute = _execute
        stream = self.controller.stream
        inner = stream._handler

        async def handler(event: Any) -> None:
            t0 = time.perf_counter()
            rang.clear()
            in_event[0] = True
            try:
                await inner(event)
            finally:
                in_event[0] = False
            for call_id in rang:
                trigger[call_id] = t0
            kind = type(event).__name__
            if kind in ("StasisStart", "ChannelHangupRequest", "ChannelDestroyed"):
                ch = event.channel.id
                call_id = ch if kind == "StasisStart" else ch.rsplit("-", 1)[0]
                if call_id in rang:
                    fresh.add(call_id)
                elif kind == "StasisStart":
                    # Only a call's arrival clears it: a leg's later events (its ChannelDestroyed
                    # after the hangup request that ended it, a copy of an event delivered twice
                    # through the endpoint subscription) come before the ring job and say nothing.
                    fresh.discard(call_id)

        stream._handler = handler
        done = shell._reaction_done

        def _reaction_done(call_id: str, what: str) -> None:
            mark = shell._marks.get(call_id)
            if mark is not None and mark[0] == what and what == "dial":
                now = time.perf_counter()
                elapsed = now - mark[1]
                call = engine.calls.get(call_id)
                key = "a" if call is None or call.offer_count <= 1 else "c"
                rtt = rtt_of.pop(call_id, None)  # a request inside the interval (none since originate)
                since = trigger.pop(call_id, None)
                if call_id in fresh:
                    fresh.discard(call_id)
                    self.split[key].append(elapsed)
                    self.split[key + "_own"].append(elapsed - (rtt or 0.0))
                else:
                    self.split[key + "_queued"].append(elapsed)
                    self.queued_ids[key].append(call_id)
                    if since is not None:  # the reaction to the event that freed an agent
                        self.split[key + "_freed"].append(now - since)
                        self.split[key + "_freed_own"].append(now - since - (rtt or 0.0))
            done(call_id, what)

        shell._reaction_done = _reaction_done
        originate = client.originate

        async def timed_originate(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await originate(*args, **kw)
            finally:
                self.create_rtts.append(time.perf_counter() - t0)  # sent after the mark: not in (a)/(c)

        client.originate = timed_originate

    def _burst_end(self) -> None:
        self.bursts.append((self._burst_n, time.perf_counter() - self._burst_t0))
        self._burst_n = 0

    def _snapshot(self) -> dict[str, Any]:
        c = self.controller
        return {
            "t": time.perf_counter(),
            "cpu": _cpu(),
            "rss": _rss(),
            "connected": self.records.get("call.connected", 0),
            "requests": c.client.stats["requests"],
            "events": c.stream.stats["events"],
            "errors": c.client.stats["errors"],
            "lane_failures": c.shell.lanes.failures,
            "engine_calls": len(c.engine.calls),
            "shell_calls": len(c.shell.calls),
            "shell_calls_gone": sum(1 for ch in c.shell.calls.values() if ch.gone),
            "lanes": c.shell.lanes.busy(),
            "timers": len(c.shell._timers),
            "marks": len(c.shell._marks),
            "client_stats": dict(c.client.stats),
            "warnings": dict(self.warnings.counts),
            "waiting": sum(1 for x in c.engine.calls.values() if x.state.value == "waiting"),
        }

    async def cmd_mark(self, reset: bool = False, profile: str | None = None) -> dict[str, Any]:
        snap = self._snapshot()
        pauses = self.gc_pauses
        snap["gc"] = {
            "collections": [sum(1 for g, _ in pauses if g == gen) for gen in range(3)],
            "total_ms": sum(d for _, d in pauses) * 1e3,
            "max_ms": max((d for _, d in pauses), default=0.0) * 1e3,
            "gen2_max_ms": max((d for g, d in pauses if g == 2), default=0.0) * 1e3,
        }
        snap["lag"] = {
            "p50_ms": pct(self.lags, 50) * 1e3,
            "p99_ms": pct(self.lags, 99) * 1e3,
            "max_ms": max(self.lags, default=math.nan) * 1e3,
        }
        sizes = [n for n, _ in self.bursts]
        spans = [d for _, d in self.bursts]
        snap["bursts"] = {
            "p99_events": pct(sizes, 99),
            "max_events": max(sizes, default=0),
            "p99_ms": pct(spans, 99) * 1e3,
            "max_ms": max(spans, default=math.nan) * 1e3,
        }
        if reset:
            self.gc_pauses = []
            self.lags = []
            self.bursts = []
            self.warnings.counts.clear()
            r = self.controller.shell.reactions
            r.stasis_to_dial.clear()
            r.answer_to_bridge.clear()
            r.decline_to_next_dial.clear()
            for values in self.split.values():
                values.clear()
            self.queued_ids = {"a": [], "c": []}
            self.create_rtts = []
        if profile == "start" and self.profile_dir:
            import cProfile

            self._profiler = cProfile.Profile()
            self._profiler.enable()
        elif profile == "stop" and self._profiler is not None:
            self._profiler.disable()
            self._profiler.dump_stats(os.path.join(self.profile_dir or ".", "controller.prof"))
            self._profiler = None
        return snap

    async def cmd_reactions(self) -> dict[str, Any]:
        r = self.controller.shell.reactions
        return {
            "raw_a": list(r.stasis_to_dial),
            "b": list(r.answer_to_bridge),
            "raw_c": list(r.decline_to_next_dial),
            **{k: list(v) for k, v in self.split.items()},
            "create_rtt": list(self.create_rtts),
            "queued_ids": (list(self.queued_ids["a"]), list(self.queued_ids["c"])),
        }

    async def cmd_settle(self, waiting: int = 0, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the controller holds exactly ``waiting`` calls and has no ARI job running."""
        c = self.controller
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = sum(1 for ch in c.shell.calls.values() if not ch.gone)
            if len(c.engine.calls) == waiting and live == waiting and c.shell.lanes.busy() == 0:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        return self._snapshot()

    async def cmd_memory(self, trace: bool | None = None) -> dict[str, Any]:
        """gc, then RSS and (when tracing) tracemalloc's current traced size."""
        import tracemalloc

        if trace is True and not tracemalloc.is_tracing():
            tracemalloc.start()
        gc.collect()
        out = {
            "rss": _rss(),
            "traced": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None,
        }
        if trace is False and tracemalloc.is_tracing():
            tracemalloc.stop()
        return out

    async def cmd_leak(self) -> dict[str, Any]:
        """Size of what Telephony keeps for calls that are over: CallChannels records (object, its
        ``legs`` set, the id string) and ``_marks`` entries (tuple, float), plus both dicts' tables."""
        shell = self.controller.shell
        gone = [
            ch for ch in shell.calls.values() if ch.gone and ch.call_id not in self.controller.engine.calls
        ]
        if not gone:
            return {"calls": 0, "bytes_per_call": math.nan}
        size = sum(sys.getsizeof(ch) + sys.getsizeof(ch.legs) + sys.getsizeof(ch.call_id) for ch in gone)
        size += sum(sys.getsizeof(m) + sys.getsizeof(m[1]) for m in shell._marks.values())
        size += sys.getsizeof(shell.calls) + sys.getsizeof(shell._marks)
        return {"calls": len(gone), "bytes_per_call": size / len(gone)}

    async def cmd_idle_cpu(self, seconds: float) -> dict[str, Any]:
        cpu0, t0 = _cpu(), time.perf_counter()
        await asyncio.sleep(seconds)
        return {"cpu": _cpu() - cpu0, "wall": time.perf_counter() - t0}


def _chunk_subscriptions(client: Any, per_request: int = SUBSCRIBE_CHUNK) -> None:
    """Work around the controller subscribing every agent endpoint in ONE request.

    ``Telephony.watch_endpoints`` once sent ``POST /applications/acd/subscription?eventSource=`` with all
    endpoints comma-separated: with 500 agents that request line is ~16 KB, over aiohttp's 8,190-byte
    limit in the sim (and Asterisk's own 4 KB request-line buffer), so the request gets 400 and the
    controller drops the socket and retries forever: it never starts. Until the controller chunks
    it, this bench splits the same subscription into requests of ``per_request`` sources.
    """
    original = client.subscribe

    async def subscribe(event_source: Any) -> Any:
        sources = [event_source] if isinstance(event_source, str) else list(event_source)
        result = None
        for i in range(0, len(sources), per_request):
            result = await original(sources[i : i + per_request])
        return result

    client.subscribe = subscribe


# --------------------------------------------------------------------------------------------- orchestration


class Pair:
    """A sim process and a controller process wired together."""

    def __init__(
        self,
        ctx: Any,
        seed: int,
        log: bool,
        logged_out: bool = False,
        profile: str | None = None,
        what_if: frozenset[str] = frozenset(),
        event_filter: bool = True,
    ):
        self.sim = Child(ctx, "sim", SIM_CPU, profile)
        self.ctl = Child(ctx, "ctl", CTL_CPU, profile)
        try:
            info = self.sim.call(
                "start", agents=AGENTS, seed=seed, event_filter=event_filter and "nofilter" not in what_if
            )
            self.sim_cores = info["cores"]
            self.sim_pid = info["pid"]
            cinfo = self.ctl.call(
                "start",
                timeout=120,
                url=info["url"],
                agents=AGENTS,
                seed=seed,
                log=log and "nolog" not in what_if,
                logged_out=logged_out,
                yield_every=YIELD_EVERY if "yield" in what_if else 0,
            )
            self.ctl_cores = cinfo["cores"]
            self.ctl_pid = cinfo["pid"]
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        self.ctl.close()
        self.sim.close()


def measure(
    pair: Pair,
    *,
    mode: str,
    warmup: float,
    duration: float,
    n: int = 0,
    rate: float = 0.0,
    ring: float = 0.0,
    talk: float = 0.01,
    profile: bool = False,
) -> dict[str, Any]:
    """One load phase: start, warm up, measure ``duration`` s, stop and drain, collect."""
    pair.sim.call("load", mode=mode, n=n, rate=rate, ring=ring, talk=talk)
    time.sleep(warmup)
    prof = "start" if profile else None
    busy0, mine0 = _machine_busy(), _cpu()
    s0 = pair.sim.call("mark", profile=prof, reset=True)
    c0 = pair.ctl.call("mark", reset=True, profile=prof)
    time.sleep(duration)
    c1 = pair.ctl.call("mark", profile="stop" if profile else None)
    s1 = pair.sim.call("mark", profile="stop" if profile else None)
    busy1, mine1 = _machine_busy(), _cpu()
    reactions = pair.ctl.call("reactions")
    stopped = pair.sim.call("stop_load")
    wire = pair.sim.call("collect", t0=s0["t"], t1=s1["t"], queued=reactions["queued_ids"])
    settled = pair.ctl.call("settle", waiting=0)
    wall = c1["t"] - c0["t"]
    setups = c1["connected"] - c0["connected"]
    ctl_cpu = c1["cpu"] - c0["cpu"]
    sim_cpu = s1["cpu"] - s0["cpu"]
    # CPU the rest of the machine used meanwhile (other processes compete for both cores)
    foreign = (busy1 - busy0) - (ctl_cpu + sim_cpu + mine1 - mine0)
    return {
        "mode": mode,
        "n": n,
        "rate": rate,
        "foreign_cores": max(0.0, foreign) / wall,
        "ring": ring,
        "talk": talk,
        "wall": wall,
        "setups": setups,
        "setups_per_s": setups / wall,
        "sim_connected_per_s": wire["connected"] / (s1["t"] - s0["t"]),
        "in_flight_start": s0["in_flight"],
        "in_flight_end": s1["in_flight"],
        "waiting_end": c1["waiting"],
        "ctl_cpu_util": ctl_cpu / wall,
        "sim_cpu_util": sim_cpu / (s1["t"] - s0["t"]),
        "ctl_ms_per_setup": ctl_cpu / setups * 1e3 if setups else math.nan,
        "sim_ms_per_setup": sim_cpu / setups * 1e3 if setups else math.nan,
        "requests_per_setup": (c1["requests"] - c0["requests"]) / setups if setups else math.nan,
        "events_per_setup": (c1["events"] - c0["events"]) / setups if setups else math.nan,
        "errors": c1["errors"] - c0["errors"] + c1["lane_failures"] - c0["lane_failures"],
        "ctl_rss_mb": c1["rss"] / 2**20,
        "a": _ms(reactions["a"]),
        "b": _ms(reactions["b"]),
        "c": _ms(reactions["c"]),
        "a_own": _ms(reactions["a_own"]),
        "c_own": _ms(reactions["c_own"]),
        "a_queued": _ms(reactions["a_queued"]),
        "c_queued": _ms(reactions["c_queued"]),
        "a_freed": _ms(reactions["a_freed"]),
        "c_freed": _ms(reactions["c_freed"]),
        "a_freed_own": _ms(reactions["a_freed_own"]),
        "c_freed_own": _ms(reactions["c_freed_own"]),
        "raw_a": _ms(reactions["raw_a"]),
        "raw_c": _ms(reactions["raw_c"]),
        "create_rtt": _ms(reactions["create_rtt"]),
        "sim_lag": s1["lag"],
        "a_wire": _ms(wire["a_wire"]),
        "b_wire": _ms(wire["b_wire"]),
        "c_wire": _ms(wire["c_wire"]),
        "gc": c1["gc"],
        "bursts": c1["bursts"],
        "warnings_window": c1["warnings"],
        "warnings_teardown": {
            k: v - c1["warnings"].get(k, 0)
            for k, v in settled["warnings"].items()
            if v - c1["warnings"].get(k, 0)
        },
        "lag": c1["lag"],
        "leaked_shell_calls": settled["shell_calls_gone"],
        "leaked_marks": settled["marks"],
        "stuck": stopped["stuck"],
        "left_in_controller": settled["engine_calls"],
    }


def retained_per_call(pair: Pair) -> dict[str, Any]:
    """Bytes the controller keeps for each finished call it never forgets (see CtlSide.cmd_leak)."""
    pair.ctl.call("settle", waiting=0)
    return pair.ctl.call("leak")


def waiting_scenario(
    ctx: Any, seed: int, log: bool, n: int, idle: float, event_filter: bool = True
) -> dict[str, Any]:
    pair = Pair(ctx, seed, log, logged_out=True, event_filter=event_filter)
    try:
        idle0 = pair.ctl.call("idle_cpu", seconds=idle)  # baseline: the bench's own 10 ms ticker etc.
        base = pair.ctl.call("settle", waiting=0)
        mem0 = pair.ctl.call("memory")
        s0 = pair.sim.call("mark")
        pair.sim.call("place_waiting", n=n, rate=500.0)
        admitted = pair.ctl.call("settle", waiting=n)
        s1 = pair.sim.call("mark")
        mem1 = pair.ctl.call("memory")
        idle_cpu = pair.ctl.call("idle_cpu", seconds=idle)
        pair.sim.call("hangup_all")
        ended = pair.ctl.call("settle", waiting=0)
        # second pass with tracemalloc: Python-level bytes held per waiting call
        t0 = pair.ctl.call("memory", trace=True)
        pair.sim.call("place_waiting", n=n, rate=500.0)
        pair.ctl.call("settle", waiting=n)
        t1 = pair.ctl.call("memory")
        pair.sim.call("hangup_all")
        pair.ctl.call("settle", waiting=0)
        t2 = pair.ctl.call("memory", trace=False)
    finally:
        pair.close()
    # admit CPU is measured around the arrival phase, including the controller's idle time
    # between arrivals, which is ~0 (an idle asyncio loop uses no CPU).
    return {
        "n": n,
        "waiting": admitted["waiting"],
        "rss_per_call_kb": (mem1["rss"] - mem0["rss"]) / n / 1024,
        "traced_per_call_kb": (t1["traced"] - t0["traced"]) / n / 1024,
        "traced_left_kb": (t2["traced"] - t0["traced"]) / 1024,
        "admit_cpu_ms": (admitted["cpu"] - base["cpu"]) / n * 1e3,
        "end_cpu_ms": (ended["cpu"] - admitted["cpu"] - idle_cpu["cpu"]) / n * 1e3,
        "idle_cpu_util": idle_cpu["cpu"] / idle_cpu["wall"],
        "idle_base_util": idle0["cpu"] / idle0["wall"],
        "idle_us_per_call_s": max(0.0, idle_cpu["cpu"] / idle_cpu["wall"] - idle0["cpu"] / idle0["wall"])
        / n
        * 1e6,
        "sim_admit_cpu_ms": (s1["cpu"] - s0["cpu"]) / n * 1e3,
        "ctl_rss_mb": mem1["rss"] / 2**20,
        "requests": admitted["requests"] - base["requests"],
        "events": admitted["events"] - base["events"],
        "leaked_shell_calls": ended["shell_calls_gone"],
        "leaked_marks": ended["marks"],
    }


# --------------------------------------------------------------------------------------------- report


def _f(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _lat(d: dict[str, float]) -> str:
    return f"{_f(d['p50'], '.2f')} / {_f(d['p99'], '.2f')}"


def _pc(x: float) -> str:
    return f"{_f(x * 100, '.0f')} %"


def _load(r: dict[str, Any]) -> str:
    return f"N={r['n']}" if r["mode"] == "closed" else f"{r['rate']:.0f}/s offered"


def _capacity_table(rows: list[dict[str, Any]], label: str = "N in flight") -> list[str]:
    out = [
        f"| {label} | setups/s | ctl CPU | sim CPU | ctl ms/setup | ctl core cap | sim ms/setup "
        "| REST req/setup | events/setup | ctl GC time | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.get('label', r['n'])} | {_f(r['setups_per_s'], '.0f')} | {_pc(r['ctl_cpu_util'])} "
            f"| {_pc(r['sim_cpu_util'])} | {_f(r['ctl_ms_per_setup'], '.2f')} "
            f"| {_f(1e3 / r['ctl_ms_per_setup'], '.0f')}/s | {_f(r['sim_ms_per_setup'], '.2f')} "
            f"| {_f(r['requests_per_setup'], '.1f')} | {_f(r['events_per_setup'], '.1f')} "
            f"| {_f(r['gc']['total_ms'] / r['wall'] / 10, '.1f')} % | {_f(r['foreign_cores'], '.2f')} cores |"
        )
    return out


def _react(r: dict[str, Any], key: str, own: bool = False) -> tuple[dict[str, float], bool]:
    """(a)/(c) when an agent was free; when most calls found none (N > agents, or overload), the
    reaction to the event that freed an agent instead (starred)."""
    fresh = r[key + ("_own" if own else "")]
    if r[key]["n"] >= r[key + "_freed"]["n"]:
        return fresh, False
    return r[key + ("_freed_own" if own else "_freed")], True


def _lat_r(r: dict[str, Any], key: str, own: bool = False) -> str:
    d, starred = _react(r, key, own)
    return _lat(d) + (" *" if starred else "")


def _latency_table(rows: list[dict[str, Any]], label: str = "load") -> list[str]:
    out = [
        f"| {label} | setups/s | ctl CPU | sim CPU | (a) stasis->dial | (b) answer->bridge "
        "| (c) decline->next dial | (a) wire | (b) wire | (c) wire | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.get('label', _load(r))} | {_f(r['setups_per_s'], '.0f')} | {_pc(r['ctl_cpu_util'])} "
            f"| {_pc(r['sim_cpu_util'])} | {_lat_r(r, 'a')} | {_lat(r['b'])} | {_lat_r(r, 'c')} "
            f"| {'- / -' if _react(r, 'a')[1] else _lat(r['a_wire'])} | {_lat(r['b_wire'])} "
            f"| {'- / -' if _react(r, 'c')[1] else _lat(r['c_wire'])} | {_f(r['foreign_cores'], '.2f')} |"
        )
    return out


def _diagnostics_table(rows: list[dict[str, Any]], label: str = "load") -> list[str]:
    out = [
        f"| {label} | originate RTT | (a) own | (c) own | ctl loop lag p99 / max "
        "| longest event burst | ctl GC max pause | sim loop lag p99 / max | queued (a) | queued (c) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        qa, qc = r["a_queued"], r["c_queued"]
        out.append(
            f"| {r.get('label', _load(r))} | {_lat(r['create_rtt'])} "
            f"| {_lat_r(r, 'a', own=True)} | {_lat_r(r, 'c', own=True)} "
            f"| {_f(r['lag']['p99_ms'], '.1f')} / {_f(r['lag']['max_ms'], '.0f')} "
            f"| {r['bursts']['max_events']} events, {_f(r['bursts']['max_ms'], '.0f')} ms "
            f"| {_f(r['gc']['max_ms'], '.1f')} ms "
            f"| {_f(r['sim_lag']['p99_ms'], '.1f')} / {_f(r['sim_lag']['max_ms'], '.0f')} "
            f"| {qa['n']} (p50 {_f(qa['p50'], '.0f')}) | {qc['n']} (p50 {_f(qc['p50'], '.0f')}) |"
        )
    return out


def report(results: dict[str, Any]) -> str:
    out: list[str] = []
    env = results["env"]
    out.append(
        f"ARI benchmark: controller (CPU {env['ctl_cores']}) + simulated Asterisk (CPU {env['sim_cores']}), "
        f"{AGENTS} agents, loopback HTTP/WS, clock speed 1.0, controller logging "
        f"{'INFO text -> /dev/null' if env['log'] else 'off'}"
    )
    out.append(
        f"python {env['python']}, {env['machine']}, {env['cpus']} CPUs, seed {env['seed']}"
        + (" (QUICK smoke run: short windows, N=200 only)" if env["quick"] else "")
        + ("" if env.get("event_filter", True) else "; ARI event filter refused (every event sent)")
    )
    out.append(
        "'other load' = CPU used by other processes on the machine during the window (cores); "
        "above ~0.2 the figures are disturbed."
    )
    out.append("")
    if results["capacity"]:
        out.append(
            "1. Capacity: N calls in flight, agents answer at once, talk ~10 ms (the processes are the limit)"
        )
        out += _capacity_table(results["capacity"])
        out.append("")
    if results["latency"]:
        out.append(
            "2. Reactions at ~200 setups/s with N calls in flight: ms, p50 / p99 "
            f"({DECLINE_PCT} % of calls declined by their first agent)"
        )
        out += _latency_table(results["latency"])
        out.append("")
        out += _diagnostics_table(results["latency"])
        out.append(
            "samples (a/b/c): "
            + ", ".join(
                f"{_load(r)}: {_react(r, 'a')[0]['n']}/{r['b']['n']}/{_react(r, 'c')[0]['n']}"
                for r in results["latency"]
            )
        )
        out.append(
            f"* no agent is ever free at N > {AGENTS}: every call queues, so (a)/(c) there run from the "
            "event that freed an agent (the previous call's end) to the queued call's dial; wire: -"
            " (the same applies to an overloaded paced run)"
        )
        out.append("")
    if results["paced"]:
        out.append("3. Paced Poisson arrivals (ring 0.1-0.3 s, talk ~1 s): ms, p50 / p99")
        out += _latency_table(results["paced"])
        out.append("")
        out += _diagnostics_table(results["paced"])
        out.append(
            "kept up: "
            + ", ".join(
                f"{_load(r)} -> {r['setups_per_s']:.0f}/s connected, in flight {r['in_flight_start']:.0f} -> "
                f"{r['in_flight_end']:.0f}"
                for r in results["paced"]
            )
        )
        out.append("")
    w = results.get("waiting")
    if w:
        out.append(
            f"4. Waiting calls: {w['n']} callers parked with music on hold, all {AGENTS} agents logged out"
        )
        out.append(
            "| waiting | RSS/call | tracemalloc/call | CPU to admit one | CPU while waiting | CPU to end one "
            "| sim CPU to admit one | ctl RSS |"
        )
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        out.append(
            f"| {w['waiting']} | {_f(w['rss_per_call_kb'], '.1f')} KiB "
            f"| {_f(w['traced_per_call_kb'], '.1f')} KiB "
            f"| {_f(w['admit_cpu_ms'], '.2f')} ms | {_f(w['idle_us_per_call_s'], '.2f')} µs/s "
            f"({_f(w['idle_cpu_util'] * 100, '.2f')} % of a core, {_f(w['idle_base_util'] * 100, '.2f')} % "
            f"with none) | {_f(w['end_cpu_ms'], '.2f')} ms "
            f"| {_f(w['sim_admit_cpu_ms'], '.2f')} ms | {_f(w['ctl_rss_mb'], '.0f')} MiB |"
        )
        out.append(
            f"(admitting {w['n']} calls: {w['requests']} REST requests, {w['events']} events; after they all "
            f"hung up the controller still held {w['leaked_shell_calls']} CallChannels and "
            f"{w['leaked_marks']} "
            f"reaction marks; tracemalloc +{_f(w['traced_left_kb'], '.0f')} KiB, mostly aiohttp's pooled "
            "connections, bounded)"
        )
        out.append("")
    if results.get("what_if"):
        out.append(
            "5. What-if (N=200; capacity, then reactions at ~200 setups/s): the same runs with "
            "candidate fixes "
            "emulated from outside the controller"
        )
        out += _capacity_table([r["capacity"] for r in results["what_if"]], "variant")
        out.append("")
        out += _latency_table([r["latency"] for r in results["what_if"]], "variant")
        out.append("")
        out += _diagnostics_table([r["latency"] for r in results["what_if"]], "variant")
        out.append("")
    leaks = [
        r for r in results["capacity"] + results["latency"] + results["paced"] if r["leaked_shell_calls"]
    ]
    if leaks:
        r = leaks[-1]
        ret = results.get("retained")
        out.append(
            "Leak: after every call of a phase had ended, Telephony.calls still held "
            f"{r['leaked_shell_calls']} records and Telephony._marks {r['leaked_marks']} (one each per "
            "connected call, never dropped)"
            + (
                f"; about {ret['bytes_per_call']:.0f} bytes per call (sys.getsizeof of what is kept, "
                f"{ret['calls']} calls)"
                if ret
                else ""
            )
            + "."
        )
    left = results.get("sim_leftovers")
    if left and (left["channels"] or left["holding_bridges"] or left["other_bridges"]):
        out.append(
            f"Left in the simulated Asterisk after every call had ended: {left['holding_bridges']} holding "
            f"bridges, {left['other_bridges']} other bridges, {left['channels']} channels."
        )
    phases = results["capacity"] + results["latency"] + results["paced"]
    for key, when in (
        ("warnings_window", "inside measurement windows"),
        ("warnings_teardown", "at teardown"),
    ):
        warn: dict[str, int] = {}
        for r in phases:
            for k, v in r[key].items():
                warn[k] = warn.get(k, 0) + v
        out.append(
            f"Controller warnings {when}: "
            + ("; ".join(f"{v} x {k!r}" for k, v in sorted(warn.items(), key=lambda kv: -kv[1])) or "none")
        )
    errors = sum(r["errors"] for r in results["capacity"] + results["latency"] + results["paced"])
    out.append(f"ARI errors and failed jobs inside measurement windows: {errors}")
    out.append("")
    out.append("Targets")
    for line in results["verdict"]:
        out.append(f"- {line}")
    return "\n".join(out)


def verdict(results: dict[str, Any]) -> list[str]:
    lines = []
    caps = results["capacity"]
    if caps:
        met = [r for r in caps if r["setups_per_s"] >= TARGET_SETUPS]
        verdict_word = "MET" if len(met) == len(caps) else "PARTLY MET" if met else "NOT MET"
        core_caps = [1e3 / r["ctl_ms_per_setup"] for r in caps if not math.isnan(r["ctl_ms_per_setup"])]
        sim_bound = [r for r in caps if r["sim_cpu_util"] > 0.9 and r["ctl_cpu_util"] < 0.9]
        ctl_bound = [r for r in caps if r["ctl_cpu_util"] > 0.9]
        per_n = ", ".join(f"N={r['n']}: {r['setups_per_s']:.0f}/s" for r in caps)
        lines.append(
            f">= {TARGET_SETUPS:.0f} setups/s with the controller on one core: {verdict_word} ({per_n}; "
            f"controller CPU per setup projects {min(core_caps):.0f}-{max(core_caps):.0f}/s "
            "for one fully used core"
            + (
                f"; controller saturated at N={', '.join(str(r['n']) for r in ctl_bound)}"
                if ctl_bound
                else ""
            )
            + (
                f"; the sim was the bottleneck at N={', '.join(str(r['n']) for r in sim_bound)}"
                if sim_bound
                else ""
            )
            + ")"
        )
    rows = results["latency"] + [r for r in results["paced"] if 150 <= r["rate"] <= 250]
    if rows:
        worst = max(
            v
            for r in rows
            for v in (_react(r, "a")[0]["p99"], r["b"]["p99"], _react(r, "c")[0]["p99"])
            if not math.isnan(v)
        )
        lines.append(
            f"p99 reaction <= {TARGET_P99_MS:.0f} ms at ~200 setups/s: "
            f"{'MET' if worst <= TARGET_P99_MS else 'NOT MET'} "
            f"(worst p99 of (a)/(b)/(c) over {len(rows)} runs "
            f"at ~200 setups/s: {worst:.1f} ms)"
        )
    disturbed = [r for r in caps + results["latency"] + results["paced"] if r["foreign_cores"] > FOREIGN_MAX]
    if disturbed:
        lines.append(
            f"{len(disturbed)} phase(s) ran while other processes used > {FOREIGN_MAX} cores "
            "(see 'other load'): rerun on a quiet machine before trusting them"
        )
    return lines


# --------------------------------------------------------------------------------------------- main


QUIET_WAIT = 30.0  # seconds to wait, before a phase, for other processes to leave the cores alone


def wait_quiet(max_wait: float) -> float:
    """Wait up to ``max_wait`` s until the machine's busy CPU (ours is idle now) stays under
    FOREIGN_MAX cores for 2 s; returns the last 2-second reading (cores)."""
    deadline = time.monotonic() + max_wait
    while True:
        b0 = _machine_busy()
        time.sleep(2.0)
        load = (_machine_busy() - b0) / 2.0
        if math.isnan(load) or load <= FOREIGN_MAX or time.monotonic() >= deadline:
            return load


def measure_clean(pair: Pair, retries: int, **kw: Any) -> dict[str, Any]:
    """``measure`` on a quiet machine if possible; measured again (up to ``retries`` times) when
    other processes loaded the cores during the window. Keeps the least disturbed run."""
    best: dict[str, Any] | None = None
    for attempt in range(retries + 1):
        if retries:
            load = wait_quiet(QUIET_WAIT)
            if load > FOREIGN_MAX:
                _progress(f"other processes keep {load:.2f} cores busy; measuring anyway")
        r = measure(pair, **kw)
        if best is None or r["foreign_cores"] < best["foreign_cores"]:
            best = r
        if r["foreign_cores"] <= FOREIGN_MAX:
            break
        if attempt < retries:
            _progress(f"other processes used {r['foreign_cores']:.2f} cores during the window: again")
    assert best is not None
    return best


def latency_shape(n: int) -> tuple[float, float]:
    """(mean ring, mean talk) giving ~LATENCY_RATE setups/s with ``n`` calls in flight."""
    if n <= AGENTS:
        hold = n / LATENCY_RATE  # Little: N = rate x time in system
        return 0.2 * hold, 0.8 * hold
    return 0.5, AGENTS / LATENCY_RATE - 0.5  # all agents busy: 500 / (ring + talk) = 200/s, the rest queue


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    quick = args.quick
    warmup, duration = (1.0, 2.0) if quick else (3.0, args.duration)
    levels = [200] if quick else [50, 200, 1000]
    retries = 0 if quick else args.retries
    log = not args.no_log
    results: dict[str, Any] = {"capacity": [], "latency": [], "paced": [], "waiting": None, "what_if": []}
    profile_dir = args.profile
    if profile_dir:
        os.makedirs(profile_dir, exist_ok=True)
    event_filter = not args.no_event_filter
    pair = Pair(ctx, args.seed, log, profile=profile_dir, event_filter=event_filter)
    results["env"] = {
        "ctl_cores": pair.ctl_cores,
        "sim_cores": pair.sim_cores,
        "log": log,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "seed": args.seed,
        "quick": quick,
        "event_filter": event_filter,
    }
    try:
        for n in levels:
            r = measure_clean(
                pair,
                retries,
                mode="closed",
                n=n,
                ring=0.0,
                talk=0.01,
                warmup=warmup,
                duration=duration,
                profile=bool(profile_dir) and n == 200,
            )
            results["capacity"].append(r)
            _progress(
                f"capacity N={n}: {r['setups_per_s']:.0f} setups/s, ctl {r['ctl_cpu_util']:.0%}, "
                f"sim {r['sim_cpu_util']:.0%}, other {r['foreign_cores']:.2f} cores"
            )
        for n in levels:
            ring, talk = latency_shape(n)
            r = measure_clean(
                pair,
                retries,
                mode="closed",
                n=n,
                ring=ring,
                talk=talk,
                warmup=warmup + (3.0 if n > AGENTS and not quick else 0.0),
                duration=duration,
            )
            results["latency"].append(r)
            _progress(
                f"reactions N={n}: {r['setups_per_s']:.0f} setups/s, p99 a/b/c "
                f"{r['a']['p99']:.1f}/{r['b']['p99']:.1f}/{r['c']['p99']:.1f} ms, "
                f"other {r['foreign_cores']:.2f}"
            )
        for rate in [] if quick else args.rates:
            r = measure_clean(
                pair, retries, mode="poisson", rate=rate, ring=0.2, talk=1.0, warmup=warmup, duration=duration
            )
            results["paced"].append(r)
            _progress(
                f"paced {rate:.0f}/s: {r['setups_per_s']:.0f} setups/s, p99 a/b/c "
                f"{r['a']['p99']:.1f}/{r['b']['p99']:.1f}/{r['c']['p99']:.1f} ms, "
                f"other {r['foreign_cores']:.2f}"
            )
        results["retained"] = retained_per_call(pair)
        results["sim_leftovers"] = pair.sim.call("leftovers")
    finally:
        pair.close()
    n_wait = 200 if quick else args.waiting
    results["waiting"] = waiting_scenario(
        ctx, args.seed, log, n_wait, idle=1.0 if quick else 5.0, event_filter=event_filter
    )
    _progress(f"waiting: {results['waiting']['rss_per_call_kb']:.1f} KiB RSS per waiting call")
    if args.what_if and not quick:
        for variant in WHAT_IF:
            what_if = frozenset(variant.split("+")) - {"as-is"}
            pair = Pair(ctx, args.seed, log, what_if=what_if, event_filter=event_filter)
            try:
                cap = measure_clean(
                    pair, retries, mode="closed", n=200, ring=0.0, talk=0.01, warmup=warmup, duration=duration
                )
                ring, talk = latency_shape(200)
                lat = measure_clean(
                    pair,
                    retries,
                    mode="closed",
                    n=200,
                    ring=ring,
                    talk=talk,
                    warmup=warmup,
                    duration=duration,
                )
            finally:
                pair.close()
            cap["label"] = lat["label"] = variant
            results["what_if"].append({"variant": variant, "capacity": cap, "latency": lat})
            _progress(
                f"what-if {variant}: {cap['setups_per_s']:.0f} setups/s at ctl {cap['ctl_cpu_util']:.0%}; "
                f"p99 a/b/c {lat['a']['p99']:.1f}/{lat['b']['p99']:.1f}/{lat['c']['p99']:.1f} ms"
            )
    results["verdict"] = verdict(results)
    return results


# "nofilter": the sim refuses the eventFilter (every event is sent, as before issue 14);
# "nolog": controller logging off; "yield": the event consumer yields every YIELD_EVERY events.
WHAT_IF = ("as-is", "nolog", "nofilter", "yield", "nolog+yield")


def _progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py ari", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 20 s)")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON as well")
    parser.add_argument("--no-log", action="store_true", help="run the controller without logging")
    parser.add_argument(
        "--no-event-filter",
        action="store_true",
        help="the sim refuses PUT /applications/{app}/eventFilter: every event is sent (as before issue 14)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per load phase")
    parser.add_argument(
        "--rates", type=float, nargs="*", default=[200.0, 300.0], help="paced rates (calls/s)"
    )
    parser.add_argument("--waiting", type=int, default=1000, help="callers in the waiting-call scenario")
    parser.add_argument(
        "--retries", type=int, default=2, help="re-measure a phase disturbed by other processes"
    )
    parser.add_argument("--what-if", action="store_true", help="also run the candidate-fix variants (+2 min)")
    parser.add_argument("--profile", metavar="DIR", help="cProfile both processes (capacity, N=200) into DIR")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run(args)
    print(report(results))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    if args.json:
        print(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
