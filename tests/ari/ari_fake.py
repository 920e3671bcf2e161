"""A tiny fake ARI (aiohttp.web on a loopback port) and trace loaders for the ARI tests."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.sim.shared import TRACES, require_traces

USER = "acd"
PASSWORD = "s3cr3t-PW&x"  # '&' checks that the api_key is query-encoded, not pasted into the URL


def trace_steps(name: str) -> list[dict[str, Any]]:
    require_traces()
    return json.loads((TRACES / name).read_text())["steps"]


def trace_events(name: str) -> list[dict[str, Any]]:
    """The ARI events of one recorded trace, in arrival order (only the app ``acd``'s first socket)."""
    return [s["event"] for s in trace_steps(name) if s["kind"] == "event" and s.get("ws", "acd#1") == "acd#1"]


def trace_response(name: str, method: str, path_prefix: str) -> dict[str, Any]:
    """The first recorded response to ``method path*`` in a trace."""
    for step in trace_steps(name):
        if step["kind"] == "response" and step["method"] == method and step["path"].startswith(path_prefix):
            return step
    raise LookupError(f"{method} {path_prefix} not in {name}")


@dataclass
class Seen:
    method: str
    path: str  # below /ari, as in the traces
    query: dict[str, str]
    query_items: list[tuple[str, str]]
    body: Any
    authorization: str | None
    raw_query: str = ""  # as it came on the wire, still percent-encoded


WsScript = Callable[[web.WebSocketResponse], Awaitable[None]]


class FakeAri:
    """Records every REST request; answers from ``responses``; serves scripted websockets."""

    def __init__(self, user: str = USER, password: str = PASSWORD) -> None:
        self.user = user
        self.password = password
        self.seen: list[Seen] = []
        self.responses: dict[tuple[str, str], tuple[int, Any]] = {}
        self.ws_reject: list[int] = []  # statuses for the next handshakes, then accept
        self.ws_scripts: list[WsScript] = []  # one per accepted socket, then "stay open"
        self.ws_queries: list[dict[str, str]] = []
        self.open_ws: list[web.WebSocketResponse] = []
        self.delay = 0.0
        self.app = web.Application()
        self.app.router.add_get("/ari/events", self._events)
        self.app.router.add_route("*", "/ari/{tail:.*}", self._rest)
        self.base_url = ""

    def respond(self, method: str, path: str, status: int, body: Any = None) -> None:
        self.responses[(method, path)] = (status, body)

    @property
    def last(self) -> Seen:
        return self.seen[-1]

    def _auth_ok(self, header: str | None) -> bool:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == f"Basic {token}"

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        path = request.path[len("/ari") :]
        self.seen.append(
            Seen(
                method=request.method,
                path=path,
                query=dict(request.query),
                query_items=list(request.query.items()),
                body=json.loads(text) if text else None,
                authorization=request.headers.get("Authorization"),
                raw_query=request.raw_path.partition("?")[2],
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self._auth_ok(request.headers.get("Authorization")):
            return web.json_response({"message": "Authentication required"}, status=401)
        status, body = self.responses.get((request.method, path), (204, None))
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self.ws_queries.append(dict(request.query))
        if request.query.get("api_key") != f"{self.user}:{self.password}":
            return web.json_response({"message": "Authentication required"}, status=401)
        if self.ws_reject:
            return web.json_response({"message": "nope"}, status=self.ws_reject.pop(0))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.open_ws.append(ws)
        script = self.ws_scripts.pop(0) if self.ws_scripts else None
        try:
            if script is not None:
                await script(ws)
            if not ws.closed:
                async for _ in ws:
                    pass
        finally:
            self.open_ws.remove(ws)
        return ws


def send(*frames: dict[str, Any] | str | bytes, close: bool = False) -> WsScript:
    """A websocket script: send frames (dicts as JSON), then optionally drop the socket."""

    async def script(ws: web.WebSocketResponse) -> None:
        for frame in frames:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            elif isinstance(frame, str):
                await ws.send_str(frame)
            else:
                await ws.send_json(frame)
        if close:
            await ws.close()

    return script


def free_port() -> int:
    """A loopback port nobody listens on (for connection-refused tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
