"""History API order, who sees what, and the live stream's resume (no gap, no duplicate)."""

from __future__ import annotations

import asyncio
import json

from tests.timing import until
from tests.whatsapp.conftest import ADMIN, TOKENS, accept
from tests.whatsapp.test_ingest import inbound_body, status_body

ALICE, BOB, CAROL = TOKENS["alice"], TOKENS["bob"], TOKENS["carol"]


async def ws(sc, token: str, after: int | None = None):
    path = "/api/stream" if after is None else f"/api/stream?after={after}"
    return await sc.client.ws_connect(path, headers={"Authorization": f"Bearer {token}"})


async def frames(conn, n: int, timeout: float = 3.0) -> list[dict]:
    return [await conn.receive_json(timeout=timeout) for _ in range(n)]


async def no_more(conn, wait: float = 0.2) -> bool:
    try:
        await conn.receive_json(timeout=wait)
    except TimeoutError:
        return True
    return False


async def test_history_is_in_chat_order_whatever_the_arrival_order(sidecar) -> None:
    base = 1786629725
    # Meta delivers the customer's 3rd message first, then the 1st, then the 2nd.
    await sidecar.deliver(inbound_body("wamid.c", base + 30, "three"))
    await sidecar.deliver(inbound_body("wamid.a", base + 10, "one"))
    await sidecar.deliver(inbound_body("wamid.b", base + 20, "two"))
    await sidecar.deliver(inbound_body("wamid.b2", base + 20, "two-bis"))  # same second: after "two"
    accept(sidecar.meta)
    sidecar.clock.now = base + 25
    await sidecar.send_text(1, "agent reply")
    await sidecar.service.drain()
    status, body = await sidecar.api("GET", "/api/conversations/1/messages", ALICE)
    assert status == 200
    assert [m["body"] for m in body["messages"]] == ["one", "two", "two-bis", "agent reply", "three"]
    keys = [tuple(m["sort_key"]) for m in body["messages"]]
    assert keys == sorted(keys)
    assert body["cursor"] == max(m["cursor"] for m in body["messages"])


async def test_visibility_team_assignment_and_taking_by_sending(sidecar) -> None:
    await sidecar.deliver("webhook_inbound_text.json")
    for token, n in ((ALICE, 1), (BOB, 1), (CAROL, 0), (ADMIN, 1)):
        status, body = await sidecar.api("GET", "/api/conversations", token)
        assert status == 200 and len(body["conversations"]) == n, token
    assert (await sidecar.api("GET", "/api/conversations/1/messages", CAROL))[0] == 404
    assert (await sidecar.send_text(1, "oi", CAROL))[0] == 404

    accept(sidecar.meta)
    assert (await sidecar.send_text(1, "oi", ALICE))[0] == 202  # alice takes it
    assert len((await sidecar.api("GET", "/api/conversations", BOB))[1]["conversations"]) == 0
    assert (await sidecar.send_text(1, "sou o bob", BOB))[0] == 404

    assert (await sidecar.api("POST", "/api/conversations/1/assign", ALICE, json={"agent": "bob"}))[0] == 403
    status, body = await sidecar.api("POST", "/api/conversations/1/assign", ADMIN, json={"agent": "nobody"})
    assert status == 400 and "unknown agent" in body["error"]
    status, body = await sidecar.api("POST", "/api/conversations/1/assign", ADMIN, json={"agent": "carol"})
    assert status == 200 and body["conversation"]["assigned_agent"] == "carol"
    assert (await sidecar.api("GET", "/api/conversations/1/messages", CAROL))[0] == 200
    assert (await sidecar.api("GET", "/api/conversations/1/messages", ALICE))[0] == 404


async def test_no_or_bad_token_is_401(sidecar) -> None:
    resp = await sidecar.client.get("/api/conversations")
    assert resp.status == 401
    assert (await sidecar.api("GET", "/api/conversations", "wrong-token"))[0] == 401
    resp = await sidecar.client.get("/api/stream")
    assert resp.status == 401


async def test_stream_pushes_messages_statuses_and_failures_with_sort_keys(sidecar) -> None:
    conn = await ws(sidecar, ALICE)
    hello = await conn.receive_json(timeout=3)
    assert hello == {"type": "hello", "cursor": 0}
    await sidecar.deliver("webhook_inbound_text.json")
    got = await frames(conn, 2)  # the new conversation, the customer's message
    kinds = {f["type"] for f in got}
    assert kinds == {"conversation", "message"}
    msg = next(f for f in got if f["type"] == "message")
    assert msg["event"] == "new" and msg["sort_key"] == [1786629725.0, 0]
    assert msg["message"]["body"].startswith("Olá")

    accept(sidecar.meta)
    await sidecar.send_text(1, "oi")
    await sidecar.service.drain()
    got = await frames(conn, 3)  # pending message, assignment to alice, then accepted (wamid known)
    assert [f["type"] for f in got].count("message") == 2
    wamid_frame = got[-1]
    assert wamid_frame["message"]["accepted"] is True

    failure = json.loads(
        (await sidecar.rows("SELECT wamid FROM wa_messages WHERE direction='out'"))[0]["wamid"].join(
            ['"', '"']
        )
    )
    await sidecar.deliver(
        status_body(
            [
                {
                    "id": failure,
                    "status": "failed",
                    "timestamp": "1786629790",
                    "errors": [
                        {
                            "code": 131026,
                            "title": "Message undeliverable",
                            "message": "Message undeliverable",
                            "error_data": {"details": "Message Undeliverable."},
                        }
                    ],
                }
            ]
        )
    )
    [failed] = await frames(conn, 1)
    assert failed["event"] == "failed"
    assert failed["message"]["error"]["explanation"]["pt_BR"]["title"] == "Mensagem não entregável"
    cursors = [hello["cursor"]] + [f["cursor"] for f in got] + [failed["cursor"]]
    assert cursors == sorted(cursors)
    await conn.close()


async def test_reconnect_with_after_has_no_gap_and_no_duplicate(sidecar) -> None:
    conn = await ws(sidecar, ALICE)
    await conn.receive_json(timeout=3)
    base = 1786629725
    await sidecar.deliver(inbound_body("wamid.1", base + 1, "m1"), inbound_body("wamid.2", base + 2, "m2"))
    seen = await frames(conn, 3)  # conversation + 2 messages
    last = seen[-1]["cursor"]
    await conn.close()

    # While disconnected: a late message (earlier timestamp) and a new one.
    await sidecar.deliver(inbound_body("wamid.0", base, "m0-late"), inbound_body("wamid.3", base + 3, "m3"))
    conn = await ws(sidecar, ALICE, after=last)
    replayed = await frames(conn, 2)
    assert [f["message"]["body"] for f in replayed] == ["m0-late", "m3"]
    m1 = next(f for f in seen if f["type"] == "message" and f["message"]["body"] == "m1")
    assert replayed[0]["sort_key"] < m1["sort_key"]  # the client inserts it before m1
    assert replayed[0]["cursor"] == last + 1 and replayed[1]["cursor"] == last + 2
    await sidecar.deliver(inbound_body("wamid.4", base + 4, "m4"))
    [live] = await frames(conn, 1)
    assert live["message"]["body"] == "m4" and live["cursor"] == last + 3
    assert await no_more(conn)
    await conn.close()


async def test_history_cursor_then_stream_after_continues_exactly(sidecar) -> None:
    base = 1786629725
    await sidecar.deliver(inbound_body("wamid.1", base + 1, "m1"))
    _, body = await sidecar.api("GET", "/api/conversations/1/messages", ALICE)
    await sidecar.deliver(inbound_body("wamid.2", base + 2, "m2"))
    conn = await ws(sidecar, ALICE, after=body["cursor"])
    [frame] = await frames(conn, 1)
    assert frame["message"]["body"] == "m2"
    assert await no_more(conn)
    await conn.close()
    # The same catch-up through the history API
    _, since = await sidecar.api("GET", f"/api/conversations/1/messages?after={body['cursor']}", ALICE)
    assert [m["body"] for m in since["messages"]] == ["m2"]


async def test_stream_only_carries_the_agents_conversations(sidecar) -> None:
    alice, carol = await ws(sidecar, ALICE), await ws(sidecar, CAROL)
    await alice.receive_json(timeout=3)
    await carol.receive_json(timeout=3)
    await sidecar.deliver("webhook_inbound_text.json")
    assert len(await frames(alice, 2)) == 2
    assert await no_more(carol)  # carol is not in the team
    await sidecar.deliver("webhook_value_errors_130429.json")  # channel alerts reach everyone
    assert (await frames(carol, 1))[0]["type"] == "alert"
    assert (await frames(alice, 1))[0]["type"] == "alert"
    await alice.close()
    await carol.close()


async def test_concurrent_writers_keep_the_stream_gap_free(sidecar) -> None:
    """Webhooks and sends committing at the same time still reach the client in cursor order."""
    conn = await ws(sidecar, ADMIN)
    await conn.receive_json(timeout=3)
    await sidecar.deliver(inbound_body("wamid.first", 1786629725, "first"))
    accept(sidecar.meta)
    base = 1786629726
    posts = [sidecar.post(inbound_body(f"wamid.x{i}", base + i, f"x{i}")) for i in range(20)]
    sends = [sidecar.send_text(1, f"s{i}") for i in range(5)]
    await asyncio.gather(*posts, *sends)
    await sidecar.service.drain()
    n = (await sidecar.rows("SELECT count(*) AS n FROM wa_changes"))[0]["n"]
    got = await frames(conn, n)
    assert [f["cursor"] for f in got] == list(range(1, n + 1))
    await conn.close()


async def test_sse_stream_resumes_with_last_event_id(sidecar) -> None:
    await sidecar.deliver(inbound_body("wamid.1", 1786629726, "m1"))
    resp = await sidecar.client.get(
        "/api/stream/sse", params={"token": ALICE}, headers={"Last-Event-ID": "0"}
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    lines = []
    while len([x for x in lines if x.startswith("data:")]) < 1:
        lines.append((await asyncio.wait_for(resp.content.readline(), 3)).decode().strip())
    assert lines[0] == "id: 1" and lines[1] == "event: message"
    assert json.loads(lines[2][5:])["message"]["body"] == "m1"
    resp.close()


async def test_open_conversation_for_a_template(sidecar) -> None:
    status, body = await sidecar.api("POST", "/api/conversations", ALICE, json={"wa_id": "+5511911112222"})
    assert status == 201 and body["conversation"]["assigned_agent"] == "alice"
    assert body["conversation"]["window_open"] is False
    status, body = await sidecar.api("POST", "/api/conversations", ALICE, json={"wa_id": "abc"})
    assert status == 400


async def test_a_client_that_leaves_is_unsubscribed_at_once(sidecar) -> None:
    conn = await ws(sidecar, ALICE)
    await conn.receive_json(timeout=3)
    assert len(sidecar.service.hub.subscribers) == 1
    await conn.close()
    await until(lambda: not sidecar.service.hub.subscribers, what="the hub dropped the closed socket")
    assert sidecar.service.hub.subscribers == set()  # no pump left waiting for the next frame
