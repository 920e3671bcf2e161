"""The agent/admin HTTP API: conversations, history in chat order, send, assign, alerts.

History order is the chat order, ``(event_ts, seq)``; pages are cut by that sort key
(``before=``/``after_key=`` tokens, see :mod:`controller.whatsapp.paging`). Each message carries
its ``cursor`` (the change that last touched it); the response's ``cursor`` is the
conversation's latest, read in the same snapshot, so the stream with ``?after=<cursor>`` (or
``GET .../messages?after=<cursor>``, changes in cursor order) continues where the history ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from sqlalchemy import func, or_, select

from controller.store import reading
from controller.whatsapp.appkey import SERVICE
from controller.whatsapp.auth import Principal
from controller.whatsapp.changes import alert_view, conversation_view, message_view
from controller.whatsapp.jsonout import dumps
from controller.whatsapp.metrics import CONTENT_TYPE
from controller.whatsapp.models import ChannelAlert, Conversation, Message, StatusHistory
from controller.whatsapp.paging import BadToken, decode_token, read_page
from controller.whatsapp.relay import principal_of
from controller.whatsapp.sender import SendError

__all__ = ["MAX_ID", "dumps", "json_errors", "routes", "whole_number"]

log = logging.getLogger("controller.whatsapp.api")

CV = Conversation.__table__
M = Message.__table__
H = StatusHistory.__table__
A = ChannelAlert.__table__

routes = web.RouteTableDef()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Errors of the API as ``{"error": text}`` (what the panel shows); the webhook keeps plain text."""
    if request.path.startswith("/webhooks/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or (exc.content_type or "").startswith("application/json"):
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("WWW-Authenticate", "Allow")}
        resp = _json({"error": exc.text or exc.reason}, exc.status)
        resp.headers.update(headers)
        return resp
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("API request failed", extra={"path": request.path, "method": request.method})
        return _json({"error": "internal error; see the sidecar's log"}, 500)


MAX_ID = 2**63 - 1  # ids and cursors are 64-bit in the database; past that nothing exists


def whole_number(raw: str, lo: int = 0, hi: int = MAX_ID) -> int | None:
    """``raw`` as an int in lo..hi, or None (not a plain whole number, or out of range)."""
    raw = raw.strip()
    if not raw.lstrip("-").isdigit() or len(raw) > 20 or not raw.isascii():
        return None
    value = int(raw)
    return value if lo <= value <= hi else None


def _int_param(
    request: web.Request, name: str, default: int | None = None, *, lo: int = 0, hi: int = MAX_ID
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = whole_number(raw, lo, hi)
    if value is None:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number between {lo} and {hi}")
    return value


def _conv_id(request: web.Request) -> int:
    value = whole_number(request.match_info["conversation_id"], 1)
    if value is None:
        raise web.HTTPNotFound(text="no such conversation")
    return value


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, RecursionError):  # bad JSON or UTF-8, or nested past Python's stack
        request.app[SERVICE].metrics.inc("api_rejected", reason="invalid_json")
        raise web.HTTPBadRequest(text="body must be JSON") from None


def _visible_filter(service: Any, principal: Principal):  # noqa: ANN202 - SQL expression
    if principal.is_admin:
        return None
    mine = CV.c.assigned_agent == principal.agent_id
    if principal.agent_id in service.auth.team:
        return or_(mine, CV.c.assigned_agent.is_(None))
    return mine


async def _visible_conversation(service: Any, conn: Any, principal: Principal, cid: int) -> dict:
    row = (await conn.execute(select(CV).where(CV.c.id == cid))).mappings().first()
    if row is None or not service.auth.can_see(principal, row["assigned_agent"]):
        raise web.HTTPNotFound(text="no such conversation (or not yours)")
    return dict(row)


@routes.get("/api/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    principal = principal_of(request)
    query = select(CV).order_by(CV.c.id)
    where = _visible_filter(service, principal)
    if where is not None:
        query = query.where(where)
    async with reading(service.engine) as conn:
        rows = (await conn.execute(query)).mappings().all()
    now = service.clock()
    return _json({"conversations": [conversation_view(dict(r), now) for r in rows]})


@routes.post("/api/conversations")
async def open_conversation(request: web.Request) -> web.Response:
    """Find or create the conversation with a phone number (to send a template first)."""
    service = request.app[SERVICE]
    principal = principal_of(request)
    body = await _body(request)
    wa_id = str(body.get("wa_id", "")).lstrip("+") if isinstance(body, dict) else ""
    if not wa_id.isdigit() or not 8 <= len(wa_id) <= 15:
        return _error(400, "wa_id must be a phone number in international format, digits only")
    name = body.get("name") if isinstance(body.get("name"), str) else None
    async with service.changelog.unit() as u:
        conv = await u.conversation_for(service.config.phone_number_id, wa_id, wa_id=wa_id, name=name)
        if not service.auth.can_see(principal, conv["assigned_agent"]):
            raise web.HTTPNotFound(text="this conversation belongs to another agent")
        if principal.agent_id is not None and conv["assigned_agent"] is None:
            u.assign(conv, principal.agent_id)
    return _json({"conversation": conversation_view(conv, service.clock())}, 201)


@routes.get("/api/conversations/{conversation_id}")
async def get_conversation(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    principal = principal_of(request)
    async with reading(service.engine) as conn:
        conv = await _visible_conversation(service, conn, principal, _conv_id(request))
    return _json({"conversation": conversation_view(conv, service.clock())})


@routes.get("/api/conversations/{conversation_id}/messages")
async def history(request: web.Request) -> web.Response:
    """History pages by sort key (``before``/``after_key``), or changes since a cursor (``after``)."""
    principal_of(request)
    cid = _conv_id(request)
    after = _int_param(request, "after")
    limit = _int_param(request, "limit", 500, lo=1, hi=5000)
    assert limit is not None
    if after is not None:
        if "before" in request.query or "after_key" in request.query:
            raise web.HTTPBadRequest(
                text="after (changes since a cursor) cannot be combined with before/after_key (history pages)"
            )
        return await _changes_since(request, cid, after, limit)
    return await _history_page(request, cid, limit)


def _page_token(request: web.Request, name: str) -> tuple[float, int] | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return decode_token(raw)
    except BadToken:
        raise web.HTTPBadRequest(
            text=f"{name} must be a page token from a previous response (its older/newer field)"
        ) from None


async def _history_page(request: web.Request, cid: int, limit: int) -> web.Response:
    """A page of the chat by sort key: the latest, ``before=<older>`` or ``after_key=<newer>``."""
    service = request.app[SERVICE]
    principal = principal_of(request)
    before = _page_token(request, "before")
    after_key = _page_token(request, "after_key")
    if before is not None and after_key is not None:
        raise web.HTTPBadRequest(text="give before or after_key, not both")
    async with reading(service.engine) as conn:
        conv = await _visible_conversation(service, conn, principal, cid)
        page = await read_page(conn, cid, limit=limit, before=before, after_key=after_key)
        top = (
            await conn.execute(select(func.max(M.c.last_cursor)).where(M.c.conversation_id == cid))
        ).scalar_one()
    more = page.newer is not None if after_key is not None else page.older is not None
    return _json(
        {
            "conversation": conversation_view(conv, service.clock()),
            "messages": [message_view(r) for r in page.rows],
            "cursor": max(conv["last_cursor"], top or 0),
            "more": more,
            "older": page.older,
            "newer": page.newer,
        }
    )


async def _changes_since(request: web.Request, cid: int, after: int, limit: int) -> web.Response:
    """Messages changed after a change cursor, in cursor order, so ``after=<cursor>`` continues."""
    service = request.app[SERVICE]
    principal = principal_of(request)
    async with reading(service.engine) as conn:
        conv = await _visible_conversation(service, conn, principal, cid)
        query = (
            select(M)
            .where(M.c.conversation_id == cid, M.c.last_cursor > after)
            .order_by(M.c.last_cursor)
            .limit(limit + 1)
        )
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        top = (
            await conn.execute(select(func.max(M.c.last_cursor)).where(M.c.conversation_id == cid))
        ).scalar_one()
    more = len(rows) > limit
    rows = rows[:limit]
    # With more to come the cursor is the page's last change; else the conversation's latest.
    cursor = rows[-1]["last_cursor"] if more else max(conv["last_cursor"], top or 0, after)
    return _json(
        {
            "conversation": conversation_view(conv, service.clock()),
            "messages": [message_view(r) for r in rows],
            "cursor": cursor,
            "more": more,
        }
    )


@routes.post("/api/conversations/{conversation_id}/messages")
async def send(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    principal = principal_of(request)
    body = await _body(request)
    try:
        status, payload = await service.sender.submit(principal, _conv_id(request), body)
    except SendError as exc:
        service.metrics.inc("send_refused", reason=str(exc.status))
        return _error(exc.status, exc.reason)
    return _json(payload, status)


@routes.post("/api/conversations/{conversation_id}/assign")
async def assign(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    principal = principal_of(request)
    if not principal.is_admin:
        return _error(403, "only the admin token can assign conversations")
    body = await _body(request)
    agent = body.get("agent") if isinstance(body, dict) else None
    if agent is not None and agent not in service.auth.agents:
        return _error(
            400, f"unknown agent {agent!r}; known agents: {', '.join(service.auth.agents) or 'none'}"
        )
    async with service.changelog.unit() as u:
        conv = await u.conversation(_conv_id(request))
        if conv is None:
            raise web.HTTPNotFound(text="no such conversation")
        changed = u.assign(conv, agent)
    log.info("conversation assigned", extra={"conversation": conv["id"], "agent": agent, "changed": changed})
    return _json({"conversation": conversation_view(conv, service.clock())})


@routes.get("/api/messages/{message_id}/history")
async def status_history(request: web.Request) -> web.Response:
    """Every status report of one message, failures included even when no longer shown."""
    service = request.app[SERVICE]
    principal = principal_of(request)
    async with reading(service.engine) as conn:
        row = (
            (await conn.execute(select(M).where(M.c.id == request.match_info["message_id"])))
            .mappings()
            .first()
        )
        if row is None:
            raise web.HTTPNotFound(text="no such message")
        await _visible_conversation(service, conn, principal, row["conversation_id"])
        rows = (
            await conn.execute(select(H).where(H.c.message_id == row["id"]).order_by(H.c.ts, H.c.id))
        ).mappings()
        items = [{k: v for k, v in r.items() if k not in ("raw", "id", "dedupe_key")} for r in rows]
    return _json({"message": message_view(dict(row)), "history": items})


@routes.get("/api/templates")
async def templates(request: web.Request) -> web.Response:
    """The approved templates (``ACD_WA_TEMPLATES_FILE``) for the composer, in the file's order."""
    service = request.app[SERVICE]
    principal_of(request)
    return _json({"templates": [dict(t) for t in service.config.templates]})


@routes.get("/api/alerts")
async def alerts(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    principal_of(request)
    limit = _int_param(request, "limit", 100, lo=1, hi=1000)
    async with reading(service.engine) as conn:
        rows = (await conn.execute(select(A).order_by(A.c.id.desc()).limit(limit))).mappings()
        items = [alert_view(dict(r)) for r in rows]
    return _json({"alerts": items})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; admin token only, like the controller's /metrics."""
    service = request.app[SERVICE]
    if not principal_of(request).is_admin:
        service.metrics.inc("api_rejected", reason="forbidden")
        return _error(403, "/metrics needs the admin token")
    body = await service.prometheus.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.get("/healthz")
async def health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return _json(
        {
            "status": "ok",
            "webhook_configured": bool(service.config.app_secret),
            "sending_configured": service.sender.graph is not None,
            "counters": service.metrics.snapshot(),
        }
    )
