"""A queue-file reload changes supervisors (new tokens work, removed ones stop) and the open
wallboards show the queues and agents it added or removed."""

from __future__ import annotations

import aiohttp
import pytest

from controller.api.auth import hash_token
from controller.config import load_setup
from controller.sim import NoAnswer
from tests.dbkit import migrated_db
from tests.stack import ADMIN, make_stack
from tests.wallboard.conftest import open_board

FIRST = f"""
[queues.support]

[agents.alice]
endpoint = "PJSIP/agent1"
queues = ["support"]

[supervisors.sam]
token_sha256 = "{hash_token("sam-token")}"
queues = ["support"]
"""

SECOND = f"""
[queues.support]
[queues.sales]

[agents.bob]
endpoint = "PJSIP/agent2"
queues = ["sales"]

[supervisors.sue]
name = "Sue"
token_sha256 = "{hash_token("sue-token")}"
queues = ["sales"]
"""


@pytest.fixture
async def reload_stack(tmp_path):
    path = tmp_path / "acd.toml"
    path.write_text(FIRST)
    phones = {"agent1": NoAnswer(), "agent2": NoAnswer()}
    async with migrated_db("sqlite", tmp_path) as (db, _url, _schema):
        stack = await make_stack(db, load_setup(path), phones, config=str(path))
        try:
            yield stack, path
        finally:
            await stack.close()


async def test_reload_swaps_supervisors_and_open_wallboards_follow(reload_stack):
    stack, path = reload_stack
    sam = await open_board(stack, "sam-token")  # from the file at start
    assert set(sam.queues) == {"support"} and set(sam.agents) == {"alice"}
    admin = await open_board(stack, ADMIN)

    path.write_text(SECOND)
    status, body, _ = await stack.request("POST", "/api/admin/reload")
    assert status == 200 and body["reloaded"] is True, body

    await admin.until(
        lambda: "sales" in admin.queues and "bob" in admin.agents and "alice" not in admin.agents
    )
    await sam.until(lambda: "alice" not in sam.agents)  # she left the file
    with pytest.raises(aiohttp.WSServerHandshakeError) as gone:
        await open_board(stack, "sam-token")
    assert gone.value.status == 401
    sue = await open_board(stack, "sue-token")
    assert set(sue.queues) == {"sales"} and set(sue.agents) == {"bob"}
    assert sue.frames[0]["viewer"]["name"] == "Sue"
