"""WhatsApp sidecar black-box run: order and exactly-once under duplicates, concurrency, resumes.

``python bench/whatsapp_blackbox.py [--customers 50] [--messages 200] [--no-pg]``

A real sidecar on a loopback port (Meta's Graph API mocked in process). Every customer message
is delivered 1-3 times, in random order, 1 to ``--per-post`` per body (Meta batches; a body may
repeat a message), by ``--concurrency`` concurrent signed POSTs; agents
reply in every conversation and Meta's statuses for the replies arrive shuffled and repeated; a
WebSocket client follows the stream, is dropped mid-run and resumes with ``?after=``; an SSE
client resumes from the middle with ``Last-Event-ID``. Then, over the HTTP API only: messages
stored, duplicates, chat-order violations, messages unreachable by paging back
(``before=<older>``), stream gaps and duplicates, and the webhook counters against what was
delivered. The CI version of this run is ``tests/whatsapp/test_blackbox_run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from controller.store import create_engine  # noqa: E402
from controller.whatsapp.service import WhatsAppConfig, WhatsAppService  # noqa: E402

SECRET = "blackbox-app-secret"
PNID = "112233445566778"
ADMIN = "blackbox-admin-token"
PG_DEFAULT = os.environ.get("ACD_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def envelope(value: dict) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PNID}, **value}
    change = {"field": "messages", "value": value}
    return json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
    ).encode()


def wa_id(c: int) -> str:
    return f"55119{c:08d}"


def inbound(c: int, items: list[int], start: int) -> bytes:
    """Messages ``items`` of customer ``c`` in one webhook body (Meta batches)."""
    return envelope(
        {
            "contacts": [{"wa_id": wa_id(c), "profile": {"name": f"Customer {c}"}}],
            "messages": [
                {
                    "from": wa_id(c),
                    "id": f"wamid.c{c}.m{i}",
                    "timestamp": str(start + i),
                    "type": "text",
                    "text": {"body": f"c{c} m{i}"},
                }
                for i in items
            ],
        }
    )


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def meta_handler(request: httpx.Request) -> httpx.Response:
    callback = json.loads(request.content)["biz_opaque_callback_data"]
    return httpx.Response(200, json={"messages": [{"id": "wamid.out." + callback[4:]}]})


async def run(name: str, url: str, schema: str | None, args: argparse.Namespace) -> None:
    rnd = random.Random(args.seed)
    start = int(time.time()) - 3600
    engine = create_engine(url, schema=schema) if schema else create_engine(url)
    config = WhatsAppConfig(
        app_secret=SECRET,
        verify_token="v",
        admin_token=ADMIN,
        access_token="EAAG-blackbox",
        phone_number_id=PNID,
        graph_url="https://graph.invalid/v24.0",
    )
    service = WhatsAppService(
        config, engine=engine, auto_migrate=True, graph_transport=httpx.MockTransport(meta_handler)
    )
    await service.start()
    runner = web.AppRunner(service.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    auth = {"Authorization": f"Bearer {ADMIN}"}
    try:
        deliveries: list[bytes] = []
        delivered = 0
        for c in range(args.customers):
            copies = [i for i in range(args.messages) for _ in range(rnd.randint(1, 3))]
            rnd.shuffle(copies)
            delivered += len(copies)
            while copies:
                n = rnd.randint(1, args.per_post)
                deliveries.append(inbound(c, copies[:n], start))
                copies = copies[n:]
        rnd.shuffle(deliveries)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as http:
            frames: list[dict] = []
            target = {"cursor": float("inf")}
            caught_up = asyncio.Event()

            hello: asyncio.Future = asyncio.get_running_loop().create_future()

            async def follow(path: str) -> None:
                async with http.ws_connect(base + path, headers=auth) as ws:
                    async for msg in ws:
                        frame = json.loads(msg.data)
                        if frame["type"] == "hello":
                            hello.set_result(frame["cursor"])  # subscribed: nothing after it is missed
                        else:
                            frames.append(frame)
                            if frame["cursor"] >= target["cursor"]:
                                caught_up.set()

            async def post(body: bytes) -> None:
                async with http.post(
                    base + "/webhooks/whatsapp",
                    data=body,
                    headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
                ) as resp:
                    assert resp.status == 200, await resp.text()

            async def post_all(bodies: list[bytes]) -> None:
                gate = asyncio.Semaphore(args.concurrency)

                async def one(body: bytes) -> None:
                    async with gate:
                        await post(body)

                await asyncio.gather(*(one(b) for b in bodies))

            follower = asyncio.create_task(follow("/api/stream"))
            first = await hello
            half = len(deliveries) // 2
            t0 = time.perf_counter()
            await post_all(deliveries[:half])
            follower.cancel()  # the stream drops mid-run ...
            seen = frames[-1]["cursor"] if frames else 0
            rest = asyncio.create_task(post_all(deliveries[half:]))
            follower = asyncio.create_task(follow(f"/api/stream?after={seen}"))  # ... and resumes
            await rest
            await service.drain()
            ingest_s = time.perf_counter() - t0

            async with http.get(base + "/api/conversations", headers=auth) as resp:
                convs = (await resp.json())["conversations"]
            for conv in convs:
                path = f"{base}/api/conversations/{conv['id']}/messages"
                async with http.post(path, headers=auth, json={"text": "ok"}) as resp:
                    assert resp.status == 202, await resp.text()
            await service.drain()
            async with engine.connect() as conn:
                replies = (
                    await conn.execute(
                        text("SELECT wamid, conversation_id FROM wa_messages WHERE direction = 'out'")
                    )
                ).all()
            to = {c["id"]: c["wa_id"] for c in convs}
            reports = [
                envelope(
                    {
                        "statuses": [
                            {
                                "id": w,
                                "status": s,
                                "timestamp": str(start + 4000 + n),
                                "recipient_id": to[cid],
                            }
                        ]
                    }
                )
                for w, cid in replies
                for n, s in enumerate(("sent", "delivered", "read"))
                for _ in range(rnd.randint(1, 2))
            ]
            rnd.shuffle(reports)
            await post_all(reports)
            await service.drain()
            head = await service.changelog.head()
            target["cursor"] = head
            if frames and frames[-1]["cursor"] >= head:
                caught_up.set()
            async with asyncio.timeout(60):
                await caught_up.wait()
            follower.cancel()

            # What an API client sees.
            stored = duplicates = violations = unreachable = 0
            for conv in convs:
                path = f"{base}/api/conversations/{conv['id']}/messages?limit=100"
                pages: list[list[dict]] = []
                query = ""
                while True:
                    async with http.get(path + query, headers=auth) as resp:
                        page = await resp.json()
                    pages.append(page["messages"])
                    if page["older"] is None:
                        break
                    query = f"&before={page['older']}"
                chat = [m for p in reversed(pages) for m in p]
                keys = [tuple(m["sort_key"]) for m in chat]
                violations += sum(1 for a, b in zip(keys, keys[1:], strict=False) if a >= b)
                wamids = [m["wamid"] for m in chat]
                duplicates += len(wamids) - len(set(wamids))
                stored += len(chat)
                c = int(conv["wa_id"][-8:])
                unreachable += len({f"wamid.c{c}.m{i}" for i in range(args.messages)} - set(wamids))
            cursors = [f["cursor"] for f in frames]
            gaps = len(set(range(first + 1, head + 1)) - set(cursors))
            repeats = len(cursors) - len(set(cursors))

            middle = head // 2
            sse: list[dict] = []
            async with http.get(
                base + "/api/stream/sse", headers={**auth, "Last-Event-ID": str(middle)}
            ) as resp:
                while len(sse) < head - middle:
                    line = (await resp.content.readline()).decode()
                    if line.startswith("data: "):
                        sse.append(json.loads(line[6:]))
            sse_same = sse == [f for f in frames if f["cursor"] > middle]

        snap = service.metrics
        delivered_items = snap.get("webhook_items", kind="messages")
        print(
            f"{name:10} {args.customers} customers x {args.messages} messages, {len(deliveries)} POSTs"
            f" ({len(deliveries) / ingest_s:.0f} POSTs/s, {args.customers * args.messages / ingest_s:.0f}"
            f" messages/s), {len(reports)} status POSTs\n"
            f"{'':10} stored {stored} (expected {args.customers * (args.messages + 1)}), duplicates"
            f" {duplicates}, order violations {violations}, unreachable by paging {unreachable}\n"
            f"{'':10} stream: {len(frames)} frames, gaps {gaps}, duplicates {repeats} across the WebSocket"
            f" resume; SSE resume from {middle} identical: {sse_same}\n"
            f"{'':10} acd_wa_webhook_items_total{{kind=messages}} {delivered_items} (delivered"
            f" {delivered}), {{kind=statuses}} {snap.get('webhook_items', kind='statuses')}"
            f" (delivered {len(reports)})",
            flush=True,
        )
    finally:
        await runner.cleanup()
        await service.stop()
        await engine.dispose()


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="whatsapp-blackbox-"))
    try:
        await run("sqlite", f"sqlite+aiosqlite:///{tmp}/bb.sqlite3", None, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.no_pg:
        return 0
    schema = "wa_bb_" + secrets.token_hex(4)
    admin = create_engine(args.pg_url, pool_size=1)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'create schema "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        print(f"postgresql skipped: {type(exc).__name__}: {exc}")
        await admin.dispose()
        return 0
    try:
        await run("postgresql", args.pg_url, schema, args)
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
        await admin.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/whatsapp_blackbox.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--messages", type=int, default=200, help="inbound messages per customer")
    parser.add_argument("--concurrency", type=int, default=64, help="POSTs in flight")
    parser.add_argument("--per-post", type=int, default=10, help="at most this many messages per POST")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--no-pg", action="store_true")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
