"""The whole product on the simulator: sim + controller + Services (store, API) on a test database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from controller.acd import commands as cmd
from controller.acd.setup import AcdSetup
from controller.app import Controller
from controller.clock import Clock
from controller.config import load_settings
from controller.service import Services
from controller.sim import SimAsterisk
from tests.telephony.conftest import sim_controller

ADMIN = "admin-token-123"
SPEED = 20.0


class Stack:
    def __init__(self, sim: SimAsterisk, controller: Controller, services: Services) -> None:
        self.sim = sim
        self.controller = controller
        self.services = services
        self.records: list[cmd.Record] = []
        self.notifies: list[cmd.Notify] = []
        self.http: aiohttp.ClientSession | None = None

    @property
    def writer(self):
        return self.services.writer

    def listen(self, c: cmd.Notify | cmd.Record) -> None:
        (self.records if isinstance(c, cmd.Record) else self.notifies).append(c)

    def call(self, **kw: Any):
        kw.setdefault("caller_number", "5551234")
        kw.setdefault("caller_name", "Maria")
        return self.sim.place_call("101", **kw)

    async def until(self, pred: Callable[[], object], timeout: float = 10.0) -> None:
        """Poll until ``pred()`` is true; ``timeout`` in wall seconds."""
        async with asyncio.timeout(timeout):
            while not pred():  # noqa: ASYNC110 - controller state changes wake no waiter
                await asyncio.sleep(0.005)

    async def request(self, method: str, path: str, token: str | None = ADMIN, **kw: Any):
        """(status, parsed JSON or text, headers)."""
        assert self.http is not None
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.services.url + path, headers=headers, **kw) as resp:
            body = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, await resp.json(), resp.headers
            return resp.status, body.decode(), resp.headers

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        await self.controller.stop()
        await self.sim.stop()
        await self.services.close()


async def make_stack(
    db,
    setup: AcdSetup,
    phones: dict[str, object],
    *,
    offline: tuple[str, ...] = (),
    agent_tokens: dict[str, str] | None = None,
    http: bool = True,
    writer_options: dict | None = None,
    webhook_options: dict | None = None,
    info_headers: tuple[str, ...] = (),
    honor_auto_answer: tuple[str, ...] = (),
    speed: float = SPEED,
    **settings: Any,
) -> Stack:
    clock = Clock(speed=speed)
    sim = SimAsterisk(clock=clock, seed=1, user="acd", password="secret")
    await sim.start("127.0.0.1", 0)
    for name, behaviour in phones.items():
        sim.add_phone(
            name, behaviour, registered=name not in offline, honor_auto_answer=name in honor_auto_answer
        )
    controller = sim_controller(sim, setup, info_headers=info_headers)
    settings.setdefault("admin_token", ADMIN)
    svc_settings = load_settings(env_file=None, database_url="sqlite+aiosqlite:///unused", **settings)
    options = {"linger": 0.005, "retry_initial": 0.05, "retry_max": 0.2} | (writer_options or {})
    services = Services(
        controller,
        svc_settings,
        agent_tokens=agent_tokens,
        db=db,
        writer_options=options,
        webhook_options=webhook_options,
    )
    stack = Stack(sim, controller, services)
    controller.shell.listeners.append(stack.listen)
    await services.attach()
    await controller.start()
    if http:
        await services.serve("127.0.0.1", 0)
        stack.http = aiohttp.ClientSession()
    return stack
