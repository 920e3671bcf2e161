"""The demo sidecar: real service, fake Meta, traffic that shows every failure kind, clean stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from controller.whatsapp.demo import AGENT_TOKENS, start_demo_sidecar


async def test_demo_sidecar_runs_and_shows_failures() -> None:
    demo = await start_demo_sidecar(speed=25, seed=3)
    tmpdir = demo._tmpdir
    try:
        codes: set[int] = set()
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                await asyncio.sleep(0.1)
                await demo.service.drain()
                rows = await _rows(demo, "SELECT error_code FROM wa_messages WHERE error_code IS NOT NULL")
                codes = {r["error_code"] for r in rows}
                if {130472, 131026, 131047} <= codes:
                    break
            async with http.get(
                f"{demo.url}/api/conversations", headers={"Authorization": f"Bearer {AGENT_TOKENS['alice']}"}
            ) as resp:
                assert resp.status == 200
                assert (await resp.json())["conversations"]
        assert {130472, 131026, 131047} <= codes
        assert demo.service.metrics.get("send_retried", code=131056) >= 1
        assert await _rows(demo, "SELECT code FROM wa_channel_alerts WHERE code = 130429")
        text = demo.summary()
        assert demo.url in text and "webhooks accepted" in text and "refused (24 h window) 1" in text
    finally:
        await demo.stop()
    assert tmpdir is not None and not Path(tmpdir).exists()  # noqa: ASYNC240 - one stat, in a test


async def _rows(demo, sql: str) -> list[dict]:
    from sqlalchemy import text

    async with demo.service.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(text(sql))).mappings()]
