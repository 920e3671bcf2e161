"""Live push to agents (WebSocket and SSE) and the optional outgoing webhook.

Resume protocol: every frame carries ``cursor`` (gap-free, in commit order). A client that
connects with ``?after=<cursor>`` first gets every visible change after it (from ``wa_changes``),
then live frames, with nothing missing and nothing twice. Without ``after`` the first frame is
``{"type": "hello", "cursor": head}``: load the history after it and drop stream frames whose
cursor is <= the message's ``cursor`` in that history.

The outgoing webhook forwards the same change log ("outbox") to an external chat system, at
least once, HMAC-SHA256 signed (``X-ACD-Signature-256: sha256=<hex>``), remembering its
position in ``wa_counters.relay_cursor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable

import httpx
from aiohttp import WSMsgType, web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.whatsapp.appkey import SERVICE
from controller.whatsapp.auth import AuthError, Principal, SidecarAuth, label
from controller.whatsapp.cors import stream_origin_ok
from controller.whatsapp.jsonout import dumps
from controller.whatsapp.metrics import Counters
from controller.whatsapp.models import Change, Counter
from controller.whatsapp.writer import SidecarWriter

__all__ = ["Forwarder", "Hub", "Subscriber", "sse_handler", "visible", "ws_handler"]

log = logging.getLogger("controller.whatsapp.relay")

CH = Change.__table__
CNT = Counter.__table__

_QUEUE_LIMIT = 20_000
_REPLAY_PAGE = 1000


def visible(auth: SidecarAuth, principal: Principal, frame: dict) -> bool:
    """Who gets a frame: alerts go to everyone; chat frames follow the conversation's visibility."""
    if principal.is_admin or frame["type"] == "alert":
        return True
    if auth.can_see(principal, frame.get("assigned_agent")):
        return True
    # An agent losing a conversation (re-assigned) must hear about it to drop it.
    return frame["type"] == "conversation" and auth.can_see(principal, frame.get("previous_agent"))


class Subscriber:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.queue: asyncio.Queue[dict | None] = asyncio.Queue()
        self.overflowed = False

    def put(self, frame: dict) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= _QUEUE_LIMIT:
            # A stuck client: cut it off; it resumes from its last cursor, nothing is lost.
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(frame)


class Hub:
    """In-process fan-out of committed frames to connected agents."""

    def __init__(self, auth: SidecarAuth, metrics: Counters | None = None) -> None:
        self.auth = auth
        self.metrics = metrics or Counters()
        self.subscribers: set[Subscriber] = set()
        self.published = asyncio.Event()
        self.listeners: list[Callable[[list[dict]], None]] = []

    def subscribe(self, principal: Principal) -> Subscriber:
        sub = Subscriber(principal)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, frames: list[dict]) -> None:
        for sub in self.subscribers:
            for frame in frames:
                if visible(self.auth, sub.principal, frame):
                    sub.put(frame)
        self.metrics.inc("relay_frames_published", len(frames))
        for listener in self.listeners:
            listener(frames)
        self.published.set()

    def close_all(self) -> None:
        for sub in self.subscribers:
            sub.queue.put_nowait(None)


async def replay(
    engine: AsyncEngine, auth: SidecarAuth, principal: Principal, after: int
) -> AsyncIterator[dict]:
    """Visible changes after ``after`` from the durable change log, in cursor order."""
    while True:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(CH.c.cursor, CH.c.payload)
                    .where(CH.c.cursor > after)
                    .order_by(CH.c.cursor)
                    .limit(_REPLAY_PAGE)
                )
            ).all()
        for cursor, payload in rows:
            after = cursor
            if visible(auth, principal, payload):
                yield payload
        if len(rows) < _REPLAY_PAGE:
            return


async def stream_frames(
    engine: AsyncEngine, hub: Hub, principal: Principal, after: int | None, keepalive: float | None = None
) -> AsyncIterator[dict | None]:
    """Replay-then-live, deduplicated by cursor. Ends when the subscriber is cut off.

    With ``keepalive``, yields None after that many idle seconds (SSE writes a comment, which is
    how a vanished client is noticed).
    """
    sub = hub.subscribe(principal)  # before reading the log: nothing can fall in between
    try:
        if after is None:
            async with engine.connect() as conn:
                last = (await conn.execute(select(CNT.c.value).where(CNT.c.name == "cursor"))).scalar_one()
            yield {"type": "hello", "cursor": last}
        else:
            last = after
            async for frame in replay(engine, hub.auth, principal, after):
                last = frame["cursor"]
                yield frame
        while True:
            try:  # not wait_for: on 3.11 it drops a cancel that comes with a frame (a pump left running)
                async with asyncio.timeout(keepalive):
                    frame = await sub.queue.get()
            except TimeoutError:
                yield None
                continue
            if frame is None:
                return
            if frame["cursor"] <= last:
                continue
            last = frame["cursor"]
            yield frame
    finally:
        hub.unsubscribe(sub)


def _after(request: web.Request) -> int | None:
    raw = request.query.get("after") or request.headers.get("Last-Event-ID")
    if raw is None or raw == "":
        return None
    from controller.whatsapp.api import whole_number

    value = whole_number(raw)
    if value is None:  # checked before the 200: a stream must not die right after it
        raise web.HTTPBadRequest(text="after must be a cursor: a whole number from 0 to 2^63-1")
    return value


def principal_of(request: web.Request, *, allow_query: bool = False) -> Principal:
    """The caller, from ``Authorization: Bearer`` (or ``?token=`` on streams, for browsers)."""
    service = request.app[SERVICE]
    auth: SidecarAuth = service.auth
    header = request.headers.get("Authorization")
    if not header and allow_query and request.query.get("token"):
        header = f"Bearer {request.query['token']}"
    try:
        return auth.identify(header)
    except AuthError as exc:
        service.metrics.inc("api_rejected", reason="auth")
        raise web.HTTPUnauthorized(text=exc.message, headers={"WWW-Authenticate": "Bearer"}) from None


def _check_origin(request: web.Request) -> None:
    """Refuse a browser page from a foreign site (cross-site WebSocket hijacking)."""
    service = request.app[SERVICE]
    if not stream_origin_ok(request, service.config.cors_origins):
        service.metrics.inc("cors_refused", kind="stream")
        log.warning(
            "stream refused: browser Origin not allowed",
            extra={"origin": request.headers.get("Origin", "")[:200], "path": request.path},
        )
        raise web.HTTPForbidden(text="this Origin may not open the stream (ACD_SIDECAR_CORS_ORIGINS)")


async def ws_handler(request: web.Request) -> web.StreamResponse:
    _check_origin(request)
    principal = principal_of(request, allow_query=True)
    after = _after(request)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    service = request.app[SERVICE]
    engine: AsyncEngine = service.engine
    hub: Hub = service.hub
    service.metrics.inc("stream_connections", kind="ws")
    log.info("stream connected", extra={"who": label(principal), "after": after, "kind": "ws"})

    async def reader() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break

    async def pump() -> None:
        async for frame in stream_frames(engine, hub, principal, after):
            if frame is not None:
                await ws.send_str(dumps(frame, compact=True))

    # Whichever ends first ends the stream: the client leaving must not leave a pump waiting for
    # the next frame (a leaked subscriber, and a server shutdown that waits for it).
    read_task = asyncio.create_task(reader())
    pump_task = asyncio.create_task(pump())
    try:
        await asyncio.wait({read_task, pump_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (read_task, pump_task):
            task.cancel()
        for task in (read_task, pump_task):
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await task
        if not ws.closed:
            await ws.close()
        log.info("stream closed", extra={"who": label(principal), "kind": "ws"})
    return ws


async def sse_handler(request: web.Request) -> web.StreamResponse:
    _check_origin(request)
    principal = principal_of(request, allow_query=True)
    after = _after(request)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    service = request.app[SERVICE]
    service.metrics.inc("stream_connections", kind="sse")
    engine: AsyncEngine = service.engine
    hub: Hub = service.hub
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        async for frame in stream_frames(engine, hub, principal, after, keepalive=15.0):
            if frame is None:
                await resp.write(b": keepalive\n\n")
                continue
            data = dumps(frame, compact=True)
            await resp.write(f"id: {frame['cursor']}\nevent: {frame['type']}\ndata: {data}\n\n".encode())
    return resp


# --------------------------------------------------------------------------- outgoing webhook


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Forwarder:
    """Forwards the change log to ``url`` in batches, at least once, resuming after restarts."""

    def __init__(
        self,
        engine: AsyncEngine,
        hub: Hub,
        url: str,
        secret: str,
        *,
        client: httpx.AsyncClient | None = None,
        batch: int = 200,
        metrics: Counters | None = None,
        writer: SidecarWriter | None = None,
    ) -> None:
        self.engine = engine
        self.writer = writer or SidecarWriter(engine)
        self.hub = hub
        self.url = url
        self.secret = secret
        self.client = client or httpx.AsyncClient(timeout=10)
        self.batch = batch
        self.metrics = metrics or Counters()
        self._wake = asyncio.Event()
        hub.listeners.append(lambda _frames: self._wake.set())

    async def position(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(CNT.c.value).where(CNT.c.name == "relay_cursor"))).scalar_one()

    async def forward_once(self) -> int:
        """Send one batch; returns how many changes were delivered (0 = nothing to do)."""
        after = await self.position()
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(CH.c.cursor, CH.c.payload)
                    .where(CH.c.cursor > after)
                    .order_by(CH.c.cursor)
                    .limit(self.batch)
                )
            ).all()
        if not rows:
            return 0
        body = dumps({"changes": [p for _, p in rows]}, compact=True).encode()
        response = await self.client.post(
            self.url,
            content=body,
            headers={"Content-Type": "application/json", "X-ACD-Signature-256": sign(self.secret, body)},
        )
        response.raise_for_status()
        async with self.writer.transaction() as conn:
            await conn.execute(update(CNT).where(CNT.c.name == "relay_cursor").values(value=rows[-1][0]))
        self.metrics.inc("relay_webhook_delivered", len(rows))
        return len(rows)

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                sent = await self.forward_once()
                delay = 1.0
                if sent:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # not wait_for (3.11 drops a cancel)
                    async with asyncio.timeout(5):
                        await self._wake.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep forwarding; the position only moves on success
                self.metrics.inc("relay_webhook_failed")
                log.warning(
                    "outgoing webhook failed; will retry", extra={"error": repr(exc)[:300], "in_s": delay}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def aclose(self) -> None:
        await self.client.aclose()
