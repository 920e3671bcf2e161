"""Webhook contents -> chat: statuses by the rules, failures explained, batches, orphans, alerts."""

from __future__ import annotations

import json

from tests.whatsapp.conftest import (
    JOAO,
    MARIA,
    MSG_REPLY,
    PNID,
    T0,
    TOKENS,
    WAMID_REPLY,
    accept,
    fixture_bytes,
)


def status_body(statuses: list[dict], *, changes: int = 1) -> bytes:
    """A status webhook in Meta's shape, the statuses spread over ``changes`` changes."""
    per = max(1, -(-len(statuses) // changes))
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "551133334444", "phone_number_id": PNID},
    }
    chunks = [statuses[i : i + per] for i in range(0, len(statuses), per)]
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "104857361029384",
                    "changes": [{"value": {**value, "statuses": c}, "field": "messages"} for c in chunks],
                }
            ],
        }
    ).encode()


def inbound_body(wamid: str, ts: int, text: str, wa_id: str = MARIA, name: str = "Maria Souza") -> bytes:
    doc = json.loads(fixture_bytes("webhook_inbound_text.json"))
    value = doc["entry"][0]["changes"][0]["value"]
    value["contacts"][0].update(wa_id=wa_id, profile={"name": name})
    value["messages"][0].update({"from": wa_id, "id": wamid, "timestamp": str(ts), "text": {"body": text}})
    return json.dumps(doc).encode()


async def open_reply(
    sc, *, message_id: str = MSG_REPLY, wamid: str = WAMID_REPLY, respond: bool = True
) -> dict:
    """Customer writes, alice answers; Meta accepts with the fixtures' wamid. Returns the reply row."""
    await sc.deliver("webhook_inbound_text.json")
    [conv] = await sc.rows("SELECT id FROM wa_conversations")
    if respond:
        accept(sc.meta, wamid)
    sc.service.sender_ids = iter([message_id])
    import controller.whatsapp.changes as changes

    original = changes.new_message_id
    changes.new_message_id = lambda: message_id
    try:
        status, body = await sc.send_text(
            conv["id"], "Oi Maria! Verifiquei: o pedido 48213 sai para entrega hoje."
        )
    finally:
        changes.new_message_id = original
    assert status == 202, body
    await sc.service.drain()
    [row] = await sc.rows("SELECT * FROM wa_messages WHERE id = :id", id=message_id)
    return row


async def test_inbound_text_creates_conversation_and_message(sidecar) -> None:
    await sidecar.deliver("webhook_inbound_text.json")
    [conv] = await sidecar.rows("SELECT * FROM wa_conversations")
    assert conv["wa_id"] == MARIA and conv["display_name"] == "Maria Souza"
    assert conv["phone_number_id"] == PNID
    assert conv["last_inbound_at"] == T0
    [msg] = await sidecar.messages()
    assert msg["direction"] == "in" and msg["event_ts"] == T0 and msg["seq"] == 0
    assert msg["wamid"].startswith("wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNF")


async def test_sent_delivered_read_in_order(sidecar) -> None:
    reply = await open_reply(sidecar)
    assert reply["wamid"] == WAMID_REPLY and reply["status"] == "pending"
    for name, expected in (
        ("webhook_status_sent.json", "sent"),
        ("webhook_status_delivered.json", "delivered"),
        ("webhook_status_read.json", "read"),
    ):
        await sidecar.deliver(name)
        [row] = await sidecar.rows("SELECT status FROM wa_messages WHERE id = :id", id=MSG_REPLY)
        assert row["status"] == expected, name
    history = await sidecar.rows(
        "SELECT status FROM wa_status_history WHERE message_id = :id ORDER BY ts", id=MSG_REPLY
    )
    assert [h["status"] for h in history] == ["sent", "delivered", "read"]


async def test_out_of_order_batch_never_downgrades_read(sidecar) -> None:
    await open_reply(sidecar)
    await sidecar.deliver("webhook_batch_out_of_order_statuses.json")  # read first, then a late sent
    [row] = await sidecar.rows("SELECT status, status_ts FROM wa_messages WHERE id = :id", id=MSG_REPLY)
    assert row["status"] == "read" and row["status_ts"] == 1786629905
    statuses = {h["status"] for h in await sidecar.rows("SELECT status FROM wa_status_history")}
    assert statuses == {"read", "sent"}  # both changes of the one POST were processed


async def test_duplicates_change_nothing(sidecar) -> None:
    await open_reply(sidecar)
    await sidecar.deliver("webhook_status_delivered.json")
    changes_before = await sidecar.rows("SELECT cursor FROM wa_changes")
    doc = json.loads(fixture_bytes("webhook_status_delivered.json"))
    doc["entry"] = doc["entry"] * 3  # the same status three times in a fresh POST
    await sidecar.deliver(json.dumps(doc).encode(), "webhook_status_sent.json")
    assert await sidecar.rows("SELECT cursor FROM wa_changes") == changes_before
    assert len(await sidecar.rows("SELECT id FROM wa_status_history")) == 2


async def test_failed_131047_is_explained_on_the_message(sidecar) -> None:
    """Free text 26 h later: Meta said 200, then the failed webhook; the bubble explains why."""
    await open_reply(
        sidecar,
        message_id="msg:1d9e4b77-0a3c-4f51-8e26-7b5c9a0d3e12",
        wamid="wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYFEE5M0M1NUUwMUI3RDRGMkU4QzExAA==",
    )
    await sidecar.deliver("webhook_status_failed_131047.json")
    status, body = await sidecar.api("GET", "/api/conversations/1/messages", TOKENS["alice"])
    assert status == 200
    reply = body["messages"][-1]
    assert reply["status"] == "failed"
    error = reply["error"]
    assert error["code"] == 131047 and error["title"] == "Re-engagement message"
    assert error["details"].startswith("Message failed to send because more than 24 hours")
    assert error["href"] == "/documentation/business-messaging/whatsapp/support/error-codes"
    pt, en = error["explanation"]["pt_BR"], error["explanation"]["en"]
    assert "24 horas" in pt["title"] and "template aprovado" in pt["action"]
    assert "24-hour window is closed" in en["title"] and "approved template" in en["action"]
    assert error["explanation"]["retry_class"] == "P"


async def test_failed_130472_experiment_for_joao(make_sidecar) -> None:
    sc = await make_sidecar()
    await sc.deliver(inbound_body("wamid.joao.in.1", int(T0), "oi", wa_id=JOAO, name="João"))
    await open_reply_in(
        sc,
        1,
        "msg:5a0f2c3e-9b7d-4e18-a6c4-2d1e0f9b8c73",
        "wamid.HBgNNTUyMTk5ODc2NTQzMhUCABEYFEQyRTRGNjA3MTgyOTNBNEI1QzZEAA==",
        JOAO,
    )
    await sc.deliver("webhook_status_failed_130472.json")
    [row] = await sc.rows("SELECT * FROM wa_messages WHERE direction = 'out'")
    assert row["status"] == "failed" and row["error_code"] == 130472
    assert (
        row["error_details"]
        == "Failed to send message because this user's phone number is part of an experiment"
    )
    status, body = await sc.api("GET", "/api/conversations/1/messages")
    explanation = body["messages"][-1]["error"]["explanation"]
    assert explanation["pt_BR"]["title"] == "Cliente em experimento da Meta"
    assert "experiment" in explanation["en"]["title"]


async def open_reply_in(sc, conversation_id: int, message_id: str, wamid: str, wa_id: str) -> None:
    import controller.whatsapp.changes as changes

    accept(sc.meta, wamid, wa_id)
    original = changes.new_message_id
    changes.new_message_id = lambda: message_id
    try:
        status, body = await sc.api(
            "POST",
            f"/api/conversations/{conversation_id}/messages",
            TOKENS["alice"],
            json={"type": "template", "template": {"name": "promo", "language": "pt_BR"}},
        )
    finally:
        changes.new_message_id = original
    assert status == 202, body
    await sc.service.drain()


async def test_failed_132015_template_paused(sidecar) -> None:
    await sidecar.deliver("webhook_inbound_text.json")
    await open_reply_in(
        sidecar,
        1,
        "msg:c8b1d2e3-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
        "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYFDRDN0ExRTlGMEIyRDNDNUU2QThCAA==",
        MARIA,
    )
    await sidecar.deliver("webhook_status_failed_132015_template_paused.json")
    status, body = await sidecar.api("GET", "/api/conversations/1/messages")
    error = body["messages"][-1]["error"]
    assert error["code"] == 132015
    assert error["explanation"]["pt_BR"]["title"] == "Template pausado por baixa qualidade"


async def test_failed_after_read_is_history_not_failure(sidecar) -> None:
    await open_reply(sidecar)
    await sidecar.deliver("webhook_status_read.json")
    late_failure = json.loads(fixture_bytes("webhook_status_failed_131047.json"))
    st = late_failure["entry"][0]["changes"][0]["value"]["statuses"][0]
    st.update(id=WAMID_REPLY, biz_opaque_callback_data=MSG_REPLY)
    await sidecar.deliver(json.dumps(late_failure).encode())
    [row] = await sidecar.rows("SELECT status, error_code FROM wa_messages WHERE id = :id", id=MSG_REPLY)
    assert row == {"status": "read", "error_code": None}
    codes = [h["error_code"] for h in await sidecar.rows("SELECT error_code FROM wa_status_history")]
    assert 131047 in codes


async def test_delivered_after_failed_moves_on_and_keeps_the_error_in_history(sidecar) -> None:
    await open_reply(sidecar)
    failure = json.loads(fixture_bytes("webhook_status_failed_131047.json"))
    st = failure["entry"][0]["changes"][0]["value"]["statuses"][0]
    st.update(id=WAMID_REPLY, biz_opaque_callback_data=MSG_REPLY, timestamp="1786629840")
    await sidecar.deliver(json.dumps(failure).encode())
    [row] = await sidecar.rows("SELECT status FROM wa_messages WHERE id = :id", id=MSG_REPLY)
    assert row["status"] == "failed"
    await sidecar.deliver("webhook_status_sent.json")  # sent after failed: stays failed
    [row] = await sidecar.rows("SELECT status FROM wa_messages WHERE id = :id", id=MSG_REPLY)
    assert row["status"] == "failed"
    await sidecar.deliver("webhook_status_delivered.json")
    [row] = await sidecar.rows("SELECT status, error_code FROM wa_messages WHERE id = :id", id=MSG_REPLY)
    assert row == {"status": "delivered", "error_code": None}
    status, body = await sidecar.api("GET", f"/api/messages/{MSG_REPLY}/history")
    assert status == 200
    failed = [h for h in body["history"] if h["status"] == "failed"]
    assert failed and failed[0]["error_code"] == 131047 and failed[0]["error_details"]


async def test_value_errors_become_a_channel_alert_not_a_bubble(sidecar) -> None:
    await open_reply(sidecar)
    before = await sidecar.rows("SELECT id, status FROM wa_messages ORDER BY id")
    await sidecar.deliver("webhook_value_errors_130429.json", "webhook_value_errors_130429.json")
    [alert] = await sidecar.rows("SELECT * FROM wa_channel_alerts")
    assert alert["code"] == 130429 and alert["retry_class"] == "T" and alert["source"] == "webhook"
    assert alert["phone_number_id"] == PNID and alert["details"].startswith("Message failed to send")
    assert await sidecar.rows("SELECT id, status FROM wa_messages ORDER BY id") == before
    status, body = await sidecar.api("GET", "/api/alerts", TOKENS["alice"])
    assert status == 200 and body["alerts"][0]["explanation"]["pt_BR"]["title"]


async def test_status_before_send_response_is_correlated_by_callback_data(sidecar) -> None:
    """The sent webhook races ahead of Meta's HTTP answer: biz_opaque_callback_data finds the message."""
    await sidecar.deliver("webhook_inbound_text.json")
    import asyncio

    gate, asked = asyncio.Event(), asyncio.Event()

    async def slow_accept(request):  # Meta answers only after the webhook got through
        asked.set()
        await gate.wait()
        return __import__("httpx").Response(200, json={"messages": [{"id": WAMID_REPLY}]})

    sidecar.meta.post(url__regex=r".*/messages$").mock(side_effect=slow_accept)
    import controller.whatsapp.changes as changes

    original = changes.new_message_id
    changes.new_message_id = lambda: MSG_REPLY
    try:
        status, _ = await sidecar.send_text(1, "Oi Maria!")
    finally:
        changes.new_message_id = original
    assert status == 202
    await asyncio.wait_for(asked.wait(), 10)  # the send is now waiting on Meta
    resp = await sidecar.post("webhook_status_delivered.json")
    assert resp.status == 200
    while await sidecar.service.process_now():
        pass
    [row] = await sidecar.rows("SELECT wamid, status FROM wa_messages WHERE id = :id", id=MSG_REPLY)
    assert row == {"wamid": WAMID_REPLY, "status": "delivered"}
    gate.set()
    await sidecar.service.drain()
    [row] = await sidecar.rows("SELECT wamid, status FROM wa_messages WHERE id = :id", id=MSG_REPLY)
    assert row == {"wamid": WAMID_REPLY, "status": "delivered"}
    assert sidecar.service.metrics.get("statuses_correlated_by_callback") == 1


async def test_orphan_status_waits_for_the_send_response(sidecar) -> None:
    """No callback data (or an unknown one): kept by wamid and applied when the wamid shows up."""
    await sidecar.deliver("webhook_inbound_text.json")
    statuses = [
        {"id": WAMID_REPLY, "status": "read", "timestamp": "1786629905", "recipient_id": MARIA},
        {"id": WAMID_REPLY, "status": "sent", "timestamp": "1786629846", "recipient_id": MARIA},
    ]
    await sidecar.deliver(status_body(statuses))
    assert len(await sidecar.rows("SELECT id FROM wa_orphan_statuses")) == 2
    reply = await open_reply_after(sidecar)
    assert reply["status"] == "read"
    assert await sidecar.rows("SELECT id FROM wa_orphan_statuses") == []
    assert {h["status"] for h in await sidecar.rows("SELECT status FROM wa_status_history")} == {
        "read",
        "sent",
    }


async def open_reply_after(sc) -> dict:
    accept(sc.meta)
    status, body = await sc.send_text(1, "Oi")
    assert status == 202
    await sc.service.drain()
    [row] = await sc.rows("SELECT * FROM wa_messages WHERE direction = 'out'")
    return row


async def test_orphans_expire_after_the_ttl(sidecar) -> None:
    await sidecar.deliver(
        status_body([{"id": "wamid.elsewhere", "status": "sent", "timestamp": "1786629846"}])
    )
    assert await sidecar.service.ingestor.purge_orphans() == 0
    sidecar.clock.advance(73 * 3600)
    assert await sidecar.service.ingestor.purge_orphans() == 1
    assert await sidecar.rows("SELECT id FROM wa_orphan_statuses") == []


async def test_batch_of_1000_statuses_across_entries_and_changes(sidecar) -> None:
    """One POST, 1000 statuses for 250 messages spread over 10 changes: every one is applied."""
    await sidecar.deliver("webhook_inbound_text.json")
    n = 250
    for i in range(n):
        accept(sidecar.meta, f"wamid.bulk.{i}")
        status, _ = await sidecar.send_text(1, f"m{i}")
        assert status == 202
        await sidecar.service.drain()
    statuses = []
    for i in range(n):
        for j, st in enumerate(("read", "delivered", "sent", "delivered")):  # out of order + a duplicate
            statuses.append(
                {"id": f"wamid.bulk.{i}", "status": st, "timestamp": str(1786629800 + 10 * i + j)}
            )
    assert len(statuses) == 1000
    body = status_body(statuses, changes=10)
    await sidecar.deliver(body)
    rows = await sidecar.rows("SELECT status FROM wa_messages WHERE direction = 'out'")
    assert len(rows) == n and {r["status"] for r in rows} == {"read"}
    assert len(await sidecar.rows("SELECT id FROM wa_status_history")) == 1000  # distinct timestamps


async def test_username_only_user_and_missing_contacts_are_tolerated(sidecar) -> None:
    doc = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": PNID},
                            "contacts": [
                                {"user_id": "BR.1234567890", "profile": {"name": "Ana", "username": "ana.s"}}
                            ],
                            "messages": [
                                {
                                    "from_user_id": "BR.1234567890",
                                    "id": "wamid.user.1",
                                    "timestamp": str(int(T0)),
                                    "type": "text",
                                    "text": {"body": "oi"},
                                    "some_new_field": {"x": 1},
                                },
                                {
                                    "from": "5511000000001",
                                    "id": "wamid.nocontact.1",
                                    "timestamp": str(int(T0)),
                                    "type": "image",
                                    "image": {"caption": "foto", "id": "123"},
                                },
                                {
                                    "id": "wamid.anon.1",
                                    "timestamp": str(int(T0)),
                                    "type": "text",
                                    "text": {"body": "?"},
                                },
                            ],
                        },
                    },
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": PNID},
                            "messages": [
                                {
                                    "id": "wamid.nobody.1",
                                    "timestamp": str(int(T0)),
                                    "type": "text",
                                    "text": {"body": "!"},
                                }
                            ],
                        },
                    },
                    {"field": "account_update", "value": {"event": "X"}},
                ],
            }
        ],
    }
    await sidecar.deliver(json.dumps(doc).encode())
    convs = {c["customer_key"]: c for c in await sidecar.rows("SELECT * FROM wa_conversations")}
    assert set(convs) == {"user:BR.1234567890", "5511000000001"}
    assert convs["user:BR.1234567890"]["username"] == "ana.s" and convs["user:BR.1234567890"]["wa_id"] is None
    bodies = sorted(m["body"] for m in await sidecar.messages())
    assert bodies == ["?", "foto", "oi"]  # "?" has no from: the value's only contact (Ana) sent it
    assert sidecar.service.metrics.get("webhook_problems") == 2  # no sender; ignored field
    # Nobody can send free text to a username-only user yet: a clear refusal, nothing stored.
    cid = convs["user:BR.1234567890"]["id"]
    status, body = await sidecar.send_text(cid, "oi")
    assert status == 422 and "username-only" in body["error"]


async def test_a_bad_body_does_not_block_the_others(sidecar, monkeypatch) -> None:
    """A stored body that makes processing crash is retried later; the rest go through."""
    import controller.whatsapp.ingest as ingest

    real = ingest.Ingestor._inbound

    async def flaky(self, u, items):
        if any(m.wamid == "wamid.poison" for _, _, p in items for m in p.inbound):
            raise RuntimeError("boom")
        return await real(self, u, items)

    monkeypatch.setattr(ingest.Ingestor, "_inbound", flaky)
    svc = sidecar.service
    for body in (
        inbound_body("wamid.ok.1", int(T0), "a"),
        inbound_body("wamid.poison", int(T0) + 1, "b"),
        inbound_body("wamid.ok.2", int(T0) + 2, "c"),
    ):
        assert (await sidecar.post(body)).status == 200
    while await svc.process_now():
        if not await svc.ingestor.pending():
            break
    assert sorted(m["body"] for m in await sidecar.messages()) == ["a", "c"]
    [poison] = await sidecar.rows("SELECT attempts, processed_at FROM wa_webhook_inbox WHERE attempts > 0")
    assert poison["processed_at"] is None
    assert svc.metrics.get("webhook_process_failed") >= 1
    monkeypatch.setattr(ingest.Ingestor, "_inbound", real)
    await svc.drain()
    assert sorted(m["body"] for m in await sidecar.messages()) == ["a", "c"]  # waiting out its backoff
    sidecar.clock.advance(3600)
    await svc.drain()
    assert sorted(m["body"] for m in await sidecar.messages()) == ["a", "b", "c"]
