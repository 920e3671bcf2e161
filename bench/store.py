"""Store benchmark: what persistence costs the calls, and how fast history is written.

Requirement (issue): 100,000 offers written while the simulator runs 200 setups/s; print the p99
reaction latency with and without persistence (target: persistence adds <= 1 ms at p99) and the
write throughput on SQLite and PostgreSQL.

1. Reactions under load. The same two-process set-up as ``bench/ari.py`` (simulated Asterisk on
   one core, the controller on the other; 500 agents, Poisson arrivals at 200 setups/s, ring
   0.2 s, talk ~1 s, 10 % of calls declined by their first agent), run three times: without
   persistence, with the history writer on SQLite (WAL, ``synchronous=FULL``), and on PostgreSQL.
   Reactions (a) StasisStart -> dial, (b) answer -> bridge, (c) decline -> next dial are the
   controller's own figures (``shell.reactions``). After each run the benchmark waits for the
   writer to flush and checks that every offer of the run is in the database.
2. Write throughput. 100,000 offers (50,000 calls, each rejected by one agent and accepted by
   the next: 10 history records per call) pushed through ``HistoryWriter`` in one process as
   fast as it takes them, per database: offers/s and records/s until all are committed.

Run: ``.venv/bin/python bench/run.py store [--quick] [--duration S] [--offers N] [--no-pg]``.
PostgreSQL comes from ``ACD_TEST_PG_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``);
each run uses a throwaway schema.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import time
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bench import ari  # noqa: E402

PG_URL = os.environ.get("ACD_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


# --------------------------------------------------------------------------------------------- processes


class StoreCtlSide(ari.CtlSide):
    """``bench.ari``'s controller side, plus the history writer on a database."""

    async def cmd_start(
        self, *args: Any, db_url: str = "", schema: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        result = await super().cmd_start(*args, **kw)
        self.db = self.writer = None
        if db_url:
            from controller.store import create_engine, upgrade
            from controller.store.writer import HistoryWriter

            self.db = create_engine(db_url, schema=schema)
            await upgrade(self.db)
            c = self.controller
            self.writer = HistoryWriter(self.db, engine=c.engine, clock_now=c.clock.now)
            c.shell.listeners.append(self.writer.listener)
            self.writer.start()
        return result

    async def cmd_store(self) -> dict[str, Any]:
        """Flush, then count what is stored."""
        if self.writer is None:
            return {}
        from sqlalchemy import func, select

        from controller.store.history import OfferRow

        t0 = time.perf_counter()
        await self.writer.flushed(timeout=120)
        async with self.db.connect() as conn:
            offers = (await conn.execute(select(func.count()).select_from(OfferRow))).scalar_one()
        return {
            "flush_s": time.perf_counter() - t0,
            "offers_stored": offers,
            "offers_made": self.records.get("offer.created", 0),
            "written": self.writer.stats["written"],
            "batches": self.writer.stats["batches"],
            "failures": self.writer.stats["write_failures"],
            "max_depth": getattr(self, "max_depth", 0),
        }

    async def close(self) -> None:
        await super().close()
        if self.writer is not None:
            await self.writer.close()
            await self.db.dispose()


def _child_main(kind: str, conn: Any, cpu: int, profile: str | None) -> None:
    if _ROOT not in sys.path:
        sys.path.insert(0, _ROOT)
    cores = ari._pin(cpu)
    side: Any = ari.SimSide(cores) if kind == "sim" else StoreCtlSide(cores)
    side.profile_dir = profile
    asyncio.run(ari._serve(side, conn))


class Child(ari.Child):
    def __init__(self, ctx: Any, kind: str, cpu: int) -> None:
        self.kind = kind
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child_main, args=(kind, child_conn, cpu, None), name=f"bench-store-{kind}", daemon=True
        )
        self.proc.start()
        child_conn.close()


class Pair:
    def __init__(self, ctx: Any, seed: int, db_url: str = "", schema: str | None = None) -> None:
        self.sim = Child(ctx, "sim", ari.SIM_CPU)
        self.ctl = Child(ctx, "ctl", ari.CTL_CPU)
        try:
            info = self.sim.call("start", agents=ari.AGENTS, seed=seed)
            self.ctl.call(
                "start",
                timeout=120,
                url=info["url"],
                agents=ari.AGENTS,
                seed=seed,
                log=True,
                db_url=db_url,
                schema=schema,
            )
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        self.ctl.close()
        self.sim.close()


# --------------------------------------------------------------------------------------------- databases


async def _pg(action: str, schema: str) -> str | None:
    from sqlalchemy import text

    from controller.store import create_engine

    engine = create_engine(PG_URL, pool_size=1)
    try:
        async with asyncio.timeout(5):
            async with engine.begin() as conn:
                if action == "create":
                    await conn.execute(text(f'create schema "{schema}"'))
                else:
                    await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


class Database:
    """A fresh database for one run: ``sqlite`` (temp file) or ``postgresql`` (temp schema)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.schema: str | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if kind == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="acd-bench-store-")
            self.url = f"sqlite+aiosqlite:///{self._tmp.name}/acd.sqlite3"
        else:
            self.url = PG_URL
            self.schema = "bench_" + secrets.token_hex(5)
            error = asyncio.run(_pg("create", self.schema))
            if error:
                raise RuntimeError(f"PostgreSQL at {PG_URL}: {error}")

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
        if self.schema:
            asyncio.run(_pg("drop", self.schema))


# --------------------------------------------------------------------------------------------- scenarios


def reactions_run(ctx: Any, store: str, args: argparse.Namespace) -> dict[str, Any]:
    db = Database(store) if store != "off" else None
    pair = Pair(ctx, args.seed, db.url if db else "", db.schema if db else None)
    try:
        r = ari.measure(
            pair,
            mode="poisson",
            rate=ari.LATENCY_RATE,
            ring=0.2,
            talk=1.0,
            warmup=args.warmup,
            duration=args.duration,
        )
        r["store"] = store
        r["stored"] = pair.ctl.call("store", timeout=180)
        return r
    finally:
        pair.close()
        if db is not None:
            db.close()


def _records(i: int) -> list[Any]:
    from controller.acd import commands as cmd

    call, t = f"bench-{i}", float(i)
    q = {"call": call, "queue": "support"}
    a, b = f"a{i % 500}", f"a{(i + 1) % 500}"
    ended = {"detail": "", "cause": None, "tech_cause": None, "answered_at": None}
    return [
        cmd.Record("call.queued", q | {"at": t, "requeued": False}),
        cmd.Record("offer.created", q | {"at": t, "offer": f"{call}-1", "agent": a}),
        cmd.Record(
            "offer.ended",
            q
            | ended
            | {
                "at": t + 1,
                "offer": f"{call}-1",
                "agent": a,
                "outcome": "rejected",
                "cause": 21,
                "tech_cause": 603,
                "started_at": t,
                "ring_time": 1.0,
            },
        ),
        cmd.Record(
            "agent.state",
            {"agent": a, "state": "ready", "presence": "available", "reason": "", "misses": 0, "at": t + 1},
        ),
        cmd.Record("offer.created", q | {"at": t + 1, "offer": f"{call}-2", "agent": b}),
        cmd.Record(
            "offer.ended",
            q
            | ended
            | {
                "at": t + 2,
                "offer": f"{call}-2",
                "agent": b,
                "outcome": "accepted",
                "started_at": t + 1,
                "answered_at": t + 2,
                "ring_time": 1.0,
            },
        ),
        cmd.Record("call.connected", q | {"at": t + 2, "offer": f"{call}-2", "agent": b, "wait": 2.0}),
        cmd.Record(
            "agent.state",
            {"agent": b, "state": "talking", "presence": "available", "reason": "", "misses": 0, "at": t + 2},
        ),
        cmd.Record(
            "call.ended",
            q
            | {
                "at": t + 60,
                "outcome": "completed",
                "detail": "",
                "hung_up_by": "caller",
                "arrived_at": t,
                "connected_at": t + 2,
                "wait": 2.0,
                "talk": 58.0,
                "agent": b,
            },
        ),
        cmd.Record(
            "agent.state",
            {
                "agent": b,
                "state": "wrapup",
                "presence": "available",
                "reason": "call_ended",
                "misses": 0,
                "at": t + 60,
            },
        ),
    ]


async def _throughput(url: str, schema: str | None, offers: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from controller.store import create_engine, upgrade
    from controller.store.history import OfferRow
    from controller.store.writer import HistoryWriter

    db = create_engine(url, schema=schema)
    try:
        await upgrade(db)
        calls = offers // 2
        batches = [_records(i) for i in range(calls)]
        writer = HistoryWriter(db, epoch=time.time(), max_buffer=10**7)
        writer.start()
        t0 = time.perf_counter()
        for i, records in enumerate(batches):
            for r in records:
                writer.listener(r)
            if i % 200 == 0:
                await asyncio.sleep(0)  # as in production: records arrive between loop turns
        await writer.flushed(timeout=600)
        elapsed = time.perf_counter() - t0
        await writer.close()
        async with db.connect() as conn:
            stored = (await conn.execute(select(func.count()).select_from(OfferRow))).scalar_one()
        return {
            "offers": stored,
            "records": writer.stats["written"],
            "seconds": elapsed,
            "offers_per_s": stored / elapsed,
            "records_per_s": writer.stats["written"] / elapsed,
            "batches": writer.stats["batches"],
        }
    finally:
        await db.dispose()


def throughput_run(store: str, offers: int) -> dict[str, Any]:
    db = Database(store)
    try:
        return asyncio.run(_throughput(db.url, db.schema, offers)) | {"store": store}
    finally:
        db.close()


# --------------------------------------------------------------------------------------------- report


def report(results: dict[str, Any]) -> str:
    lines = [
        f"Reactions at {ari.LATENCY_RATE:.0f} setups/s (Poisson, 500 agents, ring 0.2 s, talk ~1 s,"
        " 10 % declined),"
        f" {results['duration']:.0f} s measured per run",
        "",
        "| store | setups/s | (a) p50 ms | (a) p99 ms | (b) p50 ms | (b) p99 ms | (c) p99 ms | ctl CPU |"
        " offers made | offers stored | flush after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["reactions"]:
        s = r["stored"] or {}
        flush = f"{s['flush_s'] * 1e3:.0f} ms" if s else "-"
        lines.append(
            f"| {r['store']} | {r['setups_per_s']:.0f} | {r['a']['p50']:.2f} | {r['a']['p99']:.2f} |"
            f" {r['b']['p50']:.2f} | {r['b']['p99']:.2f} | {r['c']['p99']:.2f} | {r['ctl_cpu_util']:.0%} |"
            f" {s.get('offers_made', '-')} | {s.get('offers_stored', '-')} |"
            f" {flush} |"
        )
    base = next((r for r in results["reactions"] if r["store"] == "off"), None)
    if base is not None:
        lines.append("")
        for r in results["reactions"]:
            if r["store"] != "off":
                worst = max(r[k]["p99"] - base[k]["p99"] for k in ("a", "b", "c"))
                ok = "met" if worst <= 1.0 else "MISSED"
                lines.append(
                    f"persistence on {r['store']}: p99 change {worst:+.2f} ms (target <= +1 ms: {ok})"
                )
    lines += [
        "",
        f"Write throughput ({results['offers']:,} offers = {results['offers'] // 2:,} calls,"
        " 10 records each)",
        "",
    ]
    lines += [
        "| store | offers stored | seconds | offers/s | records/s | transactions |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in results["throughput"]:
        lines.append(
            f"| {t['store']} | {t['offers']:,} | {t['seconds']:.1f} | {t['offers_per_s']:,.0f} |"
            f" {t['records_per_s']:,.0f} | {t['batches']:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/store.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short windows, 10,000 offers")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per reactions run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--offers", type=int, default=100_000, help="offers for the throughput runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--only", choices=("reactions", "throughput"), help="run one part")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.offers = 3.0, 1.0, 10_000
    stores = ["sqlite"] if args.no_pg else ["sqlite", "postgresql"]
    results: dict[str, Any] = {
        "duration": args.duration,
        "offers": args.offers,
        "reactions": [],
        "throughput": [],
    }
    if args.only != "throughput":
        ctx = mp.get_context("spawn")
        for store in ["off", *stores]:
            r = reactions_run(ctx, store, args)
            results["reactions"].append(r)
            print(f"reactions, store {store}: a p99 {r['a']['p99']:.2f} ms", file=sys.stderr, flush=True)
    if args.only != "reactions":
        for store in stores:
            t = throughput_run(store, args.offers)
            results["throughput"].append(t)
            print(f"throughput, {store}: {t['offers_per_s']:,.0f} offers/s", file=sys.stderr, flush=True)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
