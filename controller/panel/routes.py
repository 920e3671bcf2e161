"""HTTP side of the panel: the page and its assets, its config, and the agent's live stream.

The page is static (``static/``): no build step, nothing fetched from the internet. It is served
with a strict Content-Security-Policy; the only other origin it may talk to is the WhatsApp
sidecar named in ``/panel/config.json``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from controller.api.errors import ApiError
from controller.api.static import static_page
from controller.api.wsfeed import serve_feed

if TYPE_CHECKING:
    from controller.panel.hub import PanelHub

__all__ = ["PanelConfig", "add_routes"]

log = logging.getLogger("controller.panel")



class PanelConfig:
    """What the page needs to know at start: where the sidecar is, the default language, demo mode."""

    def __init__(self, whatsapp_url: str = "", language: str = "pt-BR", demo: bool = False) -> None:
        self.whatsapp_url = whatsapp_url.rstrip("/")
        self.language = language
        self.demo = demo

    def as_dict(self) -> dict[str, Any]:
        return {"whatsapp_url": self.whatsapp_url or None, "language": self.language, "demo": self.demo}

    def csp(self) -> str:
        connect = ["'self'"]
        if self.whatsapp_url:
            parts = urlsplit(self.whatsapp_url)
            origin = f"{parts.scheme}://{parts.netloc}"
            ws = origin.replace("http", "ws", 1)
            connect += [origin, ws]
        return (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {' '.join(connect)}; frame-ancestors 'none'; base-uri 'none'"
        )




def add_routes(app: web.Application, config: PanelConfig, hub_key: web.AppKey, identify: Any) -> None:
    """Mount the panel on the API's app. ``identify(authorization) -> Principal`` (raises ApiError)."""

    def page(name: str) -> web.Response:
        return static_page("controller.panel", name, config.csp(), "panel")

    async def index(request: web.Request) -> web.Response:
        return page("index.html")

    async def asset(request: web.Request) -> web.Response:
        return page(request.match_info["name"])

    async def panel_config(request: web.Request) -> web.Response:
        return web.json_response(config.as_dict(), headers={"Cache-Control": "no-cache"})

    async def stream(request: web.Request) -> web.StreamResponse:
        """The agent's live state as JSON frames (see docs/panel.md); token in ``?token=``."""
        agent_id = request.match_info["agent_id"]
        token = request.query.get("token", "")
        header = request.headers.get("Authorization") or (f"Bearer {token}" if token else None)
        principal = identify(header)
        if not principal.may_act_for(agent_id):
            raise ApiError(403, "forbidden", "an agent token may only watch its own agent")
        hub: PanelHub = request.app[hub_key]
        if agent_id not in hub.engine.agents:
            raise ApiError(404, "not_found", f"no agent {agent_id!r}")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            # a page on another site must not read an agent's calls with a token it stole from the URL
            problem = f"WebSocket from origin {origin!r} refused: open the panel itself"
            raise ApiError(403, "forbidden", problem)
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        feed = hub.subscribe(agent_id)
        log.info("panel connected", extra={"agent": agent_id, "connections": hub.connections})

        try:
            await serve_feed(ws, feed.queue, _compact)
        finally:
            hub.unsubscribe(feed)
            log.info("panel disconnected", extra={"agent": agent_id, "connections": hub.connections})
        return ws

    r = app.router
    r.add_get("/", index)
    r.add_get("/panel/config.json", panel_config)
    r.add_get("/panel/{name}", asset)
    r.add_get("/api/agents/{agent_id}/stream", stream)


def _compact(frame: object) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
