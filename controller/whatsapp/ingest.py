"""Stored webhook bodies -> conversations, messages, statuses, alerts and change frames.

Runs from the inbox table, never from the HTTP request: a crash after the 200 just leaves rows
unprocessed, and the next pass picks them up. Reprocessing is idempotent (wamid unique, status
history deduplicated, alerts deduplicated, the status rule itself idempotent). Up to ``batch``
stored bodies are applied in one transaction with set-based reads and writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.whatsapp.changes import ChangeLog, Unit, insert_ignore
from controller.whatsapp.metrics import Counters
from controller.whatsapp.models import OrphanStatus, WebhookInbox
from controller.whatsapp.parse import Parsed, load_json, parse_webhook

__all__ = ["Ingestor"]

log = logging.getLogger("controller.whatsapp.ingest")

IN = WebhookInbox.__table__
ORPH = OrphanStatus.__table__
MAX_BACKOFF = 3600.0


class Ingestor:
    def __init__(
        self,
        engine: AsyncEngine,
        changelog: ChangeLog,
        metrics: Counters,
        *,
        batch: int = 100,
        orphan_ttl: float = 72 * 3600,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.engine = engine
        self.changelog = changelog
        self.metrics = metrics
        self.batch = batch
        self.orphan_ttl = orphan_ttl
        self.clock = clock or changelog.clock

    def _due(self):  # noqa: ANN202 - SQL expression
        """Unprocessed and not waiting out a failure backoff (failed bodies are never dropped)."""
        return IN.c.processed_at.is_(None) & (IN.c.retry_at.is_(None) | (IN.c.retry_at <= self.clock()))

    async def pending(self) -> int:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(IN.c.id).where(self._due()).limit(1))
            return len(rows.all())

    async def process_pending(self) -> int:
        """Apply up to ``batch`` unprocessed bodies; returns how many were taken."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(IN.c.id, IN.c.body_sha256, IN.c.body)
                    .where(self._due())
                    .order_by(IN.c.id)
                    .limit(self.batch)
                )
            ).all()
        if not rows:
            return 0
        parsed = [(row.id, row.body_sha256, self._parse(row.id, row.body)) for row in rows]
        try:
            await self._apply(parsed)
        except Exception:
            if len(parsed) == 1:
                await self._failed(parsed[0][0])
            else:  # isolate the bad body; the good ones go through
                log.warning("batch failed; retrying bodies one by one", extra={"bodies": len(parsed)})
                for item in parsed:
                    try:
                        await self._apply([item])
                    except Exception:
                        await self._failed(item[0])
        return len(rows)

    async def store_and_apply(self, rows: list[dict], docs: list[tuple[str, object]]) -> None:
        """One transaction: insert the raw bodies (``rows``) and apply the parsed ``docs``.

        ``docs`` has one entry per delivery: an identical re-POST in the same group is applied
        once but counted as delivered (its messages as duplicates). The webhook's group commit
        calls this; on any exception nothing was written and the caller stores the bodies alone,
        for :meth:`process_pending` to retry one by one.
        """
        copies: dict[str, int] = {}
        unique: dict[str, object] = {}
        for sha, doc in docs:
            copies[sha] = copies.get(sha, 0) + 1
            unique.setdefault(sha, doc)
        parsed = [(None, sha, self._parse(None, b"", doc)) for sha, doc in unique.items()]
        async with self.changelog.unit() as u:
            await insert_ignore(u.conn, IN, rows, "body_sha256")
            await self._apply_in(u, parsed)
        self._count(parsed, copies)

    def _parse(self, inbox_id: int | None, body: bytes, doc: object = None) -> Parsed:
        if doc is None:
            try:
                doc = load_json(body)
            except (ValueError, RecursionError):  # checked before storing; only a corrupted row gets here
                doc = None
        parsed = parse_webhook(doc)
        for problem in parsed.problems:
            self.metrics.inc("webhook_problems")
            log.warning("webhook content skipped", extra={"inbox": inbox_id, "problem": problem[:300]})
        return parsed

    async def _failed(self, inbox_id: int) -> None:
        """Keep the body, retry it later with exponential backoff (capped at an hour)."""
        self.metrics.inc("webhook_process_failed")
        async with self.changelog.writer.transaction() as conn:
            attempts = (await conn.execute(select(IN.c.attempts).where(IN.c.id == inbox_id))).scalar_one() + 1
            delay = min(2.0**attempts, MAX_BACKOFF)
            await conn.execute(
                update(IN)
                .where(IN.c.id == inbox_id)
                .values(
                    attempts=attempts, retry_at=self.clock() + delay, last_error="processing failed, see log"
                )
            )
        log.exception(
            "could not process stored webhook; kept for retry",
            extra={"inbox": inbox_id, "attempts": attempts, "retry_in_s": delay},
        )

    async def _apply(self, items: list[tuple[int | None, str, Parsed]]) -> None:
        async with self.changelog.unit() as u:
            await self._apply_in(u, items)
        self._count(items)

    async def _apply_in(self, u: Unit, items: list[tuple[int | None, str, Parsed]]) -> None:
        await self._inbound(u, items)
        await self._statuses(u, items)
        for inbox_id, sha, parsed in items:
            for err in parsed.channel_errors:
                u.add_alert(
                    f"wh:{sha}:{err.position}",
                    err.error,
                    source="webhook",
                    phone_number_id=err.phone_number_id,
                )
            u.inbox_done(inbox_id)

    def _count(
        self, items: list[tuple[int | None, str, Parsed]], copies: dict[str, int] | None = None
    ) -> None:
        """Deliveries, not stored rows: a body POSTed ``k`` times counts ``k`` times."""
        counts = {"messages": 0, "statuses": 0, "errors": 0}
        bodies = 0
        repeated_messages = 0
        for _, sha, parsed in items:
            k = copies.get(sha, 1) if copies else 1
            bodies += k
            counts["messages"] += k * len(parsed.inbound)
            counts["statuses"] += k * len(parsed.statuses)
            counts["errors"] += k * len(parsed.channel_errors)
            repeated_messages += (k - 1) * len(parsed.inbound)
        for name, n in counts.items():
            if n:
                self.metrics.inc("webhook_items", n, kind=name)
        if repeated_messages:
            self.metrics.inc("webhook_duplicates", repeated_messages, kind="message")
        self.metrics.inc("webhook_processed", bodies)

    async def _inbound(self, u: Unit, items: list[tuple[int, str, Parsed]]) -> None:
        inbound = [m for _, _, parsed in items for m in parsed.inbound]
        if not inbound:
            return
        await u.load_messages(wamids=[m.wamid for m in inbound])
        await u.prefetch_conversations((m.phone_number_id, m.customer_key) for m in inbound if m.customer_key)
        for item in inbound:
            if u.message_by_wamid(item.wamid) is not None:
                self.metrics.inc("webhook_duplicates", kind="message")
                continue
            conv = await u.conversation_for(
                item.phone_number_id,
                item.customer_key or "",
                wa_id=item.wa_id,
                user_id=item.user_id,
                username=item.username,
                name=item.name,
            )
            ts = item.ts if item.ts is not None else u.now
            m = u.add_message(
                conv,
                direction="in",
                event_ts=ts,
                wamid=item.wamid,
                kind=item.kind,
                body=item.body,
                content=item.raw,
                status="received",
                status_ts=ts,
            )
            if item.error is not None:
                e = item.error
                m.update(
                    error_code=e.code,
                    error_title=e.title,
                    error_message=e.message,
                    error_details=e.details,
                    error_href=e.href,
                    error_ts=ts,
                    error_source="webhook",
                )
            if conv["last_inbound_at"] is None or ts > conv["last_inbound_at"]:
                conv["last_inbound_at"] = ts

    async def _statuses(self, u: Unit, items: list[tuple[int, str, Parsed]]) -> None:
        statuses = [s for _, _, parsed in items for s in parsed.statuses]
        if not statuses:
            return
        await u.load_messages(wamids=[s.wamid for s in statuses])
        callbacks = [s.callback for s in statuses if s.callback and u.message_by_wamid(s.wamid) is None]
        if callbacks:
            await u.load_messages(ids=callbacks)
        for st in statuses:
            m = u.message_by_wamid(st.wamid)
            if m is None and st.callback:
                candidate = u.messages.get(st.callback)
                if candidate is not None and candidate["direction"] == "out" and candidate["wamid"] is None:
                    u.set_wamid(candidate, st.wamid)  # the status beat the send response
                    m = candidate
                    self.metrics.inc("statuses_correlated_by_callback")
            if m is None:
                u.add_orphan(st.wamid, st.update, st.raw, st.callback)
                self.metrics.inc("statuses_orphaned")
                continue
            u.apply(m, st.update, st.raw)

    async def purge_orphans(self) -> int:
        """Orphans older than the TTL will never find their message (sent elsewhere): drop them."""
        cutoff = self.clock() - self.orphan_ttl
        async with self.changelog.writer.transaction() as conn:
            result = await conn.execute(delete(ORPH).where(ORPH.c.received_at < cutoff))
        n = result.rowcount or 0
        if n:
            self.metrics.inc("statuses_orphans_expired", n)
            log.info("expired orphan statuses", extra={"count": n})
        return n
