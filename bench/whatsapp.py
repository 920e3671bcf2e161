"""WhatsApp sidecar benchmark: webhook ingest throughput and webhook -> agent push latency.

``python bench/whatsapp.py [--quick] [--pg-url URL] [--no-pg]``

Everything is real except Meta: a sidecar on a loopback port, signed webhook POSTs over HTTP,
durable storage (SQLite in WAL mode with the sidecar's default ``synchronous=FULL``, or ``NORMAL``
with ``--sqlite-synchronous NORMAL``; or PostgreSQL), processing, and a
WebSocket agent client receiving every frame. A status counts only once its frame has reached
that client ("verified + stored + processed + pushed").

1. Throughput: ``--posts`` POSTs of ``--batch`` statuses each, ``--concurrency`` in flight.
2. Latency: one status per POST at ``--rate`` statuses/s for ``--seconds``; p50/p99/max from
   just before the POST to the frame's arrival at the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import hmac
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller.store import create_engine  # noqa: E402
from controller.whatsapp.service import WhatsAppConfig, WhatsAppService  # noqa: E402

SECRET = "bench-app-secret"
PNID = "112233445566778"
ADMIN = "bench-admin-token"
PG_DEFAULT = os.environ.get("ACD_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def body_for(statuses: list[dict]) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PNID}, "statuses": statuses}
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(doc).encode()


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


class Bench:
    def __init__(self, engine, sqlite_synchronous: str = "FULL") -> None:
        config = WhatsAppConfig(
            app_secret=SECRET,
            verify_token="v",
            admin_token=ADMIN,
            phone_number_id=PNID,
            sqlite_synchronous=sqlite_synchronous,
        )
        self.service = WhatsAppService(config, engine=engine, auto_migrate=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        await self.service.start()
        gc.freeze()  # as `acdctl sidecar` does after start
        self.runner = web.AppRunner(self.service.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
        await self.service.stop()

    async def seed(self, conversations: int, per_conversation: int, prefix: str) -> list[str]:
        """Outbound messages already accepted by Meta (wamid known), waiting for statuses."""
        wamids = []
        async with self.service.changelog.unit() as u:
            for c in range(conversations):
                wa_id = f"55119{c:08d}"
                conv = await u.conversation_for(PNID, wa_id, wa_id=wa_id)
                for m in range(per_conversation):
                    wamid = f"wamid.{prefix}.{c}.{m}"
                    u.add_message(
                        conv,
                        direction="out",
                        event_ts=time.time(),
                        kind="text",
                        body="x",
                        status="pending",
                        wamid=wamid,
                        agent_id="bench",
                    )
                    wamids.append(wamid)
        return wamids


async def collect(ws: aiohttp.ClientWebSocketResponse, want: int, arrivals: dict[str, float]) -> None:
    got = 0
    while got < want:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"stream ended: {msg.type} {msg.data} {msg.extra}")
        frame = json.loads(msg.data)
        if frame.get("type") == "message" and frame.get("event") == "status":
            got += 1
            arrivals.setdefault(
                f"{frame['message']['wamid']}|{frame['message']['status']}", time.perf_counter()
            )


async def collect_until_read(ws: aiohttp.ClientWebSocketResponse, wamids: set[str]) -> None:
    """Until every message was pushed as read (statuses of one message may share a frame)."""
    pending = set(wamids)
    while pending:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"stream ended: {msg.type} {msg.data} {msg.extra}")
        frame = json.loads(msg.data)
        if frame.get("type") == "message" and frame["message"]["status"] == "read":
            pending.discard(frame["message"]["wamid"])


# The load generator (Meta + one agent's browser) runs in its own process, like the real ones:
# sharing the sidecar's event loop would bill its HTTP client work to the sidecar.


async def _client_throughput(url: str, wamids: list[str], posts: int, batch: int, concurrency: int) -> float:
    total = posts * batch
    words = ["sent", "delivered", "read"]  # every status changes something: 3 per message
    m = total // 3  # the caller makes total a multiple of 3
    statuses = [
        {"id": wamids[i % m], "status": words[i // m], "timestamp": str(1786629800 + i // m)}
        for i in range(total)
    ]
    bodies = [body_for(statuses[i * batch : (i + 1) * batch]) for i in range(posts)]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/api/stream", headers={"Authorization": f"Bearer {ADMIN}"})
        await ws.receive()  # hello
        collector = asyncio.create_task(collect_until_read(ws, set(wamids[:m])))
        sem = asyncio.Semaphore(concurrency)

        async def post(body: bytes) -> None:
            async with (
                sem,
                http.post(
                    f"{url}/webhooks/whatsapp",
                    data=body,
                    headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
                ) as resp,
            ):
                assert resp.status == 200, resp.status

        start = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bodies))
        await asyncio.wait_for(collector, timeout=600)
        elapsed = time.perf_counter() - start
        await ws.close()
    return elapsed


async def _client_latency(
    url: str, wamids: list[str], rate: int, n: int
) -> tuple[list[float], list[float], float]:
    arrivals: dict[str, float] = {}
    sent_at: dict[str, float] = {}
    ok_at: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}/api/stream", headers={"Authorization": f"Bearer {ADMIN}"})
        await ws.receive()
        collector = asyncio.create_task(collect(ws, n, arrivals))
        bodies = [
            body_for([{"id": wamids[i], "status": "sent", "timestamp": str(1786629800 + i)}])
            for i in range(n)
        ]

        async def post(i: int) -> None:
            key = f"{wamids[i]}|sent"
            sent_at[key] = time.perf_counter()
            async with http.post(
                f"{url}/webhooks/whatsapp",
                data=bodies[i],
                headers={"X-Hub-Signature-256": sign(bodies[i]), "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 200
                ok_at[key] = time.perf_counter()

        tasks = []
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        await asyncio.wait_for(collector, timeout=120)
        achieved = n / (time.perf_counter() - start)
        await ws.close()
    total = sorted((arrivals[k] - sent_at[k]) * 1000 for k in sent_at)
    acked = sorted((ok_at[k] - sent_at[k]) * 1000 for k in sent_at)
    return total, acked, achieved


async def in_client_process(fn_name: str, *args: object) -> object:
    """Run one of the ``_client_*`` coroutines in a fresh Python process (JSON over stdin/stdout)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(json.dumps({"fn": fn_name, "args": args}).encode())
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with exit code {proc.returncode}")
    return json.loads(out)


def client_main() -> int:
    request = json.loads(sys.stdin.read())
    if request["fn"] not in ("_client_throughput", "_client_latency"):
        raise SystemExit(f"unknown client function {request['fn']!r}")
    result = asyncio.run(globals()[request["fn"]](*request["args"]))
    sys.stdout.write(json.dumps(result))
    return 0


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


async def throughput(bench: Bench, posts: int, batch: int, concurrency: int) -> dict:
    total = posts * batch
    wamids = await bench.seed(-(-total // 150), 50, f"tp{secrets.token_hex(3)}")
    elapsed = await in_client_process("_client_throughput", bench.url, wamids, posts, batch, concurrency)
    return {"statuses": total, "seconds": elapsed, "per_s": total / elapsed}


async def latency(bench: Bench, rate: int, seconds: float) -> dict:
    n = int(rate * seconds)
    wamids = await bench.seed(max(1, n // 20 + 1), 20, f"lat{secrets.token_hex(3)}")
    total, acked, achieved = await in_client_process("_client_latency", bench.url, wamids, rate, n)
    return {
        "n": n,
        "achieved_per_s": achieved,
        "p50_ms": statistics.median(total),
        "p99_ms": pct(total, 0.99),
        "max_ms": total[-1],
        "ack_p50_ms": statistics.median(acked),
        "ack_p99_ms": pct(acked, 0.99),
    }


async def run_backend(name: str, url: str, schema: str | None, args: argparse.Namespace) -> None:
    engine = create_engine(url, schema=schema) if schema else create_engine(url)
    bench = Bench(engine, args.sqlite_synchronous)
    await bench.start()
    try:
        for batch in args.batches:
            posts = max(3, args.statuses // batch // 3 * 3)
            r = await throughput(bench, posts, batch, args.concurrency)
            print(
                f"{name:10} ingest  batch={batch:<4} {r['statuses']:>6} statuses in {r['seconds']:6.2f} s"
                f"  = {r['per_s']:8.0f} statuses/s",
                flush=True,
            )
        r = await latency(bench, args.rate, args.seconds)
        print(
            f"{name:10} latency {r['n']} statuses at {r['achieved_per_s']:.0f}/s (1 per POST):"
            f" p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms"
            f" (its 200 came after p50 {r['ack_p50_ms']:.1f} ms, p99 {r['ack_p99_ms']:.1f} ms)",
            flush=True,
        )
    finally:
        await bench.stop()
        await engine.dispose()


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="whatsapp-bench-"))
    try:
        await run_backend("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", None, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.no_pg:
        return 0
    schema = "wa_bench_" + secrets.token_hex(4)
    admin = create_engine(args.pg_url, pool_size=1)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'create schema "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        print(f"postgresql skipped: {type(exc).__name__}: {exc}")
        await admin.dispose()
        return 0
    try:
        await run_backend("postgresql", args.pg_url, schema, args)
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
        await admin.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["--client"]:
        return client_main()
    parser = argparse.ArgumentParser(prog="bench/whatsapp.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (CI smoke)")
    parser.add_argument("--statuses", type=int, default=20_000, help="statuses per throughput run")
    parser.add_argument(
        "--batches",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 50, 1000],
        help="statuses per POST, comma-separated (default 1,50,1000)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="POSTs in flight")
    parser.add_argument("--rate", type=int, default=500, help="statuses/s for the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument(
        "--sqlite-synchronous",
        type=str.upper,
        choices=("NORMAL", "FULL"),
        default="FULL",
        help="the sidecar's SQLite durability (default FULL, the sidecar's default)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.statuses, args.seconds = 2000, 3.0
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs;"
        f" SQLite synchronous={args.sqlite_synchronous} (WAL)",
        flush=True,
    )
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
