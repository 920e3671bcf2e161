"""A tiny ARI client for the sim's tests: REST calls plus an event stream to wait on (no sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from controller.sim import SimAsterisk


class Ari:
    def __init__(self, sim: SimAsterisk, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.events: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def connect(self, app: str = "acd", subscribe_all: bool = False) -> Ari:
        before = set(self.sim.http.connections)
        self.ws = await self.session.ws_connect(self.sim.ws_url(app, subscribe_all))
        self._task = asyncio.create_task(self._read(self.ws))
        await self.sim.wait_for(lambda: set(self.sim.http.connections) - before, what="websocket")
        return self

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
                self._arrived.set()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            self._task.cancel()

    async def call(self, method: str, path: str, **params: Any) -> tuple[int, Any]:
        body = params.pop("json", None)
        query = {k: str(v) for k, v in params.items() if v is not None}
        async with self.session.request(method, f"{self.sim.ari_url}{path}", params=query, json=body) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    async def post(self, path: str, **params: Any) -> tuple[int, Any]:
        return await self.call("POST", path, **params)

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **params)

    async def delete(self, path: str, **params: Any) -> tuple[int, Any]:
        return await self.call("DELETE", path, **params)

    async def ok(self, method: str, path: str, **params: Any) -> Any:
        status, body = await self.call(method, path, **params)
        assert status in (200, 201, 204), (method, path, status, body)
        return body

    async def event(
        self,
        type_: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (clock seconds)
        start: int = 0,
    ) -> dict[str, Any]:
        """The first received event of ``type_`` at index >= start matching ``where`` (waits)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sim.clock.wall_delay(timeout)
        while True:
            for ev in self.events[start:]:
                if ev["type"] == type_ and (where is None or where(ev)):
                    return ev
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {type_} event; got {[e['type'] for e in self.events]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def of(self, channel_id: str) -> list[dict[str, Any]]:
        """Events about one channel (channel or Dial peer)."""
        return [e for e in self.events if (e.get("channel") or e.get("peer") or {}).get("id") == channel_id]

    def types(self, channel_id: str) -> list[str]:
        return [
            e["type"] + (f":{e['variable']}" if e["type"] == "ChannelVarset" else "")
            for e in self.of(channel_id)
        ]

    # -- common flows -----------------------------------------------------------------------------------
    async def customer(self, **kwargs: Any) -> tuple[Any, str]:
        """Place a call to 101 and wait for its StasisStart; returns (caller, channel id)."""
        n = len(self.events)
        caller = self.sim.place_call(**kwargs)
        ev = await self.event("StasisStart", lambda e: e["channel"]["id"] == caller.channel_id, start=n)
        return caller, ev["channel"]["id"]

    async def offer(
        self,
        agent: str,
        customer_id: str | None = None,
        timeout: int = 10,  # noqa: ASYNC109 (clock seconds)
        variables: dict[str, str] | None = None,
    ) -> str:
        """create + dial an agent; returns the agent channel id."""
        body = await self.ok(
            "POST",
            "/channels/create",
            endpoint=f"PJSIP/{agent}",
            app="acd",
            appArgs="offer,1",
            json={"variables": variables or {}},
        )
        await self.ok("POST", f"/channels/{body['id']}/dial", caller=customer_id, timeout=timeout)
        return body["id"]
