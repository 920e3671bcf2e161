"""Outgoing events: written with the history, signed, retried until the receiver acknowledges."""

from __future__ import annotations

import hashlib
import hmac
import json
import math

import pytest
from aiohttp import web
from sqlalchemy import select

from controller.acd.events import AgentPause
from controller.acd.setup import Strategy
from controller.sim import Answer, Decline
from controller.store.history import OutboxRow
from tests.dbkit import BACKENDS, migrated_db
from tests.stack import SPEED, make_stack
from tests.telephony.conftest import make_setup
from tests.timing import late

SECRET = "whsec-test"


class Receiver:
    """Answers 503 to the first ``fail`` deliveries, then 200."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.received: list[tuple[dict, dict, bytes]] = []
        self.acked: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), json.loads(body), body))
        if len(self.received) <= self.fail:
            return web.Response(status=503)
        self.acked.append(json.loads(body))
        return web.Response(status=204)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_events_are_signed_ordered_and_retried_until_acknowledged(backend, tmp_path, unused_tcp_port):
    receiver = Receiver(fail=2)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    # the first call connects after 1 s of phone delays; it must not overflow however late the
    # machine runs (max_wait covers the jitter), the second call overflows at max_wait
    max_wait = math.ceil(1 + late(SPEED))
    setup = make_setup(
        {"alice": "agent1", "bob": "agent2"}, strategy=Strategy.LINEAR, max_wait=max_wait, wrapup=0
    )
    phones = {"agent1": Decline(after=0.5), "agent2": Answer(after=0.5)}
    try:
        async with migrated_db(backend, tmp_path) as (db, _url, _schema):
            stack = await make_stack(
                db,
                setup,
                phones,
                http=False,
                events_url=f"http://127.0.0.1:{unused_tcp_port}/hook",
                events_secret=SECRET,
                webhook_options={"retry_initial": 0.05, "retry_max": 0.2, "poll": 0.1},
            )
            try:
                first = stack.call(caller_number="5550200", caller_name="Ana", talk_time=2)
                await first.wait_for(lambda c: c.outcome not in ("ringing", "answered"), 200)
                stack.controller.shell.feed(AgentPause("alice", "x"))
                stack.controller.shell.feed(AgentPause("bob", "x"))
                stack.call(caller_number="5550201")  # nobody free: overflows after max_wait
                await stack.until(lambda: not stack.controller.engine.calls, timeout=20)
                await stack.writer.flushed()
                async with db.connect() as conn:
                    total = len((await conn.execute(select(OutboxRow.id))).all())
                await stack.until(lambda: len(receiver.acked) == total, timeout=20)
                await stack.until(lambda: stack.services.webhook.stats["delivered"] == total, timeout=20)
                async with db.connect() as conn:
                    rows = (await conn.execute(select(OutboxRow.__table__).order_by(OutboxRow.id))).all()
            finally:
                await stack.close()
    finally:
        await runner.cleanup()

    assert all(r.delivered_at is not None for r in rows)
    assert rows[0].attempts == 3 and rows[0].last_error is None  # 503, 503, then acknowledged
    # the first event was sent three times (at least once), then each of the others once, in order
    ids = [body["id"] for _, body, _ in receiver.received]
    assert ids[:3] == [rows[0].event_key] * 3 and ids[2:] == [r.event_key for r in rows]
    for headers, body, raw in receiver.received:
        expected = hmac.new(SECRET.encode(), headers["X-Acd-Timestamp"].encode() + b"." + raw, hashlib.sha256)
        assert headers["X-Acd-Signature"] == "sha256=" + expected.hexdigest()
        assert headers["X-Acd-Event"] == body["type"] and headers["X-Acd-Delivery"] == body["id"]
    kinds = [b["type"] for b in receiver.acked]
    for kind in (
        "call.queued",
        "offer.created",
        "offer.rejected",
        "offer.accepted",
        "call.connected",
        "call.ended",
        "call.overflowed",
        "agent.state",
    ):
        assert kind in kinds, kind
    ended = next(b["data"] for b in receiver.acked if b["type"] == "call.ended")
    assert (ended["caller_number"], ended["agent"], ended["outcome"]) == ("5550200", "bob", "completed")
    assert ended["arrived_at"].endswith("Z") and ended["wait"] > 0
    created = next(b["data"] for b in receiver.acked if b["type"] == "offer.created")
    assert (created["agent"], created["call"], created["caller_name"]) == ("alice", ended["call"], "Ana")
    overflow = next(b["data"] for b in receiver.acked if b["type"] == "call.overflowed")
    assert overflow["detail"] == "max_wait"
