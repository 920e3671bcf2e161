"""Prometheus /metrics on the sidecar: admin only, counters with labels, scrape-time gauges."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.whatsapp.conftest import ADMIN, TOKENS


async def scrape(sidecar, token: str = ADMIN) -> dict[tuple[str, tuple], float]:
    resp = await sidecar.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_metrics_need_the_admin_token(sidecar) -> None:
    assert (await sidecar.client.get("/metrics")).status == 401
    status, data = await sidecar.api("GET", "/metrics", TOKENS["alice"])
    assert status == 403 and "admin" in data["error"]
    await scrape(sidecar)


async def test_rejected_webhook_moves_its_counter(sidecar) -> None:
    before = await scrape(sidecar)
    assert value(before, "acd_wa_webhook_requests_total") == 0  # declared before the first event
    assert value(before, "acd_wa_webhook_rejected_total", reason="signature_wrong") is None
    resp = await sidecar.post("webhook_status_sent.json", signature="sha256=" + "0" * 64)
    assert resp.status == 401
    resp = await sidecar.post("webhook_status_sent.json", signature=None)
    assert resp.status == 401
    after = await scrape(sidecar)
    assert value(after, "acd_wa_webhook_rejected_total", reason="signature_wrong") == 1
    assert value(after, "acd_wa_webhook_rejected_total", reason="signature_missing") == 1
    assert value(after, "acd_wa_webhook_requests_total") == 2
    assert value(after, "acd_wa_webhook_accepted_total") == 0
    await sidecar.deliver("webhook_inbound_text.json")
    done = await scrape(sidecar)
    assert value(done, "acd_wa_webhook_accepted_total") == 1
    assert value(done, "acd_wa_webhook_items_total", kind="messages") == 1


async def test_gauges_backlog_orphans_subscribers(make_sidecar) -> None:
    s = await make_sidecar(start=False)  # no ingest worker yet: stored bodies wait
    for name in ("webhook_inbound_text.json", "webhook_status_delivered.json"):
        assert (await s.post(name)).status == 200
    waiting = await scrape(s)
    assert value(waiting, "acd_wa_ingest_backlog") == 2
    assert value(waiting, "acd_wa_database_up") == 1
    assert value(waiting, "acd_wa_stream_subscribers") == 0
    await s.service.start()
    await s.service.drain()
    ws = await s.client.ws_connect(f"/api/stream?token={TOKENS['alice']}")
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    done = await scrape(s)
    assert value(done, "acd_wa_ingest_backlog") == 0
    # the delivered status is for a message this sidecar never sent: it waits as an orphan
    assert value(done, "acd_wa_orphan_statuses") == 1
    assert value(done, "acd_wa_statuses_orphaned_total") == 1
    assert value(done, "acd_wa_stream_subscribers") == 1
    assert value(done, "acd_wa_change_cursor") >= 2  # the new conversation and its message
    await ws.close()


async def test_each_service_has_its_own_registry(make_sidecar) -> None:
    a = await make_sidecar()
    b = await make_sidecar()
    await a.post("webhook_status_sent.json", signature=None)
    assert value(await scrape(a), "acd_wa_webhook_rejected_total", reason="signature_missing") == 1
    assert value(await scrape(b), "acd_wa_webhook_rejected_total", reason="signature_missing") is None


async def test_identical_reposts_in_one_group_are_counted_as_deliveries(sidecar) -> None:
    """Three POSTs of the same bytes committed together: one message stored, three deliveries."""
    import asyncio
    import json

    from tests.whatsapp.conftest import fixture_bytes

    body = fixture_bytes("webhook_inbound_text.json")
    doc = json.loads(body)
    inbox = sidecar.service.inbox
    groups: list[int] = []
    process = inbox.processor

    async def spy(rows: list, deliveries: list) -> None:
        groups.append(len(rows))
        await process(rows, deliveries)

    inbox.processor = spy
    # All three are queued before the group's flush task first runs: one group, one commit.
    await asyncio.gather(*(inbox.store(body, doc, process=True) for _ in range(3)))
    await sidecar.service.drain()
    assert groups == [1]
    assert len(await sidecar.messages()) == 1
    samples = await scrape(sidecar)
    assert value(samples, "acd_wa_webhook_items_total", kind="messages") == 3
    assert value(samples, "acd_wa_webhook_processed_total") == 3
    assert value(samples, "acd_wa_webhook_duplicates_total", kind="message") == 2
    # A fourth copy in a later group is counted the same way.
    await sidecar.deliver(body)
    samples = await scrape(sidecar)
    assert value(samples, "acd_wa_webhook_items_total", kind="messages") == 4
    assert value(samples, "acd_wa_webhook_duplicates_total", kind="message") == 3
