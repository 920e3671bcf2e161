"""The queue file reloads without a restart (admin API and SIGHUP), validated as at start.

New agents and queues appear and new agents' phones are watched at once (an offline phone is
known offline without a reconnect); removed agents go; an invalid file changes nothing and
answers with the very messages a start would print, logged and counted.
"""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest

from controller.app import run_controller
from controller.clock import Clock
from controller.config import ConfigError, load_settings, load_setup
from controller.sim import Answer, NoAnswer, SimAsterisk
from tests.dbkit import migrated_db
from tests.stack import ADMIN, make_stack

FIRST = """
[queues.support]
ring_timeout = 5

[agents.alice]
endpoint = "PJSIP/agent1"
queues = ["support"]
"""

SECOND = """
[queues.support]
ring_timeout = 5

[queues.sales]

[agents.bob]
endpoint = "PJSIP/agent2"
queues = ["support", "sales"]

[agents.carol]
endpoint = "PJSIP/agent3"
queues = ["sales"]
"""

INVALID = """
[queues.support]
ring_timeout = -1
colour = "blue"

[agents.bob]
endpoint = "PJSIP/agent2"
queues = ["nowhere"]
"""


def _metric(text: str, sample: str) -> float:
    """The value of one Prometheus sample line (``name{labels} value``)."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in metrics")


@pytest.fixture
async def reload_stack(tmp_path):
    path = tmp_path / "acd.toml"
    path.write_text(FIRST)
    phones = {"agent1": NoAnswer(), "agent2": Answer(after=0.2), "agent3": Answer(after=0.2)}
    async with migrated_db("sqlite", tmp_path) as (db, _url, _schema):
        stack = await make_stack(db, load_setup(path), phones, offline=("agent3",), config=str(path))
        try:
            yield stack, path
        finally:
            await stack.close()


async def test_admin_reload_adds_and_removes_and_watches_new_endpoints(reload_stack):
    stack, path = reload_stack
    engine = stack.controller.engine
    path.write_text(SECOND)
    status, body, _ = await stack.request("POST", "/api/admin/reload")
    assert status == 200, body
    assert body["reloaded"] is True
    assert body["changes"] == {
        "queues": {"added": ["sales"], "removed": [], "changed": []},
        "agents": {"added": ["bob", "carol"], "removed": ["alice"], "changed": []},
    }
    assert "alice" not in engine.agents and set(engine.setup.queues) == {"support", "sales"}
    assert engine.agents["carol"].reachable is False, "carol's phone is offline: watched at once"
    caller = stack.call(caller_number="5550100", talk_time=1)
    await caller.wait_for(lambda c: c.bridged_with == "agent2", 200)
    status, text, _ = await stack.request("GET", "/metrics")
    assert _metric(text, 'acd_config_reloads_total{result="ok"}') == 1


async def test_invalid_file_is_rejected_with_the_start_messages_and_nothing_changes(reload_stack):
    stack, path = reload_stack
    engine = stack.controller.engine
    before = engine.setup
    path.write_text(INVALID)
    with pytest.raises(ConfigError) as at_start:
        load_setup(path)
    status, body, _ = await stack.request("POST", "/api/admin/reload")
    assert status == 409
    assert body == {"reloaded": False, "errors": at_start.value.problems}
    assert engine.setup is before and set(engine.agents) == {"alice"}
    status, text, _ = await stack.request("GET", "/metrics")
    assert _metric(text, 'acd_config_reloads_total{result="rejected"}') == 1


async def test_reload_needs_the_admin_token(reload_stack):
    stack, _path = reload_stack
    status, _body, _ = await stack.request("POST", "/api/admin/reload", token=None)
    assert status == 401


async def test_sighup_reloads_the_queue_file(tmp_path, unused_tcp_port):
    path = tmp_path / "acd.toml"
    path.write_text(FIRST)
    sim = SimAsterisk(clock=Clock(speed=20), seed=1, user="acd", password="secret")
    await sim.start("127.0.0.1", 0)
    for phone in ("agent1", "agent2", "agent3"):
        sim.add_phone(phone, Answer(after=0.2))
    settings = load_settings(
        env_file=None,
        ari_url=sim.base_url,
        ari_user="acd",
        ari_password="secret",
        config=str(path),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/acd.sqlite3",
        http_port=unused_tcp_port,
        admin_token=ADMIN,
    )
    run = asyncio.ensure_future(run_controller(settings, load_setup(path)))
    base = f"http://127.0.0.1:{unused_tcp_port}"
    headers = {"Authorization": f"Bearer {ADMIN}"}

    async def agents(http: aiohttp.ClientSession) -> set[str] | None:
        try:
            async with http.get(base + "/api/agents", headers=headers) as resp:
                if resp.status != 200:
                    return None
                return {a["id"] for a in (await resp.json())["agents"]}
        except aiohttp.ClientConnectionError:
            return None

    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while await agents(http) != {"alice"}:  # noqa: ASYNC110 - the process has no hook
                assert not run.done(), run.result()
                await asyncio.sleep(0.02)
            path.write_text(SECOND)
            os.kill(os.getpid(), signal.SIGHUP)
            while await agents(http) != {"bob", "carol"}:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(run, 20) == 0
    finally:
        if not run.done():
            run.cancel()
        await sim.stop()
