"""The webhook door: verification, signatures over raw bytes, limits, durability before the 200."""

from __future__ import annotations

import json

import pytest

from tests.whatsapp.conftest import (
    APP_SECRET,
    SIGNATURES,
    VERIFY_TOKEN,
    fixture_bytes,
    sign,
)

WEBHOOK_FIXTURES = sorted(SIGNATURES)


async def test_get_verification(sidecar) -> None:
    ok = await sidecar.client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": VERIFY_TOKEN},
    )
    assert ok.status == 200 and await ok.text() == "1158201444"
    bad = await sidecar.client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "wrong"},
    )
    assert bad.status == 403
    assert sidecar.service.metrics.get("webhook_rejected", reason="verify_token") == 1


def test_fixture_signatures_match_the_exact_bytes() -> None:
    """The fixture signatures are over the raw file bytes, \\u escapes included."""
    for name in WEBHOOK_FIXTURES:
        assert sign(fixture_bytes(name), APP_SECRET) == SIGNATURES[name], name
    raw = fixture_bytes("webhook_inbound_text.json")
    assert b"\\u00e1" in raw  # "Olá" is escaped in the signed bytes
    reserialised = json.dumps(json.loads(raw), ensure_ascii=False).encode()
    assert sign(reserialised) != SIGNATURES["webhook_inbound_text.json"]


async def test_every_fixture_is_accepted_with_its_signature(sidecar) -> None:
    for name in WEBHOOK_FIXTURES:
        resp = await sidecar.post(name)
        assert resp.status == 200, name
    await sidecar.service.drain()
    inbox = await sidecar.rows("SELECT processed_at FROM wa_webhook_inbox")
    assert len(inbox) == len(WEBHOOK_FIXTURES)
    assert all(r["processed_at"] is not None for r in inbox)
    assert sidecar.service.metrics.get("webhook_accepted") == len(WEBHOOK_FIXTURES)


async def test_non_ascii_body_is_verified_over_raw_bytes_and_decoded(sidecar) -> None:
    await sidecar.deliver("webhook_inbound_text.json")
    [msg] = await sidecar.messages()
    assert msg["body"] == "Olá, meu pedido 48213 ainda não chegou. Podem verificar?"
    # A body re-serialised with real UTF-8 but the original signature must be refused.
    utf8 = json.dumps(json.loads(fixture_bytes("webhook_inbound_text.json")), ensure_ascii=False).encode()
    resp = await sidecar.post(utf8, signature=SIGNATURES["webhook_inbound_text.json"])
    assert resp.status == 401


@pytest.mark.parametrize(
    ("signature", "reason"),
    [(None, "signature_missing"), ("sha256=" + "0" * 64, "signature_wrong"), ("md5=abc", "signature_wrong")],
)
async def test_bad_signature_is_401_and_nothing_stored(sidecar, signature, reason) -> None:
    resp = await sidecar.post("webhook_inbound_text.json", signature=signature)
    assert resp.status == 401
    assert await sidecar.rows("SELECT id FROM wa_webhook_inbox") == []
    assert sidecar.service.metrics.get("webhook_rejected", reason=reason) == 1


async def test_signed_with_another_secret_is_refused(sidecar) -> None:
    body = fixture_bytes("webhook_status_sent.json")
    resp = await sidecar.post(body, signature=sign(body, "another-secret"))
    assert resp.status == 401


async def test_invalid_json_is_400_after_the_signature_check(sidecar) -> None:
    body = b'{"object": "whatsapp_business_account", "entry": ['
    assert (await sidecar.post(body)).status == 400
    assert (await sidecar.post(b"[1, 2]")).status == 400
    assert (await sidecar.post(body, signature=None)).status == 401  # unsigned junk is never parsed
    assert sidecar.service.metrics.get("webhook_rejected", reason="invalid_json") == 2
    assert await sidecar.rows("SELECT id FROM wa_webhook_inbox") == []


async def test_body_over_3_mb_is_413(sidecar) -> None:
    body = b'{"pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    resp = await sidecar.post(body)
    assert resp.status == 413
    assert sidecar.service.metrics.get("webhook_rejected", reason="too_large") == 1


async def test_missing_app_secret_refuses_every_post_with_503(make_sidecar, caplog) -> None:
    sc = await make_sidecar(app_secret="")
    with caplog.at_level("ERROR", logger="controller.whatsapp.webhook"):
        resp = await sc.post("webhook_inbound_text.json")
    assert resp.status == 503
    assert "ACD_WA_APP_SECRET is not set" in caplog.text
    assert await sc.rows("SELECT id FROM wa_webhook_inbox") == []
    assert sc.service.metrics.get("webhook_rejected", reason="not_configured") == 1


async def test_stored_before_200_and_processed_after_a_crash(make_sidecar) -> None:
    """The 200 means stored: a sidecar that dies before processing loses nothing."""
    crashed = await make_sidecar(start=False)  # no ingest worker: as if it died right after the 200
    resp = await crashed.post("webhook_inbound_text.json")
    assert resp.status == 200
    [row] = await crashed.rows("SELECT processed_at FROM wa_webhook_inbox")
    assert row["processed_at"] is None
    assert await crashed.messages() == []

    restarted = await make_sidecar()
    await restarted.service.drain()
    [msg] = await restarted.messages()
    assert msg["body"].startswith("Olá")
    # Reprocessing the same stored body (e.g. a second crash before marking it) changes nothing.
    await restarted.rows("SELECT 1")  # same engine
    async with restarted.service.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE wa_webhook_inbox SET processed_at = NULL"))
    await restarted.service.drain()
    assert len(await restarted.messages()) == 1
    assert len(await restarted.rows("SELECT * FROM wa_changes WHERE kind = 'message'")) == 1


async def test_duplicate_deliveries_are_stored_once_and_change_nothing(sidecar) -> None:
    await sidecar.deliver("webhook_inbound_text.json", "webhook_inbound_text.json")
    assert len(await sidecar.rows("SELECT id FROM wa_webhook_inbox")) == 1
    assert len(await sidecar.messages()) == 1
    # Same content, different bytes (Meta retry with another batching): still one message.
    doc = json.loads(fixture_bytes("webhook_inbound_text.json"))
    doc["entry"].append(doc["entry"][0])
    await sidecar.deliver(json.dumps(doc).encode())
    assert len(await sidecar.messages()) == 1
    assert sidecar.service.metrics.get("webhook_duplicates", kind="message") >= 2
    assert len(await sidecar.rows("SELECT cursor FROM wa_changes")) == 2  # conversation + message, once


async def test_concurrent_posts_share_commits_and_all_land(sidecar) -> None:
    import asyncio

    bodies = []
    for i in range(50):
        doc = json.loads(fixture_bytes("webhook_inbound_text.json"))
        msg = doc["entry"][0]["changes"][0]["value"]["messages"][0]
        msg["id"] = f"wamid.concurrent.{i}"
        msg["timestamp"] = str(int(msg["timestamp"]) + i)
        bodies.append(json.dumps(doc).encode())
    responses = await asyncio.gather(*(sidecar.post(b) for b in bodies))
    assert [r.status for r in responses] == [200] * 50
    await sidecar.service.drain()
    assert len(await sidecar.messages()) == 50
