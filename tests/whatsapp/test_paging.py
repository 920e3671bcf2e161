"""History paging: every message reachable by sort-key pages, in both directions, stable under
late (older-timestamp) inserts; ``?after=`` (changes since a cursor) continues page after page."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from controller.store import create_engine
from controller.whatsapp.paging import BadToken, decode_token, encode_token
from controller.whatsapp.service import WhatsAppService
from tests.dbkit import PG_URL
from tests.whatsapp.conftest import ADMIN, MARIA, PNID, T0, TOKENS, WA_TABLES, Clock, make_config

ALICE = TOKENS["alice"]
BASE = int(T0)


def inbound_many(items: list[tuple[str, int]], wa_id: str = MARIA) -> bytes:
    """One webhook carrying several customer messages ``(wamid, timestamp)``."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": PNID},
        "contacts": [{"wa_id": wa_id, "profile": {"name": "Maria"}}],
        "messages": [
            {"from": wa_id, "id": w, "timestamp": str(ts), "type": "text", "text": {"body": w}}
            for w, ts in items
        ],
    }
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(doc).encode()


async def fill(sidecar, n: int, *, start: int = 0, step: int = 1, chunk: int = 200) -> None:
    """``n`` messages ``m<i>`` at one second apart (``step`` apart in timestamps)."""
    for lo in range(0, n, chunk):
        items = [(f"m{i}", BASE + i * step) for i in range(start + lo, start + min(n, lo + chunk))]
        await sidecar.deliver(inbound_many(items))


async def page(sidecar, query: str = "", token: str = ALICE) -> dict:
    status, body = await sidecar.api("GET", f"/api/conversations/1/messages{query}", token)
    assert status == 200, body
    return body


async def walk_back(sidecar, limit: int | None = None, max_pages: int = 200) -> list[list[str]]:
    """Latest page, then ``before=<older>`` until ``older`` is null. Returns the pages' bodies."""
    lim = f"limit={limit}&" if limit else ""
    body = await page(sidecar, f"?{lim}")
    pages = [[m["body"] for m in body["messages"]]]
    while body["older"] is not None:
        assert body["more"] is True
        assert len(pages) < max_pages, "paging does not end"
        body = await page(sidecar, f"?{lim}before={body['older']}")
        pages.append([m["body"] for m in body["messages"]])
    assert body["more"] is False
    return pages


def chat_order(n: int) -> list[str]:
    return [f"m{i}" for i in range(n)]


async def test_a_long_chat_is_reachable_to_its_first_message(sidecar) -> None:
    """600 messages, default limit 500: the first 100 used to be unreachable."""
    await fill(sidecar, 600)
    pages = await walk_back(sidecar)
    assert [len(p) for p in pages] == [500, 100]
    assert [b for p in reversed(pages) for b in p] == chat_order(600)


async def test_paging_back_with_a_small_limit_reaches_every_message_once(sidecar) -> None:
    await fill(sidecar, 102)
    pages = await walk_back(sidecar, limit=10)
    assert [len(p) for p in pages] == [10] * 10 + [2]
    assert [b for p in reversed(pages) for b in p] == chat_order(102)


async def test_paging_forward_from_the_first_page_reaches_the_newest(sidecar) -> None:
    await fill(sidecar, 25)
    oldest = (await walk_back(sidecar, limit=10))[-1]
    assert oldest == chat_order(5)
    body = await page(sidecar, "?limit=10&before=" + encode_token(BASE + 5, 5))
    assert [m["body"] for m in body["messages"]] == chat_order(5)
    assert body["older"] is None and body["newer"] == encode_token(BASE + 4, 4)
    seen = [m["body"] for m in body["messages"]]
    while body["newer"] is not None:
        body = await page(sidecar, f"?limit=10&after_key={body['newer']}")
        seen += [m["body"] for m in body["messages"]]
        assert body["more"] is (body["newer"] is not None)
    assert seen == chat_order(25)


async def test_late_older_messages_between_pages_land_where_they_belong(sidecar) -> None:
    """Timestamps 0, 10, 20, ... 290; late messages arrive between page fetches."""
    await fill(sidecar, 30, step=10)
    first = await page(sidecar, "?limit=10")
    assert [m["body"] for m in first["messages"]] == [f"m{i}" for i in range(20, 30)]
    # Late: one in the part not paged yet (will be on a later page), one in the part already paged
    # (comes on the stream: a change after the first page's cursor), one equal to a page edge.
    await sidecar.deliver(
        inbound_many([("late-old", BASE + 55), ("late-paged", BASE + 255), ("late-edge", BASE + 200)])
    )
    second = await page(sidecar, f"?limit=10&before={first['older']}")
    assert [m["body"] for m in second["messages"]] == [f"m{i}" for i in range(10, 20)]
    # "late-edge" has m20's timestamp but arrived later: it sorts after m20, in the paged part.
    await sidecar.deliver(inbound_many([("late-older", BASE + 5)]))
    third = await page(sidecar, f"?limit=10&before={second['older']}")
    assert [m["body"] for m in third["messages"]] == [
        "m1", "m2", "m3", "m4", "m5", "late-old", "m6", "m7", "m8", "m9",
    ]  # fmt: skip
    fourth = await page(sidecar, f"?limit=10&before={third['older']}")
    assert [m["body"] for m in fourth["messages"]] == ["m0", "late-older"]
    assert fourth["older"] is None and fourth["more"] is False
    # What paging back did not return is exactly what changed after the first page's cursor.
    status, changes = await sidecar.api("GET", f"/api/conversations/1/messages?after={first['cursor']}")
    assert status == 200
    assert sorted(m["body"] for m in changes["messages"]) == sorted(
        ["late-old", "late-paged", "late-edge", "late-older"]
    )
    whole = [m["body"] for m in (await page(sidecar))["messages"]]
    assert whole.index("late-edge") == whole.index("m20") + 1
    assert whole.index("late-paged") == whole.index("m25") + 1


async def test_page_tokens_are_checked_and_directions_are_exclusive(sidecar) -> None:
    await fill(sidecar, 3)
    for query, word in (
        ("?before=nonsense", "before"),
        ("?after_key=" + encode_token(1, 1)[:-2] + "!!", "after_key"),
        ("?before=" + encode_token(BASE, 0) + "&after_key=" + encode_token(BASE, 0), "not both"),
        ("?after=1&before=" + encode_token(BASE, 0), "cannot be combined"),
    ):
        status, body = await sidecar.api("GET", f"/api/conversations/1/messages{query}", ALICE)
        assert status == 400 and word in body["error"], (query, body)
    for raw in (b'["x",1]', b"[1.5,-1]", b"[1.5]", b"[NaN,1]", b"{}", b"\xff"):
        with pytest.raises(BadToken):
            decode_token(base64.urlsafe_b64encode(raw).decode())
    assert decode_token(encode_token(1786629725.123456, 7)) == (1786629725.123456, 7)


async def test_changes_since_a_cursor_continue_page_after_page(sidecar) -> None:
    """``?after=`` used to filter a chat-order page: the next page was unreachable."""
    await fill(sidecar, 102)
    for follow in ("response", "highest"):
        seen: list[str] = []
        cursor = 0
        for _ in range(50):
            body = await page(sidecar, f"?limit=10&after={cursor}")
            seen += [m["body"] for m in body["messages"]]
            cursors = [m["cursor"] for m in body["messages"]]
            assert cursors == sorted(cursors)
            cursor = body["cursor"] if follow == "response" else max(cursors, default=cursor)
            if not body["more"]:
                break
        assert sorted(seen) == sorted(chat_order(102)) and len(seen) == 102, follow
    head = await page(sidecar)
    assert body["cursor"] == head["cursor"]


# --------------------------------------------------------------------------- the property
#
# Guarantee checked: walk back from the latest page along ``older`` until it is null while
# messages keep arriving (any timestamps, ties included). Then
#   (a) no message is in two pages; each page is in chat order and sorts wholly before the
#       page fetched before it;
#   (b) every message that existed when the walk started is in exactly one page;
#   (c) a message stored during the walk is in exactly one page if its key was below the walk's
#       position (the last page's oldest key) when it was stored, else in none; and then it is
#       a change after the first page's ``cursor`` (the stream or ``?after=`` delivers it).
# The forward walk from the oldest page along ``newer`` is checked the same way, mirrored.


@st.composite
def walks(draw):
    initial = draw(st.lists(st.integers(0, 20), max_size=25))
    limit = draw(st.integers(1, 6))
    # Each step: fetch the next page, or store a message with this timestamp first.
    steps = draw(st.lists(st.one_of(st.none(), st.integers(0, 20)), max_size=40))
    return initial, limit, steps


async def run_walk(engine, initial: list[int], limit: int, steps: list[int | None]) -> None:
    service = WhatsAppService(
        make_config(), engine=engine, clock=Clock(T0 + 3600), backoff_scale=0.0, auto_migrate=False
    )
    client = TestClient(TestServer(service.app))
    await client.start_server()
    n = 0

    async def store(ts_list: list[int]) -> list[str]:
        nonlocal n
        names = [f"w{n + i}" for i in range(len(ts_list))]
        n += len(ts_list)
        if names:
            items = [(w, BASE + ts) for w, ts in zip(names, ts_list, strict=True)]
            await service.inbox.store(inbound_many(items))
            await service.drain()
        return names

    async def get(query: str) -> dict:
        path = f"/api/conversations/1/messages?limit={limit}{query}"
        resp = await client.get(path, headers={"Authorization": f"Bearer {ADMIN}"})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    def key(m: dict) -> tuple:
        return tuple(m["sort_key"])

    try:
        await store(initial or [0])
        async with service.engine.connect() as conn:
            existing = set((await conn.execute(text("SELECT body FROM wa_messages"))).scalars())
        for direction in ("back", "forward"):
            if direction == "back":
                body = await get("")
                token_field, query = "older", "before"
            else:  # from the oldest page, forward
                body = await get("&after_key=" + encode_token(-1.0, 0))
                token_field, query = "newer", "after_key"
                async with service.engine.connect() as conn:
                    existing = set((await conn.execute(text("SELECT body FROM wa_messages"))).scalars())
            first_cursor = body["cursor"]
            pages = [body["messages"]]
            late: list[tuple[str, bool]] = []  # (name, expected in a later page)
            it = iter(steps)
            while body[token_field] is not None:
                assert len(pages) <= 200, "paging does not end"
                step = next(it, None)
                if step is not None:
                    bound = decode_token(body[token_field])
                    [name] = await store([step])
                    # The new message's seq is the largest yet, so on a tie it sorts after `bound`.
                    if direction == "back":
                        beyond = (BASE + step, 10**9) < bound
                    else:
                        beyond = BASE + step >= bound[0]
                    late.append((name, beyond))
                    continue
                body = await get(f"&{query}={body[token_field]}")
                pages.append(body["messages"])
            seen = [m["body"] for p in pages for m in p]
            assert len(seen) == len(set(seen)), "a message in two pages"
            for p in pages:
                assert [key(m) for m in p] == sorted(key(m) for m in p)
            for prev, nxt in zip(pages, pages[1:], strict=False):
                if prev and nxt:
                    if direction == "back":
                        assert key(nxt[-1]) < key(prev[0])
                    else:
                        assert key(prev[-1]) < key(nxt[0])
            assert existing <= set(seen)
            resp = await client.get(
                f"/api/conversations/1/messages?after={first_cursor}&limit=5000",
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            changed = {m["body"] for m in (await resp.json())["messages"]}
            for name, beyond in late:
                assert (name in seen) is beyond, (direction, name)
                assert name in changed
    finally:
        await client.close()
        await service.stop()


def run_on(backend: str, template: Path | None, schema: str | None, example: tuple) -> None:
    async def go() -> None:
        if backend == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix="whatsapp-paging-"))
            shutil.copyfile(template, tmp / "db.sqlite3")
            engine = create_engine(f"sqlite+aiosqlite:///{tmp}/db.sqlite3", sqlite_synchronous="OFF")
        else:
            engine = create_engine(PG_URL, schema=schema)
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {', '.join(WA_TABLES)} RESTART IDENTITY CASCADE"))
                await conn.execute(text("UPDATE wa_counters SET value = 0"))
        try:
            await run_walk(engine, *example)
        finally:
            await engine.dispose()
            if backend == "sqlite":
                shutil.rmtree(tmp, ignore_errors=True)

    asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_any_interleaving_of_inserts_and_page_fetches(backend: str, request: pytest.FixtureRequest) -> None:
    template = request.getfixturevalue("sqlite_template") if backend == "sqlite" else None
    schema = request.getfixturevalue("pg_schema_name") if backend == "postgresql" else None

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(walks())
    def check(example) -> None:
        run_on(backend, template, schema, example)

    check()
