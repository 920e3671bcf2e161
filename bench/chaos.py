"""Chaos suite: randomized traffic and faults on the simulator, two hot-standby replicas, invariants.

One run (``run(seed, calls, faults)``): a simulated Asterisk with agents whose phones answer,
decline, ring out or are busy at random; callers with random patience and talk time, dialling 101
through the shipped ``asterisk-config/extensions.conf`` (its ``Stasis()`` retry loop, then
``[acd-fallback]``; ``ACD_STASIS_RETRIES`` raised to ``STASIS_RETRIES`` clock s for this 20x clock);
two replicas (``controller.ha``) on one PostgreSQL schema. While the calls come in, faults are
injected at random moments (``FAULTS``): the events websocket dropped, REST requests failing (5xx)
or slow, events delayed, the active killed (``kill -9``) or frozen (its renewals stop, as under
SIGSTOP) with a fresh replica started in its place as a supervisor would, the database unreachable
from the active for a while, Asterisk restarted (every channel gone). Then every fault is lifted,
every caller is left to finish, the replicas stop, and the invariants are checked on independent
evidence only: the simulator's records (what each caller and phone experienced, what is left in it)
and the store's rows, never the engines' own state.

Invariants (``Report.violations``):
- ``caller_lost``: a caller ended by Asterisk without having talked to an agent and not by a
  restart of Asterisk (each caller talks, hangs up by themselves, or is cut by the restart);
- ``caller_stuck``: a caller still there at the end;
- ``double_offer``: a phone rang for two calls at once (two INVITEs alive at the same time);
- ``unaccepted_bridge``: a caller talked to a phone that had not answered that INVITE;
- ``leftover``: channels or bridges left in the simulator at the end;
- ``offer_rows``: an INVITE without exactly its offer row, for the phone that rang (the row is
  committed before the phone rings, so a kill -9 cannot lose it);
- ``offer_open``: an offer row without an outcome at the end (rows a dead term left open are
  closed by the next active: ``interrupted``/``accepted``, detail ``takeover``);
- ``call_rows``: a caller that was answered or had an agent rung without exactly one call row;
- ``call_open``: a call row without an end (outcome) at the end;
- ``metrics``: the last active's ``acd_offers_total`` differs from the offer rows of its term;
- ``fallback_while_served``: a caller reached the dialplan's fallback although its retry window
  was not a whole ``STASIS_RETRIES`` s without any controller holding the app's websocket (the
  sim's record of it).

Callers that hung up before any controller acted on them (never answered, no agent rung: no row
is possible) are counted apart (``unseen``), as are callers whose ``Stasis()`` failed at least
once and who were then taken by the app (``retried_in``), callers sent to the fallback after a
whole window without controller (``fallback``: the sim answers them, its ``Queue()`` and
``Playback()`` are no-ops, and hangs up: not ``caller_lost``, no row expected) and callers refused
by a ``Stasis()`` with nothing after it (``refused``: none with the shipped dialplan).

What a seed reproduces, and what it does not: ``make_plan(seed, ...)`` draws everything random
up front, before anything runs, into a ``Plan``: each call's arrival time, patience and talk time,
each phone's behaviour for its 1st, 2nd, ... INVITE, each fault's time, kind and parameters, and
each replica's engine seed. Nothing is drawn at a wall-clock moment, so ``--seed N`` always replays
the same plan (``Plan.digest()``, printed in the report, proves it). What is not reproducible is
the interleaving of asyncio tasks with wall-clock time: which replica is active when a fault
fires, which call rings which phone (so which planned behaviour meets which call), how long a
takeover takes. A failing seed is re-run and, once understood, becomes a regression test
(``tests/ha/test_chaos_plan.py`` pins a plan's digest). CI: ``tests/ha/test_chaos.py`` (a short
set). Long run:
``.venv/bin/python -m bench.chaos --runs 20 --calls 500`` (figures in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import statistics
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.pgschema import PG_URL, scratch_schema
from bench.setups import one_queue
from controller.acd.setup import AcdSetup, QueueConfig
from controller.app import Controller
from controller.clock import Clock
from controller.config import load_settings
from controller.ha.replica import Replica
from controller.sim import Answer, Busy, Decline, NoAnswer, SimAsterisk
from controller.store import create_engine, upgrade
from controller.store.books import CLOSED_CALL_DETAIL, channel_of
from controller.store.history import CallRow, OfferRow

SPEED = 20.0  # clock seconds per wall second
FAULTS = ("ws_drop", "rest_5xx", "rest_slow", "event_delay", "kill", "freeze", "db_down", "asterisk_restart")
ADMIN = "chaos-admin-token"
EXTENSIONS = Path(__file__).resolve().parents[1] / "asterisk-config" / "extensions.conf"
CUSTOMER_EXTEN = "101"  # [from-customers] 101 -> Stasis(acd,support): _setup's queue "support"
# ACD_STASIS_RETRIES for the run, in clock s (one try a second). A takeover here is ACD_HA_TTL
# 1 wall s = 20 clock s (SPEED) + the resync: measured p50 1.1 / p99 1.64 wall s = 22 / 33 clock s;
# websocket refusals last at most 5 clock s. 60 covers the slowest takeover measured with ~80 %
# margin (a loaded machine stretches wall time), so a fallback means an outage longer than that.
# The shipped 10 fits the default TTL of 5 real s, not this 20x clock.
STASIS_RETRIES = 60


@dataclass
class Report:
    seed: int
    calls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)
    unseen: int = 0  # callers gone before any controller acted on them: no row possible
    closed: Counter[str] = field(default_factory=Counter)  # rows closed at takeover, by outcome
    takeovers: list[float] = field(default_factory=list)
    invites: int = 0
    wall: float = 0.0
    plan_digest: str = ""
    retried_in: int = 0  # callers refused by Stasis() at least once, then taken by the app
    fallback: int = 0  # callers who reached [acd-fallback] (the retry window ran out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "plan": self.plan_digest,
            "calls": self.calls,
            "invites": self.invites,
            "faults": dict(self.faults),
            "outcomes": dict(self.outcomes),
            "violations": dict(self.violations),
            "unseen": self.unseen,
            "refused": self.outcomes.get("refused", 0),
            "retried_in": self.retried_in,
            "fallback": self.fallback,
            "closed_at_takeover": dict(self.closed),
            "takeovers": [round(t, 3) for t in self.takeovers],
            "wall_s": round(self.wall, 1),
            "details": self.details[:20],
        }


def _setup(agents: int) -> AcdSetup:
    return one_queue(agents, QueueConfig("support", ring_timeout=8.0, wrapup=1.0, max_no_answer=1000))


# ---------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class CallPlan:
    at: float  # clock s after the traffic starts
    hangup_after: float  # patience
    talk_time: float


@dataclass(frozen=True)
class FaultPlan:
    at: float  # clock s after the traffic starts
    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str) -> Any:
        return dict(self.params)[name]


@dataclass(frozen=True)
class Plan:
    """Everything random in a run, drawn from the seed before the run starts."""

    seed: int
    calls: tuple[CallPlan, ...]
    phones: tuple[tuple[str, tuple[tuple[Any, ...], ...]], ...]  # (phone, behaviour per INVITE)
    faults: tuple[FaultPlan, ...]
    engine_seeds: tuple[int, ...]  # replica n (1, 2, ...) runs its engines with engine_seeds[n - 1]

    def digest(self) -> str:
        """A short hash of the whole plan: equal digests, same plan."""
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def engine_seed(self, n: int) -> int:
        return self.engine_seeds[(n - 1) % len(self.engine_seeds)]


def _draw_behaviour(rng: random.Random) -> tuple[Any, ...]:
    r = rng.random()
    if r < 0.6:
        return ("answer", rng.uniform(0.5, 4.0), rng.uniform(8, 40))
    if r < 0.75:
        return ("decline", rng.uniform(0.5, 3.0))
    if r < 0.9:
        return ("no_answer",)
    return ("busy", 0.2)


def _behaviour(spec: tuple[Any, ...]) -> Any:
    kind = spec[0]
    if kind == "answer":
        return Answer(after=spec[1], hangup_after=spec[2])
    if kind == "decline":
        return Decline(after=spec[1])
    if kind == "no_answer":
        return NoAnswer()
    return Busy(after=spec[1])


def _draw_fault(rng: random.Random, at: float, kind: str) -> FaultPlan:
    params: dict[str, Any] = {}
    if kind == "ws_drop":
        params = {"refuse_for": rng.uniform(0, 4)}
    elif kind == "rest_5xx":
        # /channels is the originate that rings an agent (the one ring request)
        paths = [r"/channels", r"/channels/[^/]+/answer", r"/bridges/[^/]+/addChannel", r"/bridges"]
        path = rng.choice(paths)
        params = {
            "path": path,
            "status": rng.choice([500, 503]),
            "times": rng.randint(1, 3),
            "apply": rng.random() < 0.3,
        }
    elif kind == "rest_slow":
        path = rng.choice([r"/channels", r"/channels/[^/]+/answer", r"/bridges/[^/]+/addChannel"])
        params = {"path": path, "delay": rng.uniform(0.5, 3.0), "times": rng.randint(1, 5)}
    elif kind == "event_delay":
        params = {"delay": rng.uniform(0.1, 1.0), "for": rng.uniform(2, 10)}
    elif kind == "db_down":
        params = {"wall": rng.uniform(0.2, 2.0)}
    elif kind == "asterisk_restart":
        params = {"refuse_for": rng.uniform(1, 5)}
    return FaultPlan(at, kind, tuple(sorted(params.items())))


MAX_REPLICAS = 64  # engine seeds drawn; replica 65 reuses replica 1's (still from the plan)


def make_plan(seed: int, calls: int, faults: tuple[str, ...] = FAULTS, agents: int = 4) -> Plan:
    """Draw the whole run from ``seed``: same arguments, same plan, whatever happens at run time.

    Each part has its own generator derived from the seed, so e.g. more calls do not shift the
    fault schedule's draws."""
    traffic = random.Random(f"{seed}:traffic")
    calls_plan = tuple(
        CallPlan(n * 2.0 + traffic.uniform(-1, 1), traffic.uniform(20, 150), traffic.uniform(5, 40))
        for n in range(calls)
    )
    phones_rng = random.Random(f"{seed}:phones")
    per_phone = max(8, calls)  # INVITEs one phone may get; past the end the last behaviour repeats
    phones = tuple(
        (f"a{i}", tuple(_draw_behaviour(phones_rng) for _ in range(per_phone))) for i in range(agents)
    )
    fault_rng = random.Random(f"{seed}:faults")
    horizon = calls * 2.0  # clock s of traffic: one call every 2 s on average
    times = sorted(fault_rng.uniform(5, horizon) for _ in range(max(1, calls // 15)))
    faults_plan = tuple(_draw_fault(fault_rng, t, fault_rng.choice(faults)) for t in times) if faults else ()
    engines = random.Random(f"{seed}:engines")
    engine_seeds = tuple(engines.randrange(1 << 30) for _ in range(MAX_REPLICAS))
    return Plan(seed, calls_plan, phones, faults_plan, engine_seeds)


class Chaos:
    def __init__(self, seed: int, calls: int, faults: tuple[str, ...], agents: int, schema: str) -> None:
        self.plan = make_plan(seed, calls, faults, agents)  # nothing random is drawn after this
        self.report = Report(seed, plan_digest=self.plan.digest())
        self.calls = calls
        self.fault_kinds = faults
        self.agents = agents
        self.schema = schema
        self.clock = Clock(speed=SPEED)
        self.sim = SimAsterisk(
            clock=self.clock,
            seed=seed,
            user="acd",
            password="secret",
            duplicate_channel_events=True,
            add_waits_for_playback=True,
        )
        self.setup = _setup(agents)
        self._load_dialplan()
        self.settings = load_settings(
            env_file=None, database_url=PG_URL, ha=True, ha_ttl=1.0, ha_renew=0.2, admin_token=ADMIN
        )
        self.replicas: list[Replica] = []
        self.engines: list[Any] = []
        self.restart_cut: set[str] = set()  # callers cut by a restart of Asterisk
        self.kills = 0
        self.final_roles: dict[str, str] = {}
        self.names = 0

    # ------------------------------------------------------------------ plumbing

    def _load_dialplan(self) -> None:
        """Callers run the shipped extensions.conf (retry loop, then [acd-fallback]), not the sim's
        plain Stasis()-then-hangup: the suite then shows whether the retry loop closes the takeover
        window."""
        dialplan = self.sim.dialplan
        dialplan.load(EXTENSIONS.read_text(encoding="utf-8"))
        # the sim's customers arrive in "from-customer"; the shipped context is "from-customers"
        dialplan[CUSTOMER_EXTEN] = dialplan[f"from-customers,{CUSTOMER_EXTEN}"]
        dialplan.globals["ACD_STASIS_RETRIES"] = str(STASIS_RETRIES)  # the shipped file unchanged
        entry = dialplan[CUSTOMER_EXTEN]
        stasis = dict(entry.program())["Stasis"].split(",")
        if stasis[0] != "acd" or stasis[1] not in self.setup.queues:
            raise ValueError(f"extensions.conf {CUSTOMER_EXTEN}: Stasis({','.join(stasis)}): no such queue")
        self.stasis_priority = entry.label("stasis")
        self.wait_priority = next(i for i, (app, _) in enumerate(entry.program(), 1) if app == "Wait")
        # every retry logs ~6 priorities: the sim's bounded log would drop the early callers
        self.sim.engine.dialplan_log = deque(self.sim.engine.dialplan_log)

    def _controller(self, seed: int) -> Controller:
        return Controller(
            self.setup,
            ari_url=self.sim.base_url,
            ari_user="acd",
            ari_password="secret",
            clock=self.clock,
            seed=seed,
            backoff_initial=0.05,
            backoff_max=0.2,
        )

    async def _replica(self) -> Replica:
        self.names += 1
        seed = self.plan.engine_seed(self.names)
        db = create_engine(PG_URL, schema=self.schema, pool_size=3)
        lease_db = create_engine(PG_URL, schema=self.schema, pool_size=2, max_overflow=0)
        self.engines += [db, lease_db]
        replica = Replica(
            self.settings,
            lambda: self._controller(seed),
            db=db,
            lease_db=lease_db,
            holder=f"r{self.names}",
            http=False,
            services_options={"writer_options": {"linger": 0.005, "retry_initial": 0.05, "retry_max": 0.2}},
        )
        await replica.start()
        self.replicas.append(replica)
        return replica

    def active(self) -> Replica | None:
        for r in self.replicas:
            if r.node.role == "active" and r.controller is not None and not r.node.paused:
                return r
        return None

    async def _keep_two(self) -> None:
        """What a supervisor does: a replica that ended is replaced by a fresh standby."""
        live = [r for r in self.replicas if r.ended is not None and not r.ended.done() and not r.node.paused]
        for _ in range(2 - len(live)):
            await self._replica()

    # ------------------------------------------------------------------ faults

    async def _fault(self, fault: FaultPlan) -> None:
        """Apply one planned fault (its parameters come from the plan, not drawn now)."""
        kind, sim = fault.kind, self.sim
        self.report.faults[kind] += 1
        active = self.active()
        if kind == "ws_drop":
            await sim.drop_connections("acd", refuse_for=fault.get("refuse_for"))
        elif kind == "rest_5xx":
            sim.faults.add(
                "POST",
                fault.get("path"),
                status=fault.get("status"),
                times=fault.get("times"),
                apply=fault.get("apply"),
            )
        elif kind == "rest_slow":
            sim.faults.add("POST", fault.get("path"), delay=fault.get("delay"), times=fault.get("times"))
        elif kind == "event_delay":
            sim.event_delay = fault.get("delay")
            await self.clock.sleep(fault.get("for"))
            sim.event_delay = 0.0
        elif kind == "kill" and active is not None:
            self.kills += 1
            await active.kill()
        elif kind == "freeze" and active is not None:
            active.node.paused = True  # a zombie until Asterisk replaces it and it stops
        elif kind == "db_down" and active is not None:
            await self._db_down(active, fault.get("wall"))
        elif kind == "asterisk_restart":
            for ch in list(sim.engine.channels.values()):
                if ch.id in sim.engine.channels:
                    self.restart_cut.add(ch.id)
                    sim.engine.hangup(ch.id, None, None)
            await sim.drop_connections(refuse_for=fault.get("refuse_for"))
        await self._keep_two()

    async def _db_down(self, replica: Replica, wall: float) -> None:
        """The database unreachable from this replica for ``wall`` s: renewals and writes fail."""
        lease = replica.lease
        writer = replica.services.writer if replica.services is not None else None
        renew, guard = lease.renew, writer.guard if writer else None

        async def down(*_a: Any) -> Any:
            raise ConnectionRefusedError("chaos: database unreachable")

        lease.renew = down  # type: ignore[method-assign]
        if writer is not None:
            writer.guard = down
        await asyncio.sleep(wall)
        lease.renew = renew  # type: ignore[method-assign]
        if writer is not None:
            writer.guard = guard

    # ------------------------------------------------------------------ the run

    async def run(self) -> Report:
        started = time.monotonic()
        await self.sim.start("127.0.0.1", 0)
        for name, specs in self.plan.phones:
            self.sim.add_phone(name, [_behaviour(spec) for spec in specs])  # k-th INVITE: k-th spec
        await self._replica()
        async with asyncio.timeout(30):
            await self.replicas[0].node.became_active.wait()
        await self._replica()
        supervisor = asyncio.ensure_future(self._supervise())
        injector = asyncio.ensure_future(self._inject(self.plan.faults))
        t0 = self.clock.now()
        for n, call in enumerate(self.plan.calls):
            await self.clock.sleep(max(0.0, t0 + call.at - self.clock.now()))
            self.sim.place_call(
                "101",
                caller_number=f"9{n:05d}",
                caller_name=f"Caller {n}",
                hangup_after=call.hangup_after,
                talk_time=call.talk_time,
            )
        await injector
        self.sim.faults.clear()
        self.sim.event_delay = 0.0
        await self._keep_two()
        await self._settle()
        supervisor.cancel()
        self.final_roles = {r.holder: f"{r.node.role}:{r.node.reason or '-'}" for r in self.replicas}
        for r in list(self.replicas):
            await r.stop()
        await self._check()
        for engine in self.engines:
            await engine.dispose()
        await self.sim.stop()
        self.report.wall = time.monotonic() - started
        return self.report

    async def _supervise(self) -> None:
        """Like ``restart: unless-stopped``: a replica that exits is replaced, until the end."""
        while True:
            await asyncio.sleep(0.2)
            await self._keep_two()

    async def _inject(self, faults: tuple[FaultPlan, ...]) -> None:
        t0 = self.clock.now()
        for fault in faults:
            await self.clock.sleep(max(0.0, t0 + fault.at - self.clock.now()))
            await self._fault(fault)

    async def _settle(self) -> None:
        """Every caller finishes by themselves (patience, talk time); then nothing may be left."""

        def done() -> bool:
            return all(c.ended for c in self.sim.calls) and not self.sim.engine.channels

        try:
            await self.sim.wait_for(done, timeout=600, what="every caller gone")
            await self.sim.wait_for(
                lambda: not self.sim.engine.bridges, timeout=120, what="every bridge gone"
            )
        except TimeoutError as exc:
            self.report.details.append(str(exc))

    # ------------------------------------------------------------------ invariants

    def _violate(self, kind: str, detail: str) -> None:
        self.report.violations[kind] += 1
        self.report.details.append(f"{kind}: {detail}")

    def _dialplan_paths(self) -> dict[str, tuple[list[float], int, float | None]]:
        """Per channel, from the sim's dialplan log: its Stasis() tries of the customer extension,
        its retries (Wait()s of the loop) and when it reached [acd-fallback] (None: never)."""
        paths: dict[str, tuple[list[float], int, float | None]] = {}
        for t, ch, ctx, exten, prio in self.sim.engine.dialplan_log:
            tries, retries, fell = paths.get(ch, ([], 0, None))
            if ctx == "acd-fallback":
                fell = t if fell is None else fell
            elif exten == CUSTOMER_EXTEN and prio == self.stasis_priority:
                tries.append(t)
            elif exten == CUSTOMER_EXTEN and prio == self.wait_priority:
                retries += 1
            paths[ch] = (tries, retries, fell)
        return paths

    def _served_during(self, start: float, end: float) -> bool:
        """Did a controller hold the app's websocket at any moment of (start, end)? The sim's
        record of websocket changes, not the replicas' roles."""
        on: float | None = None
        for t, name, active in [*self.sim.apps.activity, (float("inf"), "acd", False)]:
            if name != "acd":
                continue
            if active and on is None:
                on = t
            elif not active and on is not None:
                if min(t, end) > max(on, start):
                    return True
                on = None
        return False

    def _check_fallback(self, caller: Any, tries: list[float], fell: float) -> None:
        """A caller sent to the fallback is excused only after a whole retry window without a
        controller: ACD_STASIS_RETRIES s of tries, none of them with the app served."""
        self.report.fallback += 1
        first = tries[0] if tries else fell
        waited = fell - first
        if waited < STASIS_RETRIES - 1e-6 or self._served_during(first, fell):
            self._violate(
                "fallback_while_served",
                f"{caller.channel_id}: fallback after {waited:.1f} s, {len(tries)} tries from {first:.1f}",
            )

    async def _check(self) -> None:
        rep, sim = self.report, self.sim
        rep.calls = len(sim.calls)
        paths = self._dialplan_paths()
        fallback_only: set[str] = set()  # never in Stasis: the controller could not act on them
        for caller in sim.calls:
            rep.outcomes[caller.outcome] += 1
            tries, retries, fell = paths.get(caller.channel_id, ([], 0, None))
            entered = caller._channel is not None and caller._channel.stasis_entered
            if retries and entered:
                rep.retried_in += 1
            if fell is not None:
                self._check_fallback(caller, tries, fell)
                if not entered:
                    fallback_only.add(caller.channel_id)
            if not caller.ended:
                self._violate("caller_stuck", caller.channel_id)
            elif caller.channel_id in self.restart_cut or caller.sip_channel_id in self.restart_cut:
                rep.outcomes["cut_by_restart"] += 1
            elif caller.outcome == "refused":
                pass  # refused by Stasis() with nothing after it (not with the shipped dialplan)
            elif fell is not None:
                pass  # the sim's fallback (Queue() and Playback() are no-ops there) then hangs up
            elif caller.ended_by == "asterisk" and not caller.media:
                self._violate("caller_lost", f"{caller.channel_id} {caller.outcome}")
            for seg in caller.media:
                invite = next(
                    (i for p in sim.phones.values() for i in p.invites if i.channel_id == seg.peer_channel),
                    None,
                )
                if invite is None or invite.answered_at is None or invite.answered_at > seg.start:
                    self._violate("unaccepted_bridge", f"{caller.channel_id} with {seg.peer}")
        invites_by_phone: dict[str, list[Any]] = {}
        for phone in sim.phones.values():
            spans = sorted(
                (i.at, i.ended_at if i.ended_at is not None else float("inf"), i) for i in phone.invites
            )
            invites_by_phone[phone.name] = [i for _, _, i in spans]
            rep.invites += len(spans)
            for (_a0, a1, ia), (b0, _b1, ib) in zip(spans, spans[1:], strict=False):
                if b0 < a1 and ia.channel_id not in self.restart_cut:
                    self._violate("double_offer", f"{phone.name}: {ia.channel_id} and {ib.channel_id}")
        if sim.engine.channels or sim.engine.bridges:
            left = f"{len(sim.engine.channels)} channels, {len(sim.engine.bridges)} bridges"
            self._violate("leftover", f"{left}; replicas at the end: {self.final_roles}")
        db = create_engine(PG_URL, schema=self.schema, pool_size=1)
        try:
            async with db.connect() as conn:
                o = OfferRow
                offers = (await conn.execute(select(o.id, o.call_id, o.agent, o.detail, o.outcome))).all()
                calls = (await conn.execute(select(CallRow.id, CallRow.outcome, CallRow.detail))).all()
        finally:
            await db.dispose()
        # an INVITE's channel id is "<offer id>.<run>": each INVITE has exactly its offer row
        rows = {o.id: o for o in offers}
        invited: set[str] = set()
        rung_calls: set[str] = set()
        for name, invites in invites_by_phone.items():
            for invite in invites:
                offer_id = invite.channel_id.rpartition(".")[0]
                invited.add(offer_id)
                row = rows.get(offer_id)
                if row is None:
                    self._violate("offer_rows", f"INVITE {invite.channel_id} to {name} has no offer row")
                    rung_calls.add(offer_id.rpartition("-")[0])
                    continue
                rung_calls.add(row.call_id)
                if row.agent != name:
                    self._violate("offer_rows", f"offer {offer_id} stored for {row.agent}, rang {name}")
        for o in offers:
            if o.outcome is None:
                self._violate("offer_open", f"offer {o.id} has no outcome")
            elif o.detail == "takeover":
                rep.closed[f"offer:{o.outcome}"] += 1
            if o.id not in invited and o.detail != "restored":
                rep.outcomes[f"offer_without_invite:{o.outcome}:{o.detail}"] += 1
        rows_of: dict[str, list[str]] = {}
        for c in calls:
            rows_of.setdefault(channel_of(c.id), []).append(c.id)
            if c.outcome is None:
                self._violate("call_open", f"call {c.id} has no end")
            elif c.detail == CLOSED_CALL_DETAIL:
                rep.closed[f"call:{c.outcome}"] += 1
        rung_channels = {channel_of(cid) for cid in rung_calls}
        for caller in sim.calls:
            if not caller.channel_id or caller.outcome == "refused" or caller.channel_id in fallback_only:
                continue  # answered by the fallback's Answer(), not by a controller: no row
            mine = rows_of.get(caller.channel_id, [])
            acted = caller.answered_at is not None or caller.channel_id in rung_channels
            if not acted:
                if not mine:
                    rep.unseen += 1  # hung up before any controller acted on them
                continue
            if len(mine) != 1:
                self._violate("call_rows", f"{caller.channel_id} ({caller.outcome}): call rows {mine}")
        for r in self.replicas:
            rep.takeovers += r.node.takeover_seconds
        last = [r for r in self.replicas if r.term_token is not None and r.services is not None]
        if last and not self.kills and last[-1].node.reason in ("", "stopped"):
            r = last[-1]
            prefix = f"-t{r.term_token}." if r.term_token > 1 else None
            # a call taken back talking has a "restored" offer row but no offer.ended (nothing rang)
            mine = [
                o
                for o in offers
                if (prefix in o.id if prefix else "-t" not in o.id) and o.detail != "restored"
            ]
            counted = sum(r.services.metrics.offers.values())
            if counted != len(mine):
                self._violate("metrics", f"acd_offers_total {counted} vs {len(mine)} offer rows of the term")


async def run(seed: int, calls: int = 60, faults: tuple[str, ...] = FAULTS, agents: int = 4) -> Report:
    async with scratch_schema(f"chaos_{seed}") as schema:
        db = create_engine(PG_URL, schema=schema, pool_size=1)
        await upgrade(db)
        await db.dispose()
        return await Chaos(seed, calls, faults, agents, schema).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1, help="first seed; run i uses seed + i")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    faults = tuple(f for f in args.faults.split(",") if f)
    reports = []
    for i in range(args.runs):
        report = asyncio.run(run(args.seed + i, args.calls, faults, args.agents))
        reports.append(report)
        line = report.as_dict()
        print(json.dumps(line) if args.json else _row(line), flush=True)
    takeovers = sorted(t for r in reports for t in r.takeovers)
    total = Counter()
    for r in reports:
        total.update(r.violations)
    calls, invites = sum(r.calls for r in reports), sum(r.invites for r in reports)
    injected = sum(sum(r.faults.values()) for r in reports)
    print(
        f"runs {len(reports)}  calls {calls}  invites {invites}  faults {injected}  "
        f"violations {sum(total.values())} {dict(total)}  "
        f"unseen {sum(r.unseen for r in reports)}  "
        f"refused {sum(r.outcomes.get('refused', 0) for r in reports)}  "
        f"retried_in {sum(r.retried_in for r in reports)}  fallback {sum(r.fallback for r in reports)}  "
        f"closed_at_takeover {dict(sum((r.closed for r in reports), Counter()))}"
    )
    if takeovers:
        p99 = takeovers[min(len(takeovers) - 1, int(len(takeovers) * 0.99))]
        print(f"takeovers {len(takeovers)}  p50 {statistics.median(takeovers):.2f} s  p99 {p99:.2f} s")
    return 1 if sum(total.values()) else 0


def _row(d: dict[str, Any]) -> str:
    return (
        f"seed {d['seed']:>4}  plan {d['plan']}  calls {d['calls']:>5}  invites {d['invites']:>5}  "
        f"faults {d['faults']}  "
        f"violations {d['violations'] or 0}  unseen {d['unseen']}  refused {d['refused']}  "
        f"retried_in {d['retried_in']}  fallback {d['fallback']}  closed {d['closed_at_takeover']}  "
        f"takeovers {d['takeovers']}  {d['wall_s']} s"
        + ("".join(f"\n    {x}" for x in d["details"]) if d["details"] else "")
    )


if __name__ == "__main__":
    sys.exit(main())
