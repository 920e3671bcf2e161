"""Serve a hub's feed on a WebSocket: frames out until either side ends.

The agent panel and the supervisor wallboard push the same way: a reader that only notices the
client leaving, a pump that sends queued frames (``None`` ends it), and whichever ends first
ends the other, so a client that left never leaves a pump waiting for its next frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web


async def serve_feed(
    ws: web.WebSocketResponse, queue: asyncio.Queue[Any], encode: Callable[[Any], str] = str
) -> None:
    async def reader() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break

    async def pump() -> None:
        while True:
            frame = await queue.get()
            if frame is None:
                return
            await ws.send_str(encode(frame))

    tasks = [asyncio.create_task(reader()), asyncio.create_task(pump())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await task
        if not ws.closed:
            await ws.close()
