"""Cost of hot standby's write-ahead: agent decline -> next agent's ring, with and without it.

One HA replica (``controller.ha``) on a throwaway PostgreSQL schema and the simulated Asterisk at
clock speed 1 (every time is real time). Each call's first offer is declined (603) after 50 ms,
the second agent answers after 50 ms and the caller talks 0.2 s. Figures are the controller's own
reaction intervals (``controller.shell.reactions``): (c) the declined leg's ``ChannelDestroyed``
handled -> the next agent's dial request sent, which with write-ahead includes waiting for the
commit of the new offer's row (``HistoryWriter.durable``), and (a) StasisStart handled -> first
dial (includes the call's and the offer's rows). "without" is the same replica with the wait
switched off (``shell.durable = None``), i.e. the behaviour before write-ahead.

Run: ``PYTHONPATH=. .venv/bin/python -m bench.durable --calls 300`` (figures in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from bench.pgschema import PG_URL, scratch_schema
from bench.setups import one_queue
from controller.acd.setup import AcdSetup, QueueConfig
from controller.app import Controller
from controller.clock import Clock
from controller.config import load_settings
from controller.ha.replica import Replica
from controller.sim import Answer, Decline, SimAsterisk
from controller.store import create_engine, upgrade


def _setup(agents: int) -> AcdSetup:
    return one_queue(agents, QueueConfig("support", ring_timeout=10.0, wrapup=0.0, reject_delay=0.0))


def _behaviour(invite: Any):
    first = invite.headers.get("X-Acd-Offer-Id", "").endswith("-1")
    return Decline(after=0.05) if first else Answer(after=0.05, hangup_after=0.2)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


async def measure(write_ahead: bool, calls: int, agents: int) -> dict[str, Any]:
    async with scratch_schema("durable") as schema:
        return await _measure(schema, write_ahead, calls, agents)


async def _measure(schema: str, write_ahead: bool, calls: int, agents: int) -> dict[str, Any]:
    clock = Clock(speed=1.0)
    sim = SimAsterisk(clock=clock, seed=1, user="acd", password="secret")
    db = create_engine(PG_URL, schema=schema, pool_size=3)
    lease_db = create_engine(PG_URL, schema=schema, pool_size=2, max_overflow=0)
    try:
        await upgrade(db)
        await sim.start("127.0.0.1", 0)
        for i in range(agents):
            sim.add_phone(f"a{i}", _behaviour)
        settings = load_settings(
            env_file=None, database_url=PG_URL, ha=True, ha_ttl=5.0, ha_renew=1.0, admin_token="x" * 16
        )
        setup = _setup(agents)

        def make() -> Controller:
            return Controller(
                setup, ari_url=sim.base_url, ari_user="acd", ari_password="secret", clock=clock, seed=1
            )

        def on_term(controller: Controller, _services: Any) -> None:
            if not write_ahead:
                controller.shell.durable = None

        replica = Replica(
            settings, make, db=db, lease_db=lease_db, holder="bench", http=False, on_term=on_term
        )
        await replica.start()
        async with asyncio.timeout(30):
            await replica.node.became_active.wait()
        placed = []
        for n in range(calls):
            placed.append(sim.place_call("101", caller_number=f"9{n:05d}", hangup_after=30))
            await asyncio.sleep(0.1)
        await sim.wait_for(lambda: all(c.ended for c in placed), timeout=120, what="calls done")
        shell = replica.controller.shell
        c = list(shell.reactions.decline_to_next_dial)
        a = list(shell.reactions.stasis_to_dial)
        writer = replica.services.writer
        out = {
            "write_ahead": write_ahead,
            "calls": calls,
            "connected": sum(1 for x in placed if x.media),
            "decline_to_next_dial_ms": (round(_pct(c, 0.5), 2), round(_pct(c, 0.99), 2), len(c)),
            "stasis_to_dial_ms": (round(_pct(a, 0.5), 2), round(_pct(a, 0.99), 2), len(a)),
            "not_stored": shell.stats["ring_not_stored"] + shell.stats["park_not_stored"],
            "batches": writer.stats["batches"],
            "mean_c_ms": round(statistics.mean(c) * 1000, 2) if c else None,
        }
        await replica.stop()
        return out
    finally:
        await sim.stop()
        await db.dispose()
        await lease_db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="alternating without/with rounds")
    args = parser.parse_args(argv)
    for _ in range(args.rounds):
        for write_ahead in (False, True):
            print(asyncio.run(measure(write_ahead, args.calls, args.agents)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
