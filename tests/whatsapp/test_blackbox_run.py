"""A small black-box run, as issue 17's large one (50 customers x 200 messages; figures in
docs/benchmarks.md): customers' messages delivered 1-3 times in random order by concurrent
signed POSTs, agent replies with shuffled and repeated statuses, the WebSocket stream dropped and
resumed mid-run, then an SSE resume. Checks every promise: each message stored once, the chat in
timestamp order and reachable page by page, the stream without gap or duplicate across resumes,
the counters counting deliveries.
"""

from __future__ import annotations

import asyncio
import json
import random

import httpx

from tests.whatsapp.conftest import ADMIN, PNID, SEND_URL, T0, sign

CUSTOMERS = 5
PER_CUSTOMER = 20
START = int(T0) - 3000  # customers' messages, all before the agents' replies (clock: T0 + 60)


def envelope(value: dict) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PNID}, **value}
    change = {"field": "messages", "value": value}
    doc = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
    return json.dumps(doc).encode()


def wa_id(c: int) -> str:
    return f"55119{c:08d}"


def inbound(items: list[tuple[int, int]]) -> bytes:
    """Messages (customer, i) of one customer in one body."""
    c = items[0][0]
    return envelope(
        {
            "contacts": [{"wa_id": wa_id(c), "profile": {"name": f"Customer {c}"}}],
            "messages": [
                {
                    "from": wa_id(c),
                    "id": f"wamid.c{c}.m{i}",
                    "timestamp": str(START + 7 * i + c),
                    "type": "text",
                    "text": {"body": f"c{c} m{i}"},
                }
                for _, i in items
            ],
        }
    )


def statuses(items: list[tuple[str, str, int, str]]) -> bytes:
    return envelope(
        {
            "statuses": [
                {"id": wamid, "status": word, "timestamp": str(ts), "recipient_id": to}
                for wamid, word, ts, to in items
            ]
        }
    )


async def read_ws(ws, into: list[dict], head: dict, reached: asyncio.Event) -> None:
    """Collect frames; ``reached`` once the cursor ``head["cursor"]`` (set later) has come."""
    async for msg in ws:
        frame = json.loads(msg.data)
        if frame["type"] != "hello":
            into.append(frame)
        if into and into[-1]["cursor"] >= head.get("cursor", float("inf")):
            reached.set()


async def test_random_order_duplicates_concurrency_and_stream_resume(sidecar) -> None:
    rnd = random.Random(17)
    deliveries: list[bytes] = []
    delivered_messages = 0
    for c in range(CUSTOMERS):
        for i in range(PER_CUSTOMER):
            for _ in range(rnd.randint(1, 3)):
                deliveries.append(inbound([(c, i)]))
                delivered_messages += 1
        for _ in range(3):  # Meta also batches: the same messages again, several in one body
            batch = sorted(rnd.sample(range(PER_CUSTOMER), 3))
            deliveries.append(inbound([(c, i) for i in batch]))
            delivered_messages += 3
    rnd.shuffle(deliveries)
    half = len(deliveries) // 2

    headers = {"Authorization": f"Bearer {ADMIN}"}
    frames: list[dict] = []
    head: dict = {}
    reached = asyncio.Event()
    ws = await sidecar.client.ws_connect("/api/stream", headers=headers)
    hello = await ws.receive_json(timeout=5)
    assert hello == {"type": "hello", "cursor": 0}
    reader = asyncio.create_task(read_ws(ws, frames, head, reached))
    gate = asyncio.Semaphore(16)

    async def post(body: bytes) -> None:
        async with gate:
            resp = await sidecar.client.post(
                "/webhooks/whatsapp",
                data=body,
                headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
            )
            assert resp.status == 200, await resp.text()

    await asyncio.gather(*(post(b) for b in deliveries[:half]))
    # The stream drops mid-run (the client's network, a restart of a proxy) ...
    reader.cancel()
    await ws.close()
    seen_before_drop = frames[-1]["cursor"] if frames else 0
    second_half = asyncio.gather(*(post(b) for b in deliveries[half:]))
    # ... and resumes after the last cursor it saw while POSTs go on.
    ws = await sidecar.client.ws_connect(f"/api/stream?after={seen_before_drop}", headers=headers)
    reader = asyncio.create_task(read_ws(ws, frames, head, reached))
    await second_half
    await sidecar.service.drain()

    # Agents reply in every conversation; Meta reports the replies' statuses out of order, twice.
    counter = iter(range(1000))
    sidecar.meta.post(SEND_URL).mock(
        side_effect=lambda request: httpx.Response(
            200, json={"messages": [{"id": f"wamid.out{next(counter)}"}]}
        )
    )
    convs = (await sidecar.api("GET", "/api/conversations"))[1]["conversations"]
    assert len(convs) == CUSTOMERS
    for conv in convs:
        assert (await sidecar.api("POST", f"/api/conversations/{conv['id']}/messages", json={"text": "ok"}))[
            0
        ] == 202
    await sidecar.service.drain()
    replies = await sidecar.rows("SELECT wamid, conversation_id FROM wa_messages WHERE direction = 'out'")
    to = {c["id"]: c["wa_id"] for c in convs}
    reports = [
        (r["wamid"], word, int(T0) + 100 + n, to[r["conversation_id"]])
        for r in replies
        for n, word in enumerate(("sent", "delivered", "read"))
    ]
    status_bodies = [statuses([item]) for item in reports * 2]
    rnd.shuffle(status_bodies)
    await asyncio.gather(*(post(b) for b in status_bodies))
    await sidecar.service.drain()

    head["cursor"] = (await sidecar.rows("SELECT value FROM wa_counters WHERE name = 'cursor'"))[0]["value"]
    if frames and frames[-1]["cursor"] >= head["cursor"]:
        reached.set()
    async with asyncio.timeout(10):
        await reached.wait()
    reader.cancel()
    await ws.close()

    # Stored once each, every reply read.
    rows = await sidecar.rows("SELECT wamid, direction, status FROM wa_messages")
    assert len(rows) == CUSTOMERS * PER_CUSTOMER + CUSTOMERS
    assert len({r["wamid"] for r in rows}) == len(rows)
    assert {r["status"] for r in rows if r["direction"] == "out"} == {"read"}

    # The chat in timestamp order, every message reachable page by page.
    for conv in convs:
        c = int(conv["wa_id"][-8:])
        status, page = await sidecar.api("GET", f"/api/conversations/{conv['id']}/messages?limit=7")
        pages = [page["messages"]]
        while page["older"] is not None:
            status, page = await sidecar.api(
                "GET", f"/api/conversations/{conv['id']}/messages?limit=7&before={page['older']}"
            )
            assert status == 200
            pages.append(page["messages"])
        bodies = [m["body"] for p in reversed(pages) for m in p]
        assert bodies == [f"c{c} m{i}" for i in range(PER_CUSTOMER)] + ["ok"]

    # The stream: every change once, in cursor order, across the drop.
    cursors = [f["cursor"] for f in frames]
    assert cursors == list(range(1, head["cursor"] + 1))
    new = [f["message"]["wamid"] for f in frames if f["type"] == "message" and f["event"] == "new"]
    assert sorted(w for w in new if w) == sorted(r["wamid"] for r in rows if r["direction"] == "in")

    # SSE resumed from the middle (Last-Event-ID) gives the same frames as the WebSocket did.
    middle = head["cursor"] // 2
    resp = await sidecar.client.get("/api/stream/sse", headers={**headers, "Last-Event-ID": str(middle)})
    sse: list[dict] = []
    async with asyncio.timeout(10):
        while len(sse) < head["cursor"] - middle:
            line = (await resp.content.readline()).decode()
            if line.startswith("data: "):
                sse.append(json.loads(line[6:]))
    resp.close()
    assert sse == frames[middle:]

    # Counters count deliveries, not stored rows.
    metrics = sidecar.service.metrics
    assert metrics.get("webhook_items", kind="messages") == delivered_messages
    assert metrics.get("webhook_items", kind="statuses") == len(status_bodies)
    assert metrics.get("webhook_accepted") == len(deliveries) + len(status_bodies)
