"""HTTP API on the simulator: every endpoint, auth failures, bad parameters, JSON errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from controller.acd.events import AgentPause
from controller.api.app import CTX
from tests.api.conftest import ALICE_TOKEN, BOB_TOKEN
from tests.stack import ADMIN

ROUTES = [
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/calls"),
    ("GET", "/api/calls/x"),
    ("GET", "/api/queues"),
    ("GET", "/api/agents"),
    ("GET", "/api/agents/alice"),
    ("POST", "/api/agents/alice/pause"),
    ("POST", "/api/offers/x-1/reject"),
]


async def two_calls(stack):
    """Call 1: alice rejects, bob takes it. Then bob and alice pause; call 2 rings carol out (4 s),
    waits for the retry and the caller gives up (6 s)."""
    first = stack.call(caller_number="5550001", caller_name="Ana", talk_time=2)
    await first.wait_for(lambda c: c.bridged_with == "agent2", 100)
    stack.controller.shell.feed(AgentPause("bob", "break"))
    stack.controller.shell.feed(AgentPause("alice", "lunch"))
    second = stack.call(caller_number="5550002", caller_name="Rui", hangup_after=6)
    await second.wait_for(lambda c: c.outcome != "ringing", 100)
    await stack.until(lambda: not stack.controller.engine.calls)
    await stack.writer.flushed()
    return first.channel_id, second.channel_id


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_endpoint_needs_a_token(stack, method, path):
    status, body, headers = await stack.request(method, path, token=None)
    assert status == 401 and body["error"] == "unauthorized" and "Bearer" in body["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await stack.request(method, path, token="wrong")
    assert (status, body["error"], body["message"]) == (401, "unauthorized", "invalid token")
    status, body, _ = await stack.request(method, path, token=None, headers={"Authorization": "Basic YTpi"})
    assert status == 401


@pytest.mark.parametrize(
    ("method", "path"),
    # her own agent (/api/agents/alice, .../alice/pause) is allowed: tested below
    [r for r in ROUTES if r[1] not in ("/api/openapi.json", "/api/agents/alice", "/api/agents/alice/pause")]
    + [("POST", "/api/agents/bob/pause"), ("GET", "/api/agents/bob")],
)
async def test_agent_token_is_refused_outside_its_own_agent(stack, method, path):
    status, body, _ = await stack.request(method, path, token=ALICE_TOKEN)
    if path.startswith("/api/offers/"):
        assert status == 404  # unknown offer: nothing to leak
    else:
        assert status == 403 and body["error"] == "forbidden", body


async def test_healthz_without_token(stack):
    status, body, _ = await stack.request("GET", "/healthz", token=None)
    assert status == 200
    assert body == {
        "status": "ok",
        "ari": {"connected": True},
        "database": {"configured": True, "reachable": True, "buffered_records": 0, "dropped_records": 0},
    }


async def test_healthz_and_history_report_an_unreachable_database(stack):
    ctx = stack.services.runner.app[CTX]
    good = ctx.db
    ctx.db = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    try:
        status, body, _ = await stack.request("GET", "/healthz", token=None)
        assert status == 503 and body["status"] == "degraded" and body["database"]["reachable"] is False
        status, body, _ = await stack.request("GET", "/api/calls")
        assert status == 503 and body["error"] == "database_unavailable"
        assert "Traceback" not in body["message"]
        status, body, _ = await stack.request("GET", "/api/agents")
        assert status == 200 and len(body["agents"]) == 3  # live state needs no database
        status, body, _ = await stack.request("GET", "/api/queues")
        assert status == 200 and body["queues"][0]["today"] is None and "database_error" in body
    finally:
        await ctx.db.dispose()
        ctx.db = good


async def test_calls_list_filters_and_detail(stack):
    answered, abandoned = await two_calls(stack)
    status, body, _ = await stack.request("GET", "/api/calls")
    assert status == 200 and [c["id"] for c in body["calls"]] == [abandoned, answered]
    assert body["next_offset"] is None
    by_id = {c["id"]: c for c in body["calls"]}
    a = by_id[answered]
    assert (a["queue"], a["outcome"], a["agent"], a["caller_number"], a["caller_name"]) == (
        "support",
        "completed",
        "bob",
        "5550001",
        "Ana",
    )
    assert a["hung_up_by"] == "caller" and a["wait"] > 0 and a["talk"] > 0
    assert a["arrived_at"] < a["answered_at"] < a["ended_at"] and a["arrived_at"].endswith("Z")
    assert by_id[abandoned]["outcome"] == "abandoned" and by_id[abandoned]["agent"] is None

    async def ids(query: str) -> list[str]:
        status, body, _ = await stack.request("GET", "/api/calls?" + query)
        assert status == 200, body
        return [c["id"] for c in body["calls"]]

    assert await ids("outcome=completed") == [answered]
    assert await ids("outcome=abandoned&queue=support") == [abandoned]
    assert await ids("queue=sales") == []
    assert await ids("agent=alice") == [answered]  # she was offered it (and rejected)
    assert await ids("agent=carol") == [abandoned]
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await ids("since=" + soon.replace("+00:00", "Z")) == []
    assert sorted(await ids("since=2020-01-01&until=" + soon.replace("+", "%2B"))) == sorted(
        [answered, abandoned]
    )
    status, page, _ = await stack.request("GET", "/api/calls?limit=1")
    assert [c["id"] for c in page["calls"]] == [abandoned] and page["next_offset"] == 1
    status, page, _ = await stack.request("GET", "/api/calls?limit=1&offset=1")
    assert [c["id"] for c in page["calls"]] == [answered] and page["next_offset"] is None

    status, call, _ = await stack.request("GET", f"/api/calls/{answered}")
    assert status == 200 and call["live_state"] is None
    assert [(o["agent"], o["outcome"]) for o in call["offers"]] == [
        ("alice", "rejected"),
        ("bob", "accepted"),
    ]
    rejected = call["offers"][0]
    assert (rejected["cause"], rejected["tech_cause"]) == (21, 603) and rejected["ring_time"] > 0
    status, call, _ = await stack.request("GET", f"/api/calls/{abandoned}")
    assert [(o["agent"], o["outcome"], o["detail"]) for o in call["offers"]] == [
        ("carol", "no_answer", "ring_timeout")
    ]
    status, body, _ = await stack.request("GET", "/api/calls/nope")
    assert status == 404 and body == {"error": "not_found", "message": "no call 'nope'"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("outcome=won", "outcome: must be one of completed, abandoned, overflowed, got 'won'"),
        ("since=yesterday", "since: must be an ISO 8601 date or date-time"),
        ("until=2026-13-01", "until: must be an ISO 8601"),
        ("since=", "since: must be an ISO 8601 date or date-time"),
        ("until=", "until: must be an ISO 8601 date or date-time"),
        ("outcome=", "outcome: must be one of completed, abandoned, overflowed, got ''"),
        ("limit=0", "limit: must be a whole number 1-500, got '0'"),
        ("limit=abc", "limit: must be a whole number 1-500, got 'abc'"),
        ("offset=-1", "offset: must be a whole number"),
        ("queu=support", "unknown query parameter 'queu'; known: queue, since"),
    ],
)
async def test_calls_bad_parameters(stack, query, message):
    status, body, _ = await stack.request("GET", "/api/calls?" + query)
    assert status == 400 and body["error"] == "bad_request"
    assert body["message"].startswith(message), body["message"]


async def test_queues_live_and_today(stack):
    await two_calls(stack)
    status, body, _ = await stack.request("GET", "/api/queues")
    assert status == 200 and body["service_level_seconds"] == 10
    (support,) = body["queues"]
    assert support["queue"] == "support"
    live = support["live"]
    assert live["waiting"] == 0 and live["in_queue"] == 0 and live["longest_wait"] == 0
    assert live["agents"]["paused"] == 2 and sum(live["agents"].values()) == 3
    today = support["today"]
    assert (today["offered"], today["answered"], today["abandoned"], today["overflowed"]) == (2, 1, 1, 0)
    assert today["service_level"] == 0.5  # one of the two ended calls answered within 10 s
    assert today["average_speed_of_answer"] > 0 and today["average_handle_time"] > 1
    assert today["agents"] == {
        "alice": {"rejected": 1, "missed": 0, "busy": 0},
        "carol": {"rejected": 0, "missed": 1, "busy": 0},
    }
    status, body, _ = await stack.request("GET", "/api/queues?since=2999-01-01")
    assert body["queues"][0]["today"]["offered"] == 0
    status, body, _ = await stack.request("GET", "/api/queues?since=noon")
    assert status == 400 and body["message"].startswith("since:")


async def test_queues_live_counts_waiting_calls(stack):
    for agent in ("alice", "bob", "carol"):
        stack.controller.shell.feed(AgentPause(agent, "x"))
    stack.call(caller_number="5550009")
    await stack.until(lambda: stack.controller.engine.calls)
    status, body, _ = await stack.request("GET", "/api/queues")
    live = body["queues"][0]["live"]
    assert live["waiting"] == 1 and live["longest_wait"] > 0 and live["agents"] == {"paused": 3}
    status, text, _ = await stack.request("GET", "/metrics")
    assert 'acd_calls_waiting{queue="support"} 1.0' in text


async def test_agents_list_and_one(stack):
    await two_calls(stack)
    status, body, _ = await stack.request("GET", "/api/agents")
    agents = {a["id"]: a for a in body["agents"]}
    assert list(agents) == ["alice", "bob", "carol"]
    bob = agents["bob"]
    assert (bob["presence"], bob["pause_reason"], bob["calls_taken"], bob["endpoint"]) == (
        "paused",
        "break",
        1,
        "PJSIP/agent2",
    )
    assert bob["last_call_end"] is not None and bob["queues"] == {"support": 0}
    status, alice, _ = await stack.request("GET", "/api/agents/alice", token=ALICE_TOKEN)
    assert status == 200 and alice["id"] == "alice" and alice["pause_reason"] == "lunch"
    status, body, _ = await stack.request("GET", "/api/agents/zed")
    assert status == 404 and body["error"] == "not_found"


async def test_agent_state_changes(stack):
    async def act(agent, action, token=ADMIN, **kw):
        return await stack.request("POST", f"/api/agents/{agent}/{action}", token=token, **kw)

    status, body, _ = await act("alice", "pause", token=ALICE_TOKEN, json={"reason": "lunch"})
    assert status == 200 and (body["presence"], body["pause_reason"]) == ("paused", "lunch")
    status, body, _ = await act("alice", "ready", token=ALICE_TOKEN)
    assert status == 200 and body["presence"] == "available"
    status, body, _ = await act("alice", "logout", token=ALICE_TOKEN)
    assert body["presence"] == "logged_out"
    status, body, _ = await act("alice", "pause")
    assert status == 409 and "log in first" in body["message"]
    status, body, _ = await act("alice", "ready")
    assert status == 409
    status, body, _ = await act("alice", "login")
    assert status == 200 and body["presence"] == "available"
    status, body, _ = await act("bob", "pause", token=ALICE_TOKEN)
    assert status == 403 and body["message"] == "an agent token may only act on its own agent"
    status, body, _ = await act("zed", "pause")
    assert status == 404
    status, body, _ = await act("alice", "dance")
    assert status == 404 and "no such endpoint" in body["message"]
    status, body, _ = await act(
        "alice", "pause", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and body["message"] == "the request body must be a JSON object"
    status, body, _ = await act("alice", "pause", json={"reason": 5})
    assert status == 400 and body["message"].startswith("reason:")
    status, body, _ = await act("alice", "pause", json={"why": "x"})
    assert status == 400 and body["message"] == "unknown field 'why' for pause"
    states = [
        r.data["reason"] for r in stack.records if r.kind == "agent.state" and r.data["agent"] == "alice"
    ]
    assert states[:4] == ["lunch", "available", "logged_out", "available"]
    await stack.writer.flushed()
    status, body, _ = await stack.request("GET", "/api/agents/alice", token=ALICE_TOKEN)
    assert body["presence"] == "available"


async def test_agent_rejects_its_own_offer_from_the_panel(stack):
    stack.controller.shell.feed(AgentPause("bob", "x"))
    stack.controller.shell.feed(AgentPause("alice", "x"))  # only carol (never answers) is free
    call = stack.call(caller_number="5550003")
    await stack.until(lambda: stack.controller.engine.agents["carol"].live_offer)
    offer = stack.controller.engine.agents["carol"].live_offer
    # someone else's offer answers exactly like one that does not exist: ids are guessable
    status, body, _ = await stack.request("POST", f"/api/offers/{offer}/reject", token=BOB_TOKEN)
    unknown = offer.rsplit("-", 1)[0] + "-999"
    status2, body2, _ = await stack.request("POST", f"/api/offers/{unknown}/reject", token=BOB_TOKEN)
    assert (status, body["error"]) == (status2, body2["error"]) == (404, "not_found")
    assert body["message"].replace(offer, "X") == body2["message"].replace(unknown, "X")
    status, body, _ = await stack.request("POST", f"/api/offers/{offer}/accept")
    assert status == 409 and "answering the phone" in body["message"]
    status, body, _ = await stack.request("POST", f"/api/offers/{offer}/reject")
    assert status == 200 and body == {"offer": offer, "state": "ended", "outcome": "rejected"}
    status, body, _ = await stack.request("POST", f"/api/offers/{offer}/reject")
    assert status in (404, 409)
    status, body, _ = await stack.request("POST", f"/api/offers/{offer}/snooze")
    assert status == 404
    ended = [r.data for r in stack.records if r.kind == "offer.ended" and r.data["offer"] == offer]
    assert [(d["outcome"], d["detail"]) for d in ended] == [("rejected", "panel")]
    call.hangup()


async def test_metrics_in_prometheus_format(stack):
    await two_calls(stack)
    status, text, headers = await stack.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for needle in (
        'acd_calls_waiting{queue="support"} 0.0',
        'acd_offers_total{outcome="accepted"} 1.0',
        'acd_offers_total{outcome="rejected"} 1.0',
        'acd_reaction_seconds_bucket{kind="stasis_to_dial",le="0.005"}',
        'acd_reaction_seconds_count{kind="answer_to_bridge"} 1.0',
        "acd_ari_reconnects_total 0.0",
        "acd_ari_connected 1.0",
        'acd_ari_events_dropped_total{reason="unknown"}',
        "acd_store_buffered_records 0.0",
        "acd_store_up 1.0",
        "acd_store_dropped_records_total 0.0",
        'acd_agents{state="paused"} 2.0',
    ):
        assert needle in text, needle
    status, _, _ = await stack.request("GET", "/metrics", token=ALICE_TOKEN)
    assert status == 403


async def test_openapi_describes_every_route(stack):
    status, spec, _ = await stack.request("GET", "/api/openapi.json", token=ALICE_TOKEN)
    assert status == 200 and spec["openapi"].startswith("3.")
    app = stack.services.runner.app
    described = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    for resource in app.router.resources():
        path = resource.canonical
        for route in resource:
            if route.method != "HEAD":
                assert (route.method, path) in described, (route.method, path)


async def test_unknown_paths_and_methods_are_json(stack):
    status, body, _ = await stack.request("GET", "/api/nothing")
    assert status == 404 and body["error"] == "not_found" and "openapi" in body["message"]
    status, body, _ = await stack.request("DELETE", "/api/calls")
    assert status == 405 and body["error"] == "method_not_allowed"


async def test_desktop_offer_accepted_from_the_panel_connects_and_cannot_be_accepted_twice(tmp_path):
    from controller.acd.setup import Acceptance
    from controller.sim import NoAnswer
    from tests.api.conftest import hash_token, make_setup, make_stack, migrated_db

    setup = make_setup({"alice": "agent1", "bob": "agent2"}, acceptance=Acceptance.DESKTOP, ring_timeout=10)
    async with migrated_db("sqlite", tmp_path) as (db, _url, _schema):
        s = await make_stack(
            db,
            setup,
            {"agent1": NoAnswer(), "agent2": NoAnswer()},
            agent_tokens={"alice": hash_token(ALICE_TOKEN), "bob": hash_token(BOB_TOKEN)},
        )
        try:
            s.sim.phones["agent1"].honor_auto_answer = True
            call = s.call(caller_number="5550009")
            await s.until(lambda: s.controller.engine.agents["alice"].live_offer)
            offer = s.controller.engine.agents["alice"].live_offer
            assert not s.sim.phones["agent1"].invites, "desktop: nothing rings before Accept"
            status, body, _ = await s.request("POST", f"/api/offers/{offer}/accept", token=BOB_TOKEN)
            assert status == 404  # not hers: answered like an unknown offer
            status, body, _ = await s.request("POST", f"/api/offers/{offer}/accept", token=ALICE_TOKEN)
            assert status == 200 and body["state"] in ("connecting", "connected")
            await call.wait_for(lambda c: c.bridged_with == "agent1")
            assert s.sim.phones["agent1"].last_invite.auto_answer
            status, body, _ = await s.request("POST", f"/api/offers/{offer}/accept", token=ALICE_TOKEN)
            assert status == 409 and "no longer available" in body["message"]
        finally:
            await s.close()
