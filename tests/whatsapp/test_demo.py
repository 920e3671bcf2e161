"""The demo sidecar: real service, fake Meta, traffic that shows every failure kind, clean stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from controller.whatsapp.demo import AGENT_TOKENS, start_demo_sidecar
from tests.timing import until


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


async def test_demo_sidecar_for_the_panel_shares_identity_and_spares_panel_agents() -> None:
    panel_origin = "http://127.0.0.1:8080"
    demo = await start_demo_sidecar(
        admin_token="shared-admin-token",
        agent_tokens={"you": "your-panel-token"},
        cors_origins=[panel_origin],
        panel_agents=["you"],
        speed=25,
        seed=5,
    )
    you = {"Authorization": "Bearer your-panel-token"}
    try:
        assert demo.traffic_agents == ["alice", "bob"] and demo.panel_agents == ["you"]
        mine = demo.panel_conversations["you"]
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # the seeded sends' failures come back by webhook
                await asyncio.sleep(0.1)
                rows = await _rows(
                    demo,
                    f"SELECT status, error_code, agent_id FROM wa_messages "
                    f"WHERE conversation_id = {mine['open']} AND direction = 'out'",
                )
                if {r["error_code"] for r in rows} >= {130472, 131026} and demo.stats["sent"] >= 6:
                    break
            assert sorted((r["status"], r["error_code"]) for r in rows if r["status"] == "failed") == [
                ("failed", 130472),
                ("failed", 131026),
            ]
            assert {r["agent_id"] for r in rows} == {"you"} and len(rows) == 3
            async with http.get(f"{demo.url}/api/conversations", headers=you) as resp:
                assert resp.status == 200
                convs = {c["id"]: c for c in (await resp.json())["conversations"]}
            assert (
                convs[mine["closed"]]["assigned_agent"] == "you" and not convs[mine["closed"]]["window_open"]
            )
            assert convs[mine["open"]]["assigned_agent"] == "you" and convs[mine["open"]]["window_open"]
            async with http.post(
                f"{demo.url}/api/conversations/{mine['closed']}/messages",
                json={"type": "text", "text": "Oi!"},
                headers=you,
            ) as resp:
                assert resp.status == 422 and (await resp.json())["error"]["code"] == 131047
            async with http.get(
                f"{demo.url}/api/templates", headers={"Authorization": "Bearer shared-admin-token"}
            ) as resp:
                templates = {t["name"]: t for t in (await resp.json())["templates"]}
            assert templates["atualizacao_pedido"]["params"] == 1
            assert templates["promo_semana"]["category"] == "MARKETING"
            async with http.options(
                f"{demo.url}/api/conversations",
                headers={"Origin": panel_origin, "Access-Control-Request-Method": "GET"},
            ) as resp:
                assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == panel_origin
        out_sql = "SELECT agent_id, conversation_id FROM wa_messages WHERE direction = 'out'"

        async def traffic_sent() -> bool:
            return any(r["conversation_id"] not in mine.values() for r in await _rows(demo, out_sql))

        await until(traffic_sent, what="the demo's traffic agents sent something")
        senders = await _rows(demo, out_sql)
        traffic = [r for r in senders if r["conversation_id"] not in mine.values()]
        assert traffic and {r["agent_id"] for r in traffic} <= {"alice", "bob"}  # never "you"
        assert [r for r in senders if r["agent_id"] == "you"] == [
            r for r in senders if r["conversation_id"] in mine.values()
        ]
        owners = await _rows(demo, "SELECT id, assigned_agent FROM wa_conversations")
        assert {r["id"] for r in owners if r["assigned_agent"] == "you"} == set(mine.values())
    finally:
        await demo.stop()
