"""Serve a package's static page files (the agent panel, the supervisor wallboard).

Only plain file names of known types reach the disk (no NULs, escapes, dot files or paths), and
every page goes out with its CSP and the same hardening headers.
"""

from __future__ import annotations

import re
from importlib import resources

from aiohttp import web

from controller.api.errors import ApiError

TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9]+)+")


def read_static(package: str, name: str) -> bytes | None:
    """The bytes of ``<package>/static/<name>``, or None for a name that is not a plain file."""
    if not _FILE_NAME.fullmatch(name):
        return None
    try:
        return (resources.files(package) / "static" / name).read_bytes()
    except OSError:
        return None


def static_page(package: str, name: str, csp: str, what: str) -> web.Response:
    """One static file as a response, or the API's 404 naming ``what`` ("panel", "wallboard")."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    body = read_static(package, name) if suffix in TYPES else None
    if body is None:
        raise ApiError(404, "not_found", f"no {what} file {name!r}")
    return web.Response(
        body=body,
        content_type=TYPES[suffix],
        charset="utf-8",
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
