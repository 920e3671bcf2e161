"""Deliver the outbox to ``ACD_EVENTS_URL``: at least once, in order, signed, with backoff.

Events are written to ``acd_outbox`` in the same transaction as the history they describe (see
``controller.store.writer``), so an event exists exactly when its facts are stored. This task POSTs
them oldest first, one at a time; a 2xx marks an event delivered. Anything else (error status,
timeout, connection refused) keeps it, and the same event is retried after an exponential backoff
before any later one is sent, so receivers see events in order. A receiver may see an event twice
(e.g. its 2xx was lost): ``X-Acd-Delivery`` / the body's ``id`` is the idempotency key.

Signature: ``X-Acd-Signature: sha256=<hex HMAC-SHA256(secret, "<X-Acd-Timestamp>.<body>")>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.store.engine import reading, writing
from controller.store.history import OutboxRow

__all__ = ["WebhookDeliverer", "sign"]

log = logging.getLogger("controller.events")
_outbox = OutboxRow.__table__


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookDeliverer:
    def __init__(
        self,
        db: AsyncEngine,
        url: str,
        secret: str,
        *,
        batch: int = 100,
        timeout: float = 10.0,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        poll: float = 5.0,
    ) -> None:
        self.db = db
        self.url = url
        self.secret = secret
        self.batch = batch
        self.timeout = timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.poll = poll
        self.stats: dict[str, int] = {"delivered": 0, "failed_attempts": 0}
        self.pending: int | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def wake(self, _written: int = 0) -> None:
        self._wake.set()

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="events-webhook")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                wait = await self.deliver_due()
            except Exception as exc:  # database unavailable: try again later
                log.warning(
                    "events outbox unavailable: %s", type(exc).__name__, extra={"error": str(exc)[:200]}
                )
                wait = self.retry_initial * 5
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, self.poll)):
                    await self._wake.wait()

    async def deliver_due(self) -> float:
        """Send what is due, oldest first; returns how long to wait before looking again."""
        now = datetime.now(UTC)
        async with reading(self.db) as conn:
            rows = (
                await conn.execute(
                    select(_outbox)
                    .where(_outbox.c.delivered_at.is_(None))
                    .order_by(_outbox.c.id)
                    .limit(self.batch)
                )
            ).all()
            self.pending = (
                await conn.execute(
                    select(func.count()).select_from(_outbox).where(_outbox.c.delivered_at.is_(None))
                )
            ).scalar_one()
        for row in rows:
            due = row.next_attempt_at
            if due is not None:
                due = due.replace(tzinfo=UTC) if due.tzinfo is None else due
                if due > now:
                    return max(0.01, (due - now).total_seconds())  # in order: later ones wait too
            error = await self._post(row.id, row.kind, row.event_key, row.payload)
            async with writing(self.db) as conn:
                if error is None:
                    await conn.execute(
                        update(_outbox)
                        .where(_outbox.c.id == row.id)
                        .values(delivered_at=datetime.now(UTC), attempts=row.attempts + 1, last_error=None)
                    )
                else:
                    delay = min(self.retry_initial * 2 ** min(row.attempts, 30), self.retry_max)
                    await conn.execute(
                        update(_outbox)
                        .where(_outbox.c.id == row.id)
                        .values(
                            attempts=row.attempts + 1,
                            next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
                            last_error=error[:500],
                        )
                    )
            if error is None:
                self.stats["delivered"] += 1
                if self.pending:
                    self.pending -= 1
                continue
            self.stats["failed_attempts"] += 1
            log.warning(
                "event delivery failed; retrying",
                extra={
                    "event": row.kind,
                    "id": row.event_key,
                    "attempt": row.attempts + 1,
                    "error": error[:200],
                    "retry_in": delay,
                },
            )
            return delay
        return self.poll if len(rows) < self.batch else 0.0

    async def _post(self, _row_id: int, kind: str, key: str, payload: Any) -> str | None:
        """None when the receiver acknowledged (2xx), else why not."""
        assert self._session is not None
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Acd-Event": kind,
            "X-Acd-Delivery": key,
            "X-Acd-Timestamp": timestamp,
            "X-Acd-Signature": sign(self.secret, timestamp, body),
        }
        try:
            async with self._session.post(self.url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
