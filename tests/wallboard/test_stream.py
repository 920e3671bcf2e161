"""The wallboard's stream and permissions: snapshot then coalesced deltas, scoped by supervisor."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sqlalchemy import select

from controller.acd import events as ev
from controller.store.history import AgentStateRow
from tests.stack import ADMIN
from tests.wallboard.conftest import AGENT_TOKENS, SALES_SUP, SUPPORT_SUP, open_board


async def test_snapshot_of_a_sales_supervisor_holds_nothing_of_support(floor):
    board = await open_board(floor, SALES_SUP)
    snap = board.frames[0]
    assert set(snap["queues"]) == {"sales"}
    assert set(snap["agents"]) == {"alice", "carol"}
    assert snap["agents"]["carol"]["queues"] == ["sales"]
    assert snap["viewer"] == {"role": "supervisor", "id": "sam", "name": "Sam", "queues": ["sales"]}
    assert snap["service_level_seconds"] == 10 and snap["service_level_target"] == 0.95
    status, metrics, _ = await floor.request("GET", "/metrics")
    assert status == 200 and "acd_wallboard_connections 1.0" in metrics


async def test_a_support_call_never_reaches_the_sales_wallboard(floor):
    sales = await open_board(floor, SALES_SUP)
    support = await open_board(floor, SUPPORT_SUP)
    floor.sim.place_call("101", caller_number="5550101", caller_name="Support Caller")
    await support.until(lambda: support.queues["support"]["waiting"])
    assert support.queues["support"]["waiting"][0]["caller_number"] == "5550101"
    floor.sim.place_call("102", caller_number="5550202", caller_name="Sales Caller")
    await sales.until(lambda: sales.queues["sales"]["waiting"])
    # the sales board got the sales call, and nothing before it mentioned support or its caller
    for frame in sales.frames:
        text = repr(frame)
        assert "support" not in frame.get("queues", {}) and "5550101" not in text and "bob" not in text
    # carol rings for one of the calls; if it is the support one, sales sees her busy but not who calls
    carol = sales.agents["carol"]
    for key in ("call", "offer"):
        if carol[key] is not None:
            assert carol[key]["caller_number"] in (None, "5550202")


async def test_agent_token_is_refused_and_no_token_is_unauthorised(floor):
    url = f"{floor.services.url}/api/wallboard/stream"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await floor.http.ws_connect(f"{url}?token={AGENT_TOKENS['alice']}")
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as anonymous:
        await floor.http.ws_connect(url)
    assert anonymous.value.status == 401
    status, body, _ = await floor.request("GET", "/api/me", token=SALES_SUP)
    assert status == 200 and body["role"] == "supervisor" and body["queues"] == ["sales"]


async def test_waiting_caller_appears_then_goes_and_a_reconnect_starts_from_a_snapshot(floor):
    board = await open_board(floor, ADMIN)
    caller = floor.sim.place_call("102", caller_number="5550303", caller_name="Waiting Wendy")
    await board.until(lambda: board.queues["sales"]["waiting"])
    waiting = board.queues["sales"]["waiting"][0]
    assert waiting["caller_name"] == "Waiting Wendy" and waiting["priority"] == 0
    assert board.queues["sales"]["longest_since"] == waiting["arrived_at"]
    await board.until(lambda: board.queues["sales"]["ringing"])
    assert board.queues["sales"]["ringing"][0]["agent_id"] in ("alice", "carol")

    await board.ws.close()
    again = await open_board(floor, ADMIN)  # the state is whole again on reconnect
    assert again.queues["sales"]["waiting"][0]["call_id"] == waiting["call_id"]

    caller.hangup()
    await again.until(lambda: not again.queues["sales"]["waiting"])
    assert again.queues["sales"]["ringing"] == []
    assert again.queues["sales"]["longest_since"] is None


async def test_changes_in_one_loop_iteration_make_one_delta(floor):
    board = await open_board(floor, ADMIN)
    for agent in ("alice", "bob", "carol"):
        floor.controller.shell.feed(ev.AgentPause(agent, "meeting"))
    frame = await board.next()
    assert frame["type"] == "delta"
    assert set(frame["agents"]) == {"alice", "bob", "carol"}
    assert all(a["state"] == "paused" and a["pause_reason"] == "meeting" for a in frame["agents"].values())
    assert frame["queues"]["sales"]["agents"] == {"paused": 2}
    assert frame["queues"]["support"]["agents"] == {"paused": 2}


async def test_supervisor_pauses_an_agent_of_its_queue_and_the_history_says_who(floor):
    board = await open_board(floor, SALES_SUP)
    status, body, _ = await floor.request(
        "POST", "/api/agents/alice/pause", token=SALES_SUP, json={"reason": "coaching"}
    )
    assert status == 200 and body["state"] == "paused"
    await board.until(lambda: board.agents["alice"]["state"] == "paused")
    assert board.agents["alice"]["pause_reason"] == "coaching"
    notes = [n for n in floor.notifies if n.kind == "agent.state" and n.agent_id == "alice"]
    assert notes[-1].data["by"] == "supervisor:sam"

    async def stored():
        async with floor.services.db.connect() as conn:
            rows = (await conn.execute(select(AgentStateRow).where(AgentStateRow.agent == "alice"))).all()
        return [r for r in rows if r.by == "supervisor:sam" and r.reason == "coaching"]

    found: list = []

    async def poll():
        found[:] = await stored()
        return bool(found)

    async with asyncio.timeout(10):
        while not await poll():  # noqa: ASYNC110 - the writer commits in its own time
            await asyncio.sleep(0.02)
    assert found[0].state == "paused"

    # ready and log out too; an agent of another queue is refused
    status, body, _ = await floor.request("POST", "/api/agents/alice/ready", token=SALES_SUP)
    assert status == 200 and body["state"] != "paused"
    status, body, _ = await floor.request("POST", "/api/agents/alice/logout", token=SALES_SUP)
    assert status == 200 and body["state"] == "logged_out"
    status, body, _ = await floor.request("POST", "/api/agents/bob/pause", token=SALES_SUP, json={})
    assert status == 403 and body["error"] == "forbidden"
    assert floor.controller.engine.agents["bob"].status != "paused"
    # a supervisor token is no admin token
    status, _, _ = await floor.request("GET", "/api/agents", token=SALES_SUP)
    assert status == 403


async def test_wallboard_page_is_served_with_a_strict_csp(floor):
    status, body, headers = await floor.request("GET", "/wallboard", token=None)
    assert status == 200 and "wallboard.js" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe" not in headers["Content-Security-Policy"]
    status, _, _ = await floor.request("GET", "/wallboard/charts.js", token=None)
    assert status == 200
    status, _, _ = await floor.request("GET", "/wallboard/..%2Fhub.py", token=None)
    assert status == 404


async def test_time_in_state_survives_the_last_wallboard_closing(floor):
    board = await open_board(floor, ADMIN)
    floor.controller.shell.feed(ev.AgentPause("alice", "lunch"))
    await board.until(lambda: board.agents["alice"]["state"] == "paused")
    since = board.agents["alice"]["since"]
    assert since is not None
    await board.ws.close()
    await floor.until(lambda: floor.services.wallboard.connections == 0)
    hub = floor.services.wallboard
    before = hub.since.get("bob")
    floor.controller.shell.feed(ev.AgentPause("bob", "training"))  # heard while nobody watches
    await floor.until(lambda: hub.since.get("bob") != before)  # observers hear after the wire
    bob_changed = hub.since["bob"]
    again = await open_board(floor, ADMIN)
    assert again.agents["alice"]["since"] == since  # not restarted by the new connection
    assert again.agents["bob"]["since"] == bob_changed
    floor.controller.shell.feed(ev.AgentReady("alice"))
    await again.until(lambda: again.agents["alice"]["state"] != "paused")
    assert again.agents["alice"]["since"] >= since


async def test_an_ended_call_reaches_todays_charts_without_waiting_for_the_periodic_refresh(floor):
    hub = floor.services.wallboard
    hub.charts_every, hub.charts_gap = 3600.0, 0.3  # only an ended call can cause the refresh
    board = await open_board(floor, SALES_SUP)
    await board.until(lambda: board.charts is not None)  # the first, on connect
    assert sum(r["offered"] for r in board.charts["queues"]["sales"]) == 0
    caller = floor.sim.place_call("102", caller_number="5550404")
    await board.until(lambda: board.queues["sales"]["waiting"])
    caller.hangup()

    def abandoned() -> int:
        rows = board.charts["queues"]["sales"] if board.charts else []
        return sum(r["abandoned"] for r in rows)

    await board.until(lambda: abandoned() == 1)
    assert sum(r["offered"] for r in board.charts["queues"]["sales"]) == 1
    # the agent who was rung has the offer counted today (canceled offers are not outcomes)
    assert all(sum(o.values()) == 0 for o in board.charts["outcomes"].values())
