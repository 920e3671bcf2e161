"""JSON errors for every failure: a clear message, never a stack trace."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiohttp import web

log = logging.getLogger("controller.api")

MAX_BODY = 64 * 1024  # the API's requests are small JSON objects
REJECTED = web.AppKey("acd_api_rejected", Counter)  # error code -> refusals (for /metrics)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **details: Any
) -> web.Response:
    body: dict[str, Any] = {"error": code, "message": message}
    body.update(details)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="acd"'
    return web.json_response(body, status=status, headers=headers or None)


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        if 400 <= exc.status < 500 and REJECTED in request.app:
            request.app[REJECTED][exc.code] += 1
        return error_response(exc.status, exc.code, exc.message, **exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        message = {
            404: f"no such endpoint: {request.method} {request.path!r} (see /api/openapi.json)",
            405: f"{request.method} is not allowed on {request.path!r}",
            413: f"the request body is over {MAX_BODY // 1024} KiB",
        }.get(exc.status, exc.reason)
        # RFC 9110: a 405 names the methods the resource does allow
        kept = {k: v for k, v in exc.headers.items() if k == "Allow"}
        return error_response(exc.status, code, message, kept)
    except Exception:
        log.exception("API request failed", extra={"method": request.method, "path": request.path})
        return error_response(500, "internal_error", "internal error; the controller's log has the details")
