"""CORS for the agent panel, which the controller serves from another origin.

``ACD_SIDECAR_CORS_ORIGINS`` lists exact origins (``http://127.0.0.1:8080``); only those get
``Access-Control-Allow-Origin`` (never ``*``: the API carries bearer tokens). Preflights
(``OPTIONS`` with ``Access-Control-Request-Method``) are answered here without running the
route; every other response, errors included, gets the header when its request's Origin is
allowed, so the panel can read error bodies too. Meta's webhook is server-to-server and is left
alone.

The live stream also checks Origin (cross-site WebSocket hijacking): a browser Origin that is
neither listed nor the sidecar's own is refused with 403. Clients without an Origin header
(curl, servers, the relay) are not browsers and stay allowed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

__all__ = ["MAX_AGE", "add_cors_headers", "cors_middleware", "parse_origins", "stream_origin_ok"]

log = logging.getLogger("controller.whatsapp.cors")

MAX_AGE = 600
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"
_ORIGIN = re.compile(
    r"^(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(?P<port>\d{1,5}))?$"
)
_EXEMPT_PREFIX = "/webhooks/"


def parse_origins(value: str | Iterable[str]) -> list[str]:
    """``"http://a:8080, https://b"`` (or a list) -> normalised exact origins; ValueError if one is not."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        if item == "*":
            raise ValueError("'*' is not allowed: list the panel's exact origins, e.g. http://127.0.0.1:8080")
        m = _ORIGIN.match(item.removesuffix("/"))
        if not m or (m["port"] is not None and not 1 <= int(m["port"]) <= 65535):
            raise ValueError(
                f"{item!r} is not an origin: scheme://host[:port] with no path, e.g. http://127.0.0.1:8080"
            )
        origin = f"{m['scheme'].lower()}://{m['host'].lower()}"
        default_port = "443" if m["scheme"].lower() == "https" else "80"
        if m["port"] is not None and m["port"] != default_port:
            origin += f":{int(m['port'])}"
        if origin not in out:
            out.append(origin)
    return out


def _is_own_origin(request: web.Request, origin: str) -> bool:
    """The page came from the sidecar itself (same host:port as the request was sent to)."""
    _, _, netloc = origin.partition("://")
    return bool(request.host) and netloc.lower() == request.host.lower()


def stream_origin_ok(request: web.Request, allowed: Iterable[str]) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser
    return origin in allowed or _is_own_origin(request, origin)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cors_middleware(allowed: list[str], on_refused: Callable[[str], None] | None = None) -> Callable:
    allowed_set = frozenset(allowed)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allowed_set or request.path.startswith(_EXEMPT_PREFIX):
            return await handler(request)
        origin = request.headers.get("Origin")
        if (
            request.method == "OPTIONS"
            and origin is not None
            and "Access-Control-Request-Method" in request.headers
        ):
            if origin not in allowed_set:
                if on_refused is not None:
                    on_refused("preflight")
                log.warning("CORS preflight refused", extra={"origin": origin[:200], "path": request.path})
                return web.json_response(
                    {"error": f"origin {origin[:200]} is not in ACD_SIDECAR_CORS_ORIGINS"},
                    status=403,
                    headers={"Vary": "Origin"},
                )
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": ALLOW_HEADERS,
                    "Access-Control-Max-Age": str(MAX_AGE),
                    "Vary": "Origin",
                },
            )
        return await handler(request)

    return cors


def add_cors_headers(allowed: list[str]) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """``on_response_prepare`` hook: every response (errors, streams) to an allowed origin."""
    allowed_set = frozenset(allowed)

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        if not allowed_set or request.path.startswith(_EXEMPT_PREFIX):
            return
        origin = request.headers.get("Origin")
        if origin is not None and origin in allowed_set:
            response.headers["Access-Control-Allow-Origin"] = origin
        vary = response.headers.get("Vary")  # the answer depends on Origin: caches must know
        if not vary:
            response.headers["Vary"] = "Origin"
        elif "origin" not in vary.lower():
            response.headers["Vary"] = f"{vary}, Origin"

    return hook
