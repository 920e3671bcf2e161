"""End to end in a real browser: Debian's Chromium driven by Playwright, on the simulator.

The browser is ``/usr/bin/chromium`` (``apt-get install chromium``; `.ci/run` installs it); nothing
here downloads a browser. Outside CI a machine without it skips these tests; in CI (``CI`` set)
a missing browser is a failure, so a broken setup cannot pass unnoticed.

A *world* is the product as an admin deploys it, on loopback: simulated Asterisk, controller
with history, HTTP API and panel, and the WhatsApp sidecar with a fake Graph API (CORS for the
panel's origin, the same agent tokens).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from controller.acd.setup import AcdSetup
from controller.api.auth import hash_token
from controller.whatsapp.service import WEBHOOK_PATH, WhatsAppConfig, WhatsAppService
from tests.ci import unavailable
from tests.dbkit import migrated_db
from tests.stack import Stack, make_stack

CHROMIUM = "/usr/bin/chromium"
APP_SECRET = "e2e-app-secret"
PNID = "100000000000009"
TOKENS = {"alice": "alice-e2e-token", "bob": "bob-e2e-token"}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat before the browser starts
        unavailable(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install -y chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


class FakeMeta:
    """Graph API ``POST /{pnid}/messages``: accepts every send with a new wamid."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.fail_with: Exception | None = None  # raised after the request "reached" Meta
        self._ids = itertools.count(1)

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.sent.append(body)
        if self.fail_with is not None:
            raise self.fail_with
        wamid = f"wamid.E2E{next(self._ids):04d}"
        return httpx.Response(
            200,
            json={
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": wamid}],
            },
        )


class World:
    def __init__(self, stack: Stack, sidecar: WhatsAppService | None, sidecar_url: str | None) -> None:
        self.stack = stack
        self.sidecar = sidecar
        self.sidecar_url = sidecar_url
        self.meta = FakeMeta()
        self._http = aiohttp.ClientSession()

    @property
    def url(self) -> str:
        return self.stack.services.url  # type: ignore[return-value]

    def panel_url(self, agent: str) -> str:
        return f"{self.url}/#token={TOKENS[agent]}"

    async def webhook(self, value: dict[str, Any]) -> None:
        """POST a signed webhook to the sidecar, as Meta does, and wait until it is processed."""
        import hashlib
        import hmac

        doc = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "200000000000009",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"display_phone_number": "551100000009", "phone_number_id": PNID},
                                **value,
                            },
                        }
                    ],
                }
            ],
        }
        body = json.dumps(doc).encode()
        sig = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        async with self._http.post(
            f"{self.sidecar_url}{WEBHOOK_PATH}",
            data=body,
            headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        assert self.sidecar is not None
        await self.sidecar.drain()

    async def customer_writes(self, wa_id: str, name: str, text: str, ts: float, wamid: str) -> None:
        await self.webhook(
            {
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                "messages": [
                    {
                        "from": wa_id,
                        "id": wamid,
                        "timestamp": str(int(ts)),
                        "type": "text",
                        "text": {"body": text},
                    }
                ],
            }
        )

    async def status(self, wamid: str, wa_id: str, status: str, ts: float, error: dict | None = None) -> None:
        item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(ts))}
        item["recipient_id"] = wa_id
        if error is not None:
            item["errors"] = [error]
        await self.webhook({"statuses": [item]})

    async def api(self, method: str, path: str, agent: str = "alice", **kw: Any) -> tuple[int, Any]:
        base = self.sidecar_url if path.startswith("/wa") else self.url
        path = path.removeprefix("/wa")
        headers = {"Authorization": f"Bearer {TOKENS[agent]}"}
        async with self._http.request(method, base + path, headers=headers, **kw) as resp:
            return resp.status, await resp.json()

    async def close(self) -> None:
        await self._http.close()


@pytest.fixture
async def world_maker(tmp_path: Path):
    """``await world_maker(setup, phones, whatsapp=True, **stack_kw)`` -> World."""
    cleanups: list[Any] = []

    async def make(setup: AcdSetup, phones: dict[str, object], *, whatsapp: bool = False, **kw: Any) -> World:
        db_cm = migrated_db("sqlite", tmp_path / f"w{len(cleanups)}")
        db, _url, _schema = await db_cm.__aenter__()
        tokens = {a: hash_token(t) for a, t in TOKENS.items()}
        stack = await make_stack(db, setup, phones, agent_tokens=tokens, **kw)
        sidecar = runner = None
        sidecar_url = None
        world = World(stack, None, None)
        if whatsapp:
            config = WhatsAppConfig(
                database_url=f"sqlite+aiosqlite:///{tmp_path}/wa{len(cleanups)}.sqlite3",
                app_secret=APP_SECRET,
                verify_token="e2e-verify",
                access_token="EAAG-e2e",
                phone_number_id=PNID,
                graph_url="https://graph.test/v24.0",
                admin_token="admin-token-123",
                agent_tokens=TOKENS,
                cors_origins=[stack.services.url],
                templates=[
                    {
                        "name": "atualizacao_pedido",
                        "language": "pt_BR",
                        "category": "UTILITY",
                        "body": "Olá! Seu pedido {{1}} foi atualizado.",
                    }
                ],
            )
            sidecar = WhatsAppService(config, graph_transport=httpx.MockTransport(world.meta.handler))
            await sidecar.start()
            runner = web.AppRunner(sidecar.app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            sidecar_url = f"http://127.0.0.1:{port}"
            stack.services.panel_config.whatsapp_url = sidecar_url
            world.sidecar, world.sidecar_url = sidecar, sidecar_url
        cleanups.append((world, runner, db_cm))
        return world

    yield make
    for world, runner, db_cm in cleanups:
        await world.close()
        if world.sidecar is not None:
            world.sidecar.hub.close_all()
        if runner is not None:
            await runner.cleanup()
        if world.sidecar is not None:
            await world.sidecar.stop()
        await world.stack.close()
        await db_cm.__aexit__(None, None, None)


@pytest.fixture
def shots(tmp_path: Path):
    """``await shot(page, name)`` saves a screenshot under the test's tmp dir."""
    folder = tmp_path / "screenshots"
    folder.mkdir()

    async def shot(page: Any, name: str) -> Path:
        path = folder / f"{int(time.time() * 1000)}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    shot.folder = folder  # type: ignore[attr-defined]
    return shot
