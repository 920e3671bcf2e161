"""``/webhooks/whatsapp``: Meta's verification GET and the signed POSTs.

POST order matters: size (413) -> signature over the raw bytes, constant time (401) -> JSON
(400) -> stored durably (group commit; while the service runs, processed in that same
transaction) -> 200. Without an app secret every POST gets 503: unsigned data is never
accepted. Any failure to store answers 500 so Meta retries (for up to 7 days); a 200 is only
sent for a committed body, and a body whose processing failed is still stored and retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.whatsapp.appkey import SERVICE
from controller.whatsapp.changes import insert_ignore
from controller.whatsapp.metrics import Counters
from controller.whatsapp.models import WebhookInbox
from controller.whatsapp.parse import load_json
from controller.whatsapp.writer import SidecarWriter

__all__ = ["MAX_BODY", "InboxWriter", "receive", "signature_ok", "verify"]

log = logging.getLogger("controller.whatsapp.webhook")

MAX_BODY = 3 * 1024 * 1024  # Meta: payloads up to 3 MB
IN = WebhookInbox.__table__
_GROUP = 500
_LINGER = 0.001  # seconds a small group waits for more bodies before its transaction
_LINGER_BELOW = 8


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256: sha256=<hex>`` = HMAC-SHA256(app secret, raw body)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[7:].strip().lower())


Processor = Callable[[list[dict], list[tuple[str, object]]], Awaitable[None]]


class InboxWriter:
    """Durable, group-committed storage of raw bodies: concurrent POSTs share one commit.

    With a ``processor`` (the running service's ingestor), each group is stored *and* processed
    in that one transaction: the raw rows go in already marked processed, next to the messages,
    statuses and change-log rows they produce, and the POSTs are answered after the commit. If
    processing fails, the transaction is rolled back and the group is stored alone (unprocessed,
    for the ingest worker to retry body by body); only if that fails too do the POSTs get 500.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], float] = time.time,
        processor: Processor | None = None,
        on_stored_unprocessed: Callable[[], None] | None = None,
        writer: SidecarWriter | None = None,
    ) -> None:
        self.engine = engine
        self.writer = writer or SidecarWriter(engine)
        self.clock = clock
        self.processor = processor
        self.on_stored_unprocessed = on_stored_unprocessed
        self._pending: list[tuple[dict, object, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def store(self, body: bytes, doc: object = None, *, process: bool = False) -> str:
        """Store ``body`` durably (and, with ``process`` and its parsed ``doc``, process it)."""
        sha = hashlib.sha256(body).hexdigest()
        row = {
            "body_sha256": sha,
            "body": body,
            "received_at": self.clock(),
            "processed_at": None,
            "attempts": 0,
        }
        future = asyncio.get_running_loop().create_future()
        self._pending.append((row, doc if process else None, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        await asyncio.shield(future)  # a client hanging up must not cancel a shared commit
        return sha

    async def _flush(self) -> None:
        while self._pending:
            if len(self._pending) < _LINGER_BELOW:
                # A moment for the POSTs already on their way to join this group: under load
                # this turns alternating groups of 1-2 and 30 into groups of 30 (fewer commits,
                # less CPU per body); alone, a POST waits this long once.
                await asyncio.sleep(_LINGER)
            batch, self._pending = self._pending[:_GROUP], self._pending[_GROUP:]
            rows: dict[str, dict] = {}
            docs: dict[str, object] = {}
            deliveries: list[tuple[str, object]] = []  # every POST, identical re-POSTs included
            for row, doc, _ in batch:
                rows.setdefault(row["body_sha256"], row)
                if doc is not None:
                    docs.setdefault(row["body_sha256"], doc)
                    deliveries.append((row["body_sha256"], doc))
            error: Exception | None = None
            done = False
            if docs and self.processor is not None:
                now = self.clock()
                marked = [{**r, "processed_at": now} if sha in docs else r for sha, r in rows.items()]
                try:
                    await self.processor(marked, deliveries)
                    done = True
                except Exception:
                    log.warning(
                        "processing a webhook group failed; storing it for the ingest worker",
                        extra={"bodies": len(rows)},
                        exc_info=True,
                    )
            if not done:
                try:
                    async with self.writer.transaction() as conn:
                        await insert_ignore(conn, IN, list(rows.values()), "body_sha256")
                except Exception as exc:
                    error = exc
            for _, _, future in batch:
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(None)
            if error is None and (not done or len(docs) < len(rows)) and self.on_stored_unprocessed:
                self.on_stored_unprocessed()


async def verify(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    token = service.config.verify_token
    if not token:
        service.metrics.inc("webhook_rejected", reason="not_configured")
        log.error("webhook verification refused: ACD_WA_VERIFY_TOKEN is not set")
        return web.Response(status=503, text="webhook not configured")
    mode = request.query.get("hub.mode")
    given = request.query.get("hub.verify_token", "")
    challenge = request.query.get("hub.challenge", "")
    if mode == "subscribe" and hmac.compare_digest(given.encode(), token.encode()):
        log.info("webhook verified by Meta")
        return web.Response(text=challenge)
    service.metrics.inc("webhook_rejected", reason="verify_token")
    log.warning("webhook verification failed", extra={"mode": mode})
    return web.Response(status=403, text="verification failed")


def _reject(status: int, reason: str, text: str, metrics: Counters, **extra: object) -> web.Response:
    metrics.inc("webhook_rejected", reason=reason)
    log.warning("webhook rejected", extra={"reason": reason, "status": status, **extra})
    return web.Response(status=status, text=text)


async def receive(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    metrics: Counters = service.metrics
    metrics.inc("webhook_requests")
    secret = service.config.app_secret
    if not secret:
        metrics.inc("webhook_rejected", reason="not_configured")
        log.error("webhook POST refused with 503: ACD_WA_APP_SECRET is not set, so nothing can be verified")
        return web.Response(status=503, text="webhook not configured")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _reject(413, "too_large", "body over 3 MB", metrics, bytes=request.content_length)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _reject(413, "too_large", "body over 3 MB", metrics)
    if len(body) > MAX_BODY:
        return _reject(413, "too_large", "body over 3 MB", metrics, bytes=len(body))
    header = request.headers.get("X-Hub-Signature-256")
    if not signature_ok(secret, body, header):
        reason = "signature_missing" if not header else "signature_wrong"
        return _reject(401, reason, "bad signature", metrics, peer=request.remote)
    try:
        doc = load_json(body)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, or nested past Python's stack
        return _reject(400, "invalid_json", "invalid JSON", metrics, bytes=len(body))
    if not isinstance(doc, dict):
        return _reject(400, "invalid_json", "JSON body must be an object", metrics)
    try:
        await service.inbox.store(body, doc, process=service.running)
    except Exception:
        metrics.inc("webhook_store_failed")
        log.exception("could not store webhook body; answering 500 so Meta retries")
        return web.Response(status=500, text="not stored, retry")
    metrics.inc("webhook_accepted")
    return web.Response(text="OK")
