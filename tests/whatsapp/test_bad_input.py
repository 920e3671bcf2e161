"""Odd or hostile input to the sidecar: a clear 4xx or a counted problem, never a 500 or bad JSON."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import text

from controller.whatsapp.jsonout import dumps
from controller.whatsapp.parse import MAX_TS
from tests.whatsapp.conftest import ADMIN, TOKENS, fixture_bytes

HUGE = "99999999999999999999999"  # beyond 64 bits


def strict(text: str) -> object:
    """Parse as strict JSON: bare Infinity/NaN are not JSON, whatever Python's json accepts."""

    def refuse(name: str) -> None:
        raise AssertionError(f"not JSON: bare {name}")

    return json.loads(text, parse_constant=refuse)


def inbound(wamid: str, timestamp: object) -> bytes:
    doc = json.loads(fixture_bytes("webhook_inbound_text.json"))
    doc["entry"][0]["changes"][0]["value"]["messages"][0].update({"id": wamid, "timestamp": timestamp})
    return json.dumps(doc).encode()


async def get_text(sc, path: str, token: str = ADMIN, **headers: str) -> tuple[int, str]:
    resp = await sc.client.get(path, headers={"Authorization": f"Bearer {token}", **headers})
    return resp.status, await resp.text()


@pytest.mark.parametrize("timestamp", ["1e400", "1e300", 1e300, "-5", "nan", True])
async def test_absurd_message_timestamps_are_refused_and_the_chat_stays_json(sidecar, timestamp) -> None:
    await sidecar.deliver(inbound("wamid.odd-ts", timestamp))
    [msg] = await sidecar.rows("SELECT conversation_id, event_ts FROM wa_messages")
    assert 0 <= msg["event_ts"] <= MAX_TS  # the time it arrived instead
    assert sidecar.service.metrics.get("webhook_problems") == 1
    for path in ("/api/conversations", f"/api/conversations/{msg['conversation_id']}/messages"):
        for token in (ADMIN, TOKENS["alice"]):
            status, text = await get_text(sidecar, path, token)
            assert status == 200, text
            strict(text)


async def test_stored_infinity_is_shown_as_null_not_bare_infinity(sidecar) -> None:
    await sidecar.deliver("webhook_inbound_text.json")
    async with sidecar.service.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE wa_messages SET event_ts = :inf"), {"inf": float("inf")})
        await conn.execute(text("UPDATE wa_conversations SET last_inbound_at = :inf"), {"inf": float("inf")})
    [conv] = await sidecar.rows("SELECT id FROM wa_conversations")
    for path in ("/api/conversations", f"/api/conversations/{conv['id']}/messages"):
        status, text = await get_text(sidecar, path)
        assert status == 200
        strict(text)
    assert dumps({"a": [float("inf"), float("nan"), 1.5]}) == '{"a": [null, null, 1.5]}'


async def test_error_codes_out_of_range_do_not_break_processing(sidecar) -> None:
    doc = json.loads(fixture_bytes("webhook_status_failed_131047.json"))
    status = doc["entry"][0]["changes"][0]["value"]["statuses"][0]
    status["errors"][0]["code"] = 10**30
    body = json.dumps(doc).encode().replace(b"1000000000000000000000000000000", b"1e400")
    await sidecar.deliver(body)
    assert await sidecar.rows("SELECT id FROM wa_webhook_inbox WHERE processed_at IS NULL") == []


DEEP = b"[" * 100_000 + b"]" * 100_000


async def test_deeply_nested_webhook_is_400_and_counted(sidecar) -> None:
    resp = await sidecar.post(DEEP)
    assert resp.status == 400
    assert sidecar.service.metrics.get("webhook_rejected", reason="invalid_json") == 1
    assert await sidecar.rows("SELECT id FROM wa_webhook_inbox") == []


async def test_deeply_nested_api_body_is_400_and_counted(sidecar) -> None:
    status, _ = await sidecar.api("POST", "/api/conversations", data=DEEP[:60_000] + DEEP[-60_000:])
    assert status == 400
    assert sidecar.service.metrics.get("api_rejected", reason="invalid_json") == 1


@pytest.mark.parametrize(
    "path",
    [
        f"/api/conversations/{HUGE}",
        f"/api/conversations/{HUGE}/messages",
        "/api/conversations/-1",
        "/api/conversations/１２",  # full-width digits
    ],
)
async def test_ids_beyond_64_bits_are_unknown_not_500(sidecar, path) -> None:
    status, _ = await sidecar.api("GET", path)
    assert status == 404


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (f"/api/conversations/1/messages?after={HUGE}", {}),
        (f"/api/conversations/1/messages?limit={HUGE}", {}),
        (f"/api/alerts?limit={HUGE}", {}),
        (f"/api/stream/sse?after={HUGE}", {}),
        ("/api/stream/sse", {"Last-Event-ID": HUGE}),
        ("/api/stream/sse", {"Last-Event-ID": "-1"}),
        (f"/api/stream?after={HUGE}", {}),
    ],
)
async def test_cursors_beyond_64_bits_are_400_before_any_stream_starts(sidecar, path, headers) -> None:
    await sidecar.deliver("webhook_inbound_text.json")
    status, text = await get_text(sidecar, path, **headers)
    assert status == 400, text


async def test_stream_frames_stay_json_when_a_stored_change_holds_infinity(sidecar) -> None:
    """Rows stored before timestamps were validated may hold a non-finite number (SQLite wrote
    ``Infinity`` into JSON text); the live streams must still send strict JSON."""
    if sidecar.service.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's json type refuses Infinity: such old rows exist only on SQLite")
    await sidecar.deliver(inbound("wamid.old-inf", "1786629726"))
    [row] = await sidecar.rows("SELECT cursor, payload FROM wa_changes ORDER BY cursor LIMIT 1")
    payload = row["payload"] if isinstance(row["payload"], str) else json.dumps(row["payload"])
    odd = payload.replace('"message": {', '"message": {"odd": Infinity, ', 1).replace(
        '"message":{', '"message":{"odd":Infinity,', 1
    )
    assert "Infinity" in odd
    async with sidecar.service.engine.begin() as conn:
        sql = text("UPDATE wa_changes SET payload = :p WHERE cursor = :c")
        await conn.execute(sql, {"p": odd, "c": row["cursor"]})
    resp = await sidecar.client.get(
        "/api/stream/sse", params={"token": ADMIN}, headers={"Last-Event-ID": "0"}
    )
    assert resp.status == 200
    data = ""
    while not data:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().strip()
        data = line[5:] if line.startswith("data:") else ""
    resp.close()
    frame = strict(data)
    assert frame["message"]["odd"] is None
