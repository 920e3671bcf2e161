"""The one aiohttp app key: handlers reach the running service (engine, hub, auth, ...) through it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

SERVICE: web.AppKey[Any] = web.AppKey("acd_whatsapp_service", object)
