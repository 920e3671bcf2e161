"""HTTP side of the wallboard: the page and its assets, and the supervisor's live stream.

The page is static (``static/``), served with a strict Content-Security-Policy and nothing
fetched from elsewhere. The stream accepts the admin token (every queue) or a supervisor's
(its queues only); an agent's token is refused with 403. Actions use the agents' own routes
(``POST /api/agents/{id}/pause`` ...), which accept a supervisor of one of the agent's queues.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from controller.api.errors import ApiError
from controller.api.static import static_page
from controller.api.wsfeed import serve_feed

if TYPE_CHECKING:
    from controller.api.auth import Principal
    from controller.wallboard.hub import WallboardHub

__all__ = ["CSP", "add_routes"]

log = logging.getLogger("controller.wallboard")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def add_routes(app: web.Application, hub_key: web.AppKey, identify: Any) -> None:
    """Mount the wallboard. ``identify(authorization) -> Principal`` (raises ApiError)."""

    def page(name: str) -> web.Response:
        return static_page("controller.wallboard", name, CSP, "wallboard")

    async def index(request: web.Request) -> web.Response:
        return page("index.html")

    async def asset(request: web.Request) -> web.Response:
        return page(request.match_info["name"])

    async def stream(request: web.Request) -> web.StreamResponse:
        """Queues, agents and charts as JSON frames (docs/wallboard.md); token in ``?token=``."""
        token = request.query.get("token", "")
        header = request.headers.get("Authorization") or (f"Bearer {token}" if token else None)
        principal: Principal = identify(header)
        if not (principal.is_admin or principal.is_supervisor):
            raise ApiError(403, "forbidden", "the wallboard needs a supervisor token or the admin token")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise ApiError(
                403, "forbidden", f"WebSocket from origin {origin!r} refused: open the wallboard itself"
            )
        hub: WallboardHub = request.app[hub_key]
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        queues = None if principal.is_admin else principal.queues
        viewer = {
            "role": principal.role,
            "id": principal.supervisor_id,
            "name": principal.name,
            "queues": sorted(queues) if queues is not None else None,
        }
        feed = hub.subscribe(queues, viewer)
        who = principal.label
        log.info("wallboard connected", extra={"by": who, "connections": hub.connections})

        try:
            await serve_feed(ws, feed.queue)
        finally:
            hub.unsubscribe(feed)
            log.info("wallboard disconnected", extra={"by": who, "connections": hub.connections})
        return ws

    r = app.router
    r.add_get("/wallboard", index)
    r.add_get("/wallboard/{name}", asset)
    r.add_get("/api/wallboard/stream", stream)
