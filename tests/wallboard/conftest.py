"""A two-queue floor (sales, support) on the simulator, with one supervisor per queue."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from controller.acd.setup import AcdSetup, AgentConfig, Membership, QueueConfig, Strategy
from controller.api.auth import hash_token
from controller.sim import NoAnswer
from tests.dbkit import migrated_db
from tests.stack import make_stack

AGENT_TOKENS = {"alice": "alice-token-1234", "bob": "bob-token-1234", "carol": "carol-token-1234"}
SALES_SUP = "sam-sales-supervisor-token"
SUPPORT_SUP = "sue-support-supervisor-token"
SUPERVISORS = {
    "sam": ("Sam", hash_token(SALES_SUP), frozenset({"sales"})),
    "sue": ("Sue", hash_token(SUPPORT_SUP), frozenset({"support"})),
}


def floor_setup() -> AcdSetup:
    """alice in sales, bob in support, carol in both; long ring so offers stay up."""

    def q(name: str) -> QueueConfig:
        return replace(QueueConfig(name), strategy=Strategy.LINEAR, ring_timeout=600, max_no_answer=0)

    agents = {
        "alice": AgentConfig("alice", "Alice", "PJSIP/agent1", (Membership("sales"),)),
        "bob": AgentConfig("bob", "Bob", "PJSIP/agent2", (Membership("support"),)),
        "carol": AgentConfig("carol", "Carol", "PJSIP/agent3", (Membership("sales"), Membership("support"))),
    }
    return AcdSetup(queues={"sales": q("sales"), "support": q("support")}, agents=agents)


@pytest.fixture
async def floor(tmp_path):
    phones = {"agent1": NoAnswer(), "agent2": NoAnswer(), "agent3": NoAnswer()}
    tokens = {a: hash_token(t) for a, t in AGENT_TOKENS.items()}
    async with migrated_db("sqlite", tmp_path) as (db, _url, _schema):
        s = await make_stack(
            db, floor_setup(), phones, agent_tokens=tokens, service_level=10, service_level_target=95
        )
        s.services.api_auth.set_supervisors(SUPERVISORS)
        s.sim.dialplan["101"] = ("acd", ["support"])
        s.sim.dialplan["102"] = ("acd", ["sales"])
        try:
            yield s
        finally:
            await s.close()


class Board:
    """One wallboard connection, as the browser has it: the state it holds and every frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.queues: dict[str, Any] = {}
        self.agents: dict[str, Any] = {}
        self.charts: dict[str, Any] | None = None

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        self.frames.append(frame)
        if frame["type"] == "snapshot":
            self.queues, self.agents = frame["queues"], frame["agents"]
        elif frame["type"] == "delta":
            for store, changes in ((self.queues, frame["queues"]), (self.agents, frame["agents"])):
                for key, view in changes.items():
                    if view is None:
                        store.pop(key, None)
                    else:
                        store[key] = view
        elif frame["type"] == "charts":
            self.charts = frame
        return frame

    async def until(self, pred, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                await self.next(timeout)


async def open_board(stack, token: str) -> Board:
    assert stack.http is not None
    ws = await stack.http.ws_connect(f"{stack.services.url}/api/wallboard/stream?token={token}")
    board = Board(ws)
    first = await board.next()
    assert first["type"] == "snapshot"
    return board
