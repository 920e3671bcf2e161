"""The unit of work every writer goes through, and the change log it feeds.

A :class:`Unit` collects what one transaction does to conversations, messages, statuses and
alerts, then :meth:`Unit.flush` writes it set-based (executemany), takes one block of cursors
from ``wa_counters`` and appends one ``wa_changes`` row per visible change. :class:`ChangeLog`
runs units one at a time per process and publishes their frames to the live hub only after the
commit, in cursor order: a client that saw cursor N has seen every change before N.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from controller.whatsapp.chat import MessageState, MetaError, StatusUpdate, apply_status, window_open
from controller.whatsapp.errors import UNKNOWN_OUTCOME, RetryClass, explain, retry_class
from controller.whatsapp.models import (
    Change,
    ChannelAlert,
    Conversation,
    Counter,
    Message,
    OrphanStatus,
    StatusHistory,
    WebhookInbox,
)
from controller.whatsapp.writer import SidecarWriter

__all__ = [
    "ChangeLog",
    "Unit",
    "alert_view",
    "conversation_view",
    "insert_ignore",
    "message_view",
    "new_message_id",
]

log = logging.getLogger("controller.whatsapp.changes")

M = Message.__table__
CV = Conversation.__table__
H = StatusHistory.__table__
ORPH = OrphanStatus.__table__
A = ChannelAlert.__table__
CH = Change.__table__
CNT = Counter.__table__
IN = WebhookInbox.__table__

_MSG_VISIBLE = (
    "wamid",
    "status",
    "status_ts",
    "error_code",
    "error_title",
    "error_message",
    "error_details",
    "error_href",
    "error_fbtrace_id",
    "error_ts",
    "error_source",
)
_MSG_MUTABLE = (*_MSG_VISIBLE, "attempts", "in_flight")
_CONV_MUTABLE = (
    "wa_id",
    "user_id",
    "username",
    "display_name",
    "assigned_agent",
    "last_inbound_at",
    "next_seq",
)
_CHUNK = 500


def new_message_id() -> str:
    """Our id for a message; sent as ``biz_opaque_callback_data`` so early statuses find it."""
    return f"msg:{uuid.uuid4()}"


class Publisher(Protocol):
    def publish(self, frames: list[dict]) -> None: ...


async def insert_ignore(conn: AsyncConnection, table: Any, rows: list[dict], key: str) -> None:
    """INSERT ... ON CONFLICT (key) DO NOTHING, for both dialects."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=[key])
    for i in range(0, len(rows), _CHUNK):
        await conn.execute(stmt, rows[i : i + _CHUNK])


def _chunks(items: list, size: int = _CHUNK) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- views


def _error_view(m: dict) -> dict | None:
    if m["error_code"] is None and m["error_title"] is None and m["error_message"] is None:
        return None
    return {
        "code": m["error_code"],
        "title": m["error_title"],
        "message": m["error_message"],
        "details": m["error_details"],
        "href": m["error_href"],
        "fbtrace_id": m["error_fbtrace_id"],
        "source": m["error_source"],
        "ts": m["error_ts"],
        "explanation": explain(m["error_code"], m["error_title"], m["error_message"], m["error_details"]),
    }


def message_view(m: dict) -> dict:
    """A message as the API and the stream show it (the agent panel renders this)."""
    shows_error = m["status"] == "failed" or (m["direction"] == "in" and m["error_code"] is not None)
    notice = None
    if m["status"] == "unknown":
        notice = {lang: text.as_dict() for lang, text in UNKNOWN_OUTCOME.items()}
    return {
        "id": m["id"],
        "conversation_id": m["conversation_id"],
        "direction": m["direction"],
        "sort_key": [m["event_ts"], m["seq"]],
        "event_ts": m["event_ts"],
        "seq": m["seq"],
        "wamid": m["wamid"],
        "accepted": m["wamid"] is not None,
        "kind": m["kind"],
        "body": m["body"],
        "content": m["content"],
        "agent_id": m["agent_id"],
        "status": m["status"],
        "status_ts": m["status_ts"],
        "error": _error_view(m) if shows_error else None,
        "notice": notice,
        "cursor": m["last_cursor"],
    }


def conversation_view(c: dict, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    last = c["last_inbound_at"]
    return {
        "id": c["id"],
        "phone_number_id": c["phone_number_id"],
        "wa_id": c["wa_id"],
        "user_id": c["user_id"],
        "username": c["username"],
        "name": c["display_name"],
        "assigned_agent": c["assigned_agent"],
        "last_inbound_at": last,
        "window_open": window_open(last, now),
        "window_closes_at": last + 24 * 3600 if last is not None else None,
        "cursor": c["last_cursor"],
    }


def alert_view(a: dict) -> dict:
    return {
        "id": a.get("id"),
        "phone_number_id": a["phone_number_id"],
        "code": a["code"],
        "retry_class": a["retry_class"],
        "source": a["source"],
        "title": a["title"],
        "message": a["message"],
        "details": a["details"],
        "href": a["href"],
        "fbtrace_id": a["fbtrace_id"],
        "created_at": a["created_at"],
        "explanation": explain(a["code"], a["title"], a["message"], a["details"]),
    }


def state_of(m: dict) -> MessageState:
    error = None
    if m["status"] == "failed":
        error = MetaError(
            m["error_code"],
            m["error_title"],
            m["error_message"],
            m["error_details"],
            m["error_href"],
            m["error_fbtrace_id"],
        )
    return MessageState(m["status"], m["status_ts"], error, m["error_ts"], m["error_source"])


def _write_state(m: dict, state: MessageState) -> None:
    m["status"] = state.status
    m["status_ts"] = state.status_ts
    e = state.error
    m["error_code"] = e.code if e else None
    m["error_title"] = e.title if e else None
    m["error_message"] = e.message if e else None
    m["error_details"] = e.details if e else None
    m["error_href"] = e.href if e else None
    m["error_fbtrace_id"] = e.fbtrace_id if e else None
    m["error_ts"] = state.error_ts if e else None
    m["error_source"] = state.error_source if e else None


# --------------------------------------------------------------------------- unit of work


class Unit:
    """Everything one write transaction does; frames come out of :meth:`flush`."""

    def __init__(self, conn: AsyncConnection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.messages: dict[str, dict] = {}
        self._by_wamid: dict[str, str] = {}
        self._orig: dict[str, tuple] = {}
        self._new_messages: list[str] = []
        self.conversations: dict[int, dict] = {}
        self._conv_by_key: dict[tuple[str, str], int] = {}
        self._conv_orig: dict[int, tuple] = {}
        self._conv_frames: dict[int, str | None] = {}  # conversation id -> previous agent
        self._history: dict[str, dict] = {}
        self._orphans: dict[str, dict] = {}
        self._orphan_wamids: set[str] = set()
        self._alerts: dict[str, dict] = {}
        self._inbox_done: list[int] = []
        self._inbox_done_sha: list[str] = []
        self._inbox_failed: list[tuple[int, str]] = []
        self.frames: list[dict] = []

    # ----------------------------------------------------------------- conversations

    def _track_conv(self, row: dict) -> dict:
        self.conversations[row["id"]] = row
        self._conv_by_key[(row["phone_number_id"], row["customer_key"])] = row["id"]
        self._conv_orig.setdefault(row["id"], tuple(row[k] for k in _CONV_MUTABLE))
        return row

    async def conversation(self, conversation_id: int) -> dict | None:
        if conversation_id in self.conversations:
            return self.conversations[conversation_id]
        row = (await self.conn.execute(select(CV).where(CV.c.id == conversation_id))).mappings().first()
        return self._track_conv(dict(row)) if row else None

    async def load_conversations(self, ids: Iterable[int]) -> None:
        """Bring conversations into the unit by id, one query per chunk (frames need their agent)."""
        want = [i for i in set(ids) if i not in self.conversations]
        for chunk in _chunks(want):
            rows = await self.conn.execute(select(CV).where(CV.c.id.in_(chunk)))
            for row in rows.mappings():
                self._track_conv(dict(row))

    async def prefetch_conversations(self, keys: Iterable[tuple[str, str]]) -> None:
        by_pnid: dict[str, list[str]] = {}
        for pnid, key in set(keys) - set(self._conv_by_key):
            by_pnid.setdefault(pnid, []).append(key)
        for pnid, customer_keys in by_pnid.items():
            for chunk in _chunks(customer_keys):
                rows = await self.conn.execute(
                    select(CV).where(CV.c.phone_number_id == pnid, CV.c.customer_key.in_(chunk))
                )
                for row in rows.mappings():
                    self._track_conv(dict(row))

    async def conversation_for(
        self,
        phone_number_id: str,
        customer_key: str,
        *,
        wa_id: str | None = None,
        user_id: str | None = None,
        username: str | None = None,
        name: str | None = None,
    ) -> dict:
        """Find or create the conversation of one customer on one business number."""
        await self.prefetch_conversations([(phone_number_id, customer_key)])
        cid = self._conv_by_key.get((phone_number_id, customer_key))
        if cid is None:
            values = {
                "phone_number_id": phone_number_id,
                "customer_key": customer_key,
                "wa_id": wa_id,
                "user_id": user_id,
                "username": username,
                "display_name": name,
                "assigned_agent": None,
                "last_inbound_at": None,
                "next_seq": 0,
                "last_cursor": 0,
                "created_at": self.now,
            }
            new_id = (await self.conn.execute(insert(CV).values(**values).returning(CV.c.id))).scalar_one()
            row = self._track_conv({"id": new_id, **values})
            self._conv_frames.setdefault(new_id, None)
            return row
        row = self.conversations[cid]
        for column, value in (
            ("wa_id", wa_id),
            ("user_id", user_id),
            ("username", username),
            ("display_name", name),
        ):
            if value and row[column] != value:
                row[column] = value
        return row

    def assign(self, conv: dict, agent: str | None) -> bool:
        if conv["assigned_agent"] == agent:
            return False
        self._conv_frames.setdefault(conv["id"], conv["assigned_agent"])
        conv["assigned_agent"] = agent
        return True

    # ----------------------------------------------------------------- messages

    def _track_msg(self, row: dict) -> dict:
        self.messages[row["id"]] = row
        if row["wamid"]:
            self._by_wamid[row["wamid"]] = row["id"]
        self._orig.setdefault(row["id"], tuple(row[k] for k in _MSG_MUTABLE))
        return row

    async def load_messages(self, *, ids: Iterable[str] = (), wamids: Iterable[str] = ()) -> None:
        want_ids = [i for i in set(ids) if i not in self.messages]
        want_wamids = [w for w in set(wamids) if w not in self._by_wamid]
        for column, values in ((M.c.id, want_ids), (M.c.wamid, want_wamids)):
            for chunk in _chunks(values):
                rows = await self.conn.execute(select(M).where(column.in_(chunk)))
                for row in rows.mappings():
                    if row["id"] not in self.messages:
                        self._track_msg(dict(row))

    def message_by_wamid(self, wamid: str) -> dict | None:
        mid = self._by_wamid.get(wamid)
        return self.messages.get(mid) if mid else None

    def add_message(self, conv: dict, **fields: Any) -> dict:
        """A new message at the end of the conversation's arrival sequence."""
        seq = conv["next_seq"]
        conv["next_seq"] = seq + 1
        row = {
            "id": fields.pop("id", None) or new_message_id(),
            "conversation_id": conv["id"],
            "seq": seq,
            "wamid": None,
            "body": None,
            "content": None,
            "agent_id": None,
            "status": "pending",
            "status_ts": None,
            "error_code": None,
            "error_title": None,
            "error_message": None,
            "error_details": None,
            "error_href": None,
            "error_fbtrace_id": None,
            "error_ts": None,
            "error_source": None,
            "attempts": 0,
            "in_flight": False,
            "last_cursor": 0,
            "created_at": self.now,
            "updated_at": self.now,
        }
        row.update(fields)
        self._new_messages.append(row["id"])
        return self._track_msg(row)

    def set_wamid(self, m: dict, wamid: str) -> None:
        if m["wamid"] == wamid:
            return
        if m["wamid"] is not None:
            log.warning(
                "message already has another wamid; keeping the first",
                extra={"message_id": m["id"], "wamid": m["wamid"], "other_wamid": wamid},
            )
            return
        m["wamid"] = wamid
        self._by_wamid[wamid] = m["id"]
        self._orphan_wamids.add(wamid)

    def apply(self, m: dict, update: StatusUpdate, raw: dict | None = None) -> None:
        """Record one status report (history, deduplicated) and move the shown state by the rules."""
        key = update.dedupe_key(m["id"])
        if key not in self._history:
            e = update.error
            self._history[key] = {
                "message_id": m["id"],
                "dedupe_key": key,
                "status": update.status,
                "ts": update.ts,
                "source": update.source,
                "error_code": e.code if e else None,
                "error_title": e.title if e else None,
                "error_message": e.message if e else None,
                "error_details": e.details if e else None,
                "error_href": e.href if e else None,
                "error_fbtrace_id": e.fbtrace_id if e else None,
                "raw": raw,
                "recorded_at": self.now,
            }
        before = state_of(m)
        after = apply_status(before, update)
        if after != before:
            _write_state(m, after)
        failure = update.error if update.status == "failed" else None
        if failure is not None and retry_class(failure.code) is RetryClass.CHANNEL:
            self.add_alert(f"msg:{key}", failure, source=update.source, phone_number_id=None)

    def add_orphan(self, wamid: str, update: StatusUpdate, raw: dict, callback: str | None) -> None:
        key = update.dedupe_key(wamid)
        self._orphans[key] = {
            "wamid": wamid,
            "dedupe_key": key,
            "raw": {"status": raw, "callback": callback},
            "received_at": self.now,
        }

    def add_alert(
        self, dedupe_key: str, error: MetaError, *, source: str, phone_number_id: str | None
    ) -> None:
        self._alerts.setdefault(
            dedupe_key,
            {
                "dedupe_key": dedupe_key[:200],
                "phone_number_id": phone_number_id,
                "code": error.code,
                "retry_class": retry_class(error.code).value,
                "source": source,
                "title": error.title,
                "message": error.message,
                "details": error.details,
                "href": error.href,
                "fbtrace_id": error.fbtrace_id,
                "created_at": self.now,
            },
        )

    def inbox_done(self, inbox_id: int | None, sha: str | None = None) -> None:
        if inbox_id is not None:
            self._inbox_done.append(inbox_id)
        elif sha is not None:
            self._inbox_done_sha.append(sha)

    async def apply_orphans(self) -> int:
        """Statuses that beat the send response: apply them now that their wamid is known."""
        wamids = list(self._orphan_wamids)
        self._orphan_wamids.clear()
        applied = 0
        for chunk in _chunks(wamids):
            rows = (await self.conn.execute(select(ORPH).where(ORPH.c.wamid.in_(chunk)))).mappings().all()
            for row in rows:
                m = self.message_by_wamid(row["wamid"])
                if m is None:
                    continue
                raw = row["raw"].get("status") if isinstance(row["raw"], dict) else None
                update = _update_from_raw(raw)
                if update is not None:
                    self.apply(m, update, raw)
                    applied += 1
            if rows:
                await self.conn.execute(delete(ORPH).where(ORPH.c.id.in_([r["id"] for r in rows])))
        # orphans queued in this same unit for a wamid that just got known
        for key, orphan in list(self._orphans.items()):
            m = self.message_by_wamid(orphan["wamid"])
            if m is not None:
                update = _update_from_raw(orphan["raw"]["status"])
                if update is not None:
                    self.apply(m, update, orphan["raw"]["status"])
                    applied += 1
                del self._orphans[key]
        return applied

    # ----------------------------------------------------------------- flush

    async def flush(self) -> list[dict]:
        conn = self.conn
        if self._orphan_wamids or any(o["wamid"] in self._by_wamid for o in self._orphans.values()):
            await self.apply_orphans()
        new_ids = set(self._new_messages)
        changed: list[dict] = []  # new or visibly changed: a frame each
        quiet: list[dict] = []  # bookkeeping only (attempts, in_flight): written, not pushed
        nvis = len(_MSG_VISIBLE)
        for mid, m in self.messages.items():
            now_values = tuple(m[k] for k in _MSG_MUTABLE)
            if mid in new_ids or now_values[:nvis] != self._orig[mid][:nvis]:
                changed.append(m)
            elif now_values != self._orig[mid]:
                quiet.append(m)
        conv_changed = [
            c
            for cid, c in self.conversations.items()
            if tuple(c[k] for k in _CONV_MUTABLE) != self._conv_orig[cid]
        ]
        alerts = list(self._alerts.values())
        if alerts:
            existing: set[str] = set()
            for chunk in _chunks([a["dedupe_key"] for a in alerts]):
                rows = await conn.execute(select(A.c.dedupe_key).where(A.c.dedupe_key.in_(chunk)))
                existing.update(rows.scalars())
            alerts = [a for a in alerts if a["dedupe_key"] not in existing]

        n = len(changed) + len(self._conv_frames) + len(alerts)
        cursor = 0
        if n:
            top = (
                await conn.execute(
                    update(CNT)
                    .where(CNT.c.name == "cursor")
                    .values(value=CNT.c.value + n)
                    .returning(CNT.c.value)
                )
            ).scalar_one()
            cursor = top - n
        await self.load_conversations(m["conversation_id"] for m in changed)
        frames: list[dict] = []
        for m in changed:
            cursor += 1
            m["last_cursor"] = cursor
            m["updated_at"] = self.now
            conv = self.conversations.get(m["conversation_id"])
            if conv is None:
                conv = await self.conversation(m["conversation_id"])
            event = "new" if m["id"] in new_ids else ("failed" if m["status"] == "failed" else "status")
            frames.append(
                {
                    "type": "message",
                    "event": event,
                    "cursor": cursor,
                    "conversation_id": m["conversation_id"],
                    "assigned_agent": conv["assigned_agent"] if conv else None,
                    "sort_key": [m["event_ts"], m["seq"]],
                    "message": message_view(m),
                }
            )
        for cid, previous in self._conv_frames.items():
            cursor += 1
            conv = self.conversations[cid]
            conv["last_cursor"] = cursor
            if conv not in conv_changed:
                conv_changed.append(conv)
            frames.append(
                {
                    "type": "conversation",
                    "cursor": cursor,
                    "conversation_id": cid,
                    "assigned_agent": conv["assigned_agent"],
                    "previous_agent": previous,
                    "conversation": conversation_view(conv, self.now),
                }
            )
        for a in alerts:
            cursor += 1
            frames.append(
                {
                    "type": "alert",
                    "cursor": cursor,
                    "conversation_id": None,
                    "assigned_agent": None,
                    "alert": alert_view(a),
                }
            )

        if conv_changed:
            await conn.execute(
                update(CV)
                .where(CV.c.id == bindparam("b_id"))
                .values({k: bindparam(f"b_{k}") for k in (*_CONV_MUTABLE, "last_cursor")}),
                [
                    {"b_id": c["id"], **{f"b_{k}": c[k] for k in (*_CONV_MUTABLE, "last_cursor")}}
                    for c in conv_changed
                ],
            )
        new_rows = [m for m in changed if m["id"] in new_ids]
        old_rows = [m for m in changed if m["id"] not in new_ids] + quiet
        for chunk in _chunks(new_rows):
            await conn.execute(insert(M), chunk)
        if old_rows:
            cols = (*_MSG_MUTABLE, "last_cursor", "updated_at")
            await conn.execute(
                update(M).where(M.c.id == bindparam("b_id")).values({k: bindparam(f"b_{k}") for k in cols}),
                [{"b_id": m["id"], **{f"b_{k}": m[k] for k in cols}} for m in old_rows],
            )
        await insert_ignore(conn, H, list(self._history.values()), "dedupe_key")
        await insert_ignore(conn, ORPH, list(self._orphans.values()), "dedupe_key")
        for chunk in _chunks(alerts):
            await conn.execute(insert(A), chunk)
        for chunk in _chunks(frames):
            await conn.execute(
                insert(CH),
                [
                    {
                        "cursor": f["cursor"],
                        "conversation_id": f["conversation_id"],
                        "kind": f["type"],
                        "payload": f,
                        "created_at": self.now,
                    }
                    for f in chunk
                ],
            )
        for chunk in _chunks(self._inbox_done):
            await conn.execute(update(IN).where(IN.c.id.in_(chunk)).values(processed_at=self.now))
        for chunk in _chunks(self._inbox_done_sha):
            await conn.execute(update(IN).where(IN.c.body_sha256.in_(chunk)).values(processed_at=self.now))
        self.frames = frames
        return frames


def _update_from_raw(raw: Any) -> StatusUpdate | None:
    if not isinstance(raw, dict) or not raw.get("status"):
        return None
    errors = raw.get("errors")
    error = MetaError.from_meta(errors[0]) if isinstance(errors, list) and errors else None
    try:
        ts = float(raw.get("timestamp") or 0)
    except (TypeError, ValueError):
        ts = 0.0
    return StatusUpdate(str(raw["status"]).lower(), ts, error, "webhook")


# --------------------------------------------------------------------------- change log


class ChangeLog:
    """Runs units of work one at a time and publishes their frames after commit."""

    def __init__(
        self,
        engine: AsyncEngine,
        hub: Publisher,
        clock: Callable[[], float] = time.time,
        writer: SidecarWriter | None = None,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.clock = clock
        self.writer = writer or SidecarWriter(engine)
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Unit]:
        async with self._lock:
            async with self.writer.transaction() as conn:
                work = Unit(conn, self.clock())
                yield work
                frames = await work.flush()
            if frames:
                self.hub.publish(frames)

    async def head(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(CNT.c.value).where(CNT.c.name == "cursor"))).scalar_one()
