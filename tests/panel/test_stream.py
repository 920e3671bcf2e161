"""The panel's API side: the agent stream, offer actions and their races, CRM, SIP headers, the page."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controller.acd.setup import Acceptance, AcdSetup, AgentConfig, Membership, QueueConfig, Strategy
from controller.api.auth import hash_token
from controller.sim import Answer, NoAnswer
from tests.dbkit import migrated_db
from tests.stack import make_stack

TOKENS = {"alice": "alice-token-1234", "bob": "bob-token-1234", "carol": "carol-token-1234"}


def setup_for(acceptance: Acceptance = Acceptance.ANSWER, ring_timeout: float = 60) -> AcdSetup:
    q = replace(
        QueueConfig("support"),
        strategy=Strategy.LINEAR,
        ring_timeout=ring_timeout,
        acceptance=acceptance,
        wrapup=40,
        max_no_answer=0,
        reject_delay=0,
    )
    agents = {
        a: AgentConfig(a, a.title(), f"PJSIP/{phone}", (Membership("support"),))
        for a, phone in (("alice", "agent1"), ("bob", "agent2"), ("carol", "agent3"))
    }
    return AcdSetup(queues={"support": q}, agents=agents)


@pytest.fixture
async def make(tmp_path):
    stacks = []

    async def build(setup: AcdSetup | None = None, phones: dict | None = None, **kw: Any):
        db_cm = migrated_db("sqlite", tmp_path / f"s{len(stacks)}")
        db, _url, _schema = await db_cm.__aenter__()
        phones = phones or {"agent1": NoAnswer(), "agent2": NoAnswer(), "agent3": NoAnswer()}
        tokens = {a: hash_token(t) for a, t in TOKENS.items()}
        s = await make_stack(db, setup or setup_for(), phones, agent_tokens=tokens, **kw)
        stacks.append((s, db_cm))
        return s

    yield build
    for s, db_cm in stacks:
        await s.close()
        await db_cm.__aexit__(None, None, None)


class Page:
    """One panel connection, as the browser has it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict] = []

    async def next(self, pred=lambda f: True, timeout: float = 10.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                frame = json.loads(msg.data)
                self.frames.append(frame)
                if pred(frame):
                    return frame


async def connect(stack, agent: str, token: str | None = None, **headers: str) -> Page:
    token = TOKENS[agent] if token is None else token
    ws = await stack.http.ws_connect(
        f"{stack.services.url}/api/agents/{agent}/stream?token={token}", headers=headers
    )
    return Page(ws)


def offer_frame(f: dict) -> bool:
    return f["type"] == "offer"


async def test_snapshot_then_offer_card_with_everything_the_agent_needs(make):
    stack = await make(info_headers=("X-Ticket", "X-Customer-Id"))
    page = await connect(stack, "alice")
    snap = await page.next()
    assert snap["type"] == "snapshot" and snap["seq"] == 1 and snap["server_time"].endswith("Z")
    assert snap["agent"]["id"] == "alice" and snap["agent"]["state"] == "ready" and snap["offer"] is None

    stack.call(caller_number="5511987654321", caller_name="Maria Souza", headers={"X-Ticket": "42"})
    frame = await page.next(offer_frame)
    card = frame["offer"]
    assert card["caller_number"] == "5511987654321" and card["caller_name"] == "Maria Souza"
    assert card["queue"] == "support" and card["acceptance"] == "answer" and card["state"] == "ringing"
    assert card["info"] == {"X-Ticket": "42"}  # the header the INVITE did not carry is left out
    assert card["previous_offers"] == [] and card["ring_timeout"] == 60
    assert card["crm"]["status"] == "off"
    assert card["started_at"] < card["expires_at"] and card["arrived_at"] <= card["started_at"]
    # the agent frame says ringing too, and the seq grows by one per frame
    await page.next(lambda f: f["type"] == "agent" and f["agent"]["state"] == "ringing")
    assert [f["seq"] for f in page.frames] == list(range(1, len(page.frames) + 1))


async def test_reject_on_the_card_rings_the_next_agent_and_says_who_had_it(make):
    stack = await make()
    alice, bob = await connect(stack, "alice"), await connect(stack, "bob")
    await alice.next(), await bob.next()
    stack.call()
    card = (await alice.next(offer_frame))["offer"]
    phone = stack.sim.phones["agent1"]
    await stack.until(lambda: phone.last_invite is not None)  # ringing (the card can come first)

    status, body, _ = await stack.request("POST", f"/api/offers/{card['id']}/reject", token=TOKENS["alice"])
    assert status == 200 and body["outcome"] == "rejected"
    ended = await alice.next(lambda f: f["type"] == "offer_ended")
    assert ended["offer_id"] == card["id"] and ended["outcome"] == "rejected"
    bobs = (await bob.next(offer_frame))["offer"]
    assert bobs["call_id"] == card["call_id"]
    assert bobs["previous_offers"] == [{"agent": "alice", "outcome": "rejected"}]
    # alice's phone stopped ringing: the controller cancelled her leg
    invite = stack.sim.phones["agent1"].last_invite
    await stack.until(lambda: invite.outcome == "cancelled")


async def test_offer_actions_refuse_other_agents_and_stale_offers(make):
    stack = await make()
    stack.call()
    await stack.until(lambda: stack.controller.engine.agents["alice"].live_offer)
    offer_id = stack.controller.engine.agents["alice"].live_offer

    status, body, _ = await stack.request("POST", f"/api/offers/{offer_id}/reject", token=TOKENS["bob"])
    assert status == 404 and body["error"] == "not_found"  # not hers: answered like an unknown offer
    status, body, _ = await stack.request("POST", f"/api/offers/{offer_id}/accept", token=TOKENS["alice"])
    assert status == 409 and "answering the phone" in body["message"]  # answer mode: the phone decides

    status, _, _ = await stack.request("POST", f"/api/offers/{offer_id}/reject", token=TOKENS["alice"])
    assert status == 200
    status, body, _ = await stack.request("POST", f"/api/offers/{offer_id}/reject", token=TOKENS["alice"])
    assert status == 409 and "no longer available" in body["message"] and "rejected" in body["message"]
    status, body, _ = await stack.request("POST", "/api/offers/nope-1/accept", token=TOKENS["alice"])
    assert status == 404 and "no longer available" in body["message"]


async def test_the_stream_is_only_for_its_own_agent(make):
    stack = await make()
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await connect(stack, "alice", token=TOKENS["bob"])
    assert info.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await connect(stack, "alice", token="wrong-token")
    assert info.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await connect(stack, "alice", Origin="https://evil.example")
    assert info.value.status == 403
    page = await connect(stack, "alice", Origin=stack.services.url)  # the panel itself
    assert (await page.next())["type"] == "snapshot"


async def test_desktop_accept_calls_the_phone_and_connects_the_customer(make):
    stack = await make(
        setup_for(Acceptance.DESKTOP),
        {"agent1": NoAnswer(), "agent2": NoAnswer(), "agent3": NoAnswer()},
        honor_auto_answer=("agent1",),
    )
    page = await connect(stack, "alice")
    await page.next()
    caller = stack.call()
    card = (await page.next(offer_frame))["offer"]
    assert card["acceptance"] == "desktop"
    assert stack.sim.phones["agent1"].last_invite is None  # the phone does not ring before Accept

    status, body, _ = await stack.request("POST", f"/api/offers/{card['id']}/accept", token=TOKENS["alice"])
    assert status == 200 and body["state"] == "connecting"
    call = await page.next(lambda f: f["type"] == "call" and f["call"] is not None)
    assert call["call"]["id"] == card["call_id"]
    ended = [f for f in page.frames if f["type"] == "offer_ended"]
    assert [(f["offer_id"], f["outcome"]) for f in ended] == [(card["id"], "accepted")]
    invite = stack.sim.phones["agent1"].last_invite
    assert invite.auto_answer and invite.outcome == "answered"
    await stack.until(lambda: caller.bridged_with == "agent1")
    # a second Accept of the same offer is refused clearly
    status, body, _ = await stack.request("POST", f"/api/offers/{card['id']}/accept", token=TOKENS["alice"])
    assert status == 409 and "no longer available" in body["message"]


async def test_offer_expiring_while_the_agent_clicks_is_no_longer_available(make):
    stack = await make(setup_for(Acceptance.DESKTOP, ring_timeout=2))
    page = await connect(stack, "alice")
    await page.next()
    stack.call()
    card = (await page.next(offer_frame))["offer"]
    ended = await page.next(lambda f: f["type"] == "offer_ended")
    assert ended["outcome"] == "no_answer"
    status, body, _ = await stack.request("POST", f"/api/offers/{card['id']}/accept", token=TOKENS["alice"])
    assert status == 409 and "no longer available" in body["message"] and "no_answer" in body["message"]
    assert stack.sim.phones["agent1"].last_invite is None  # the late click rang nothing


async def test_reconnect_gets_a_fresh_snapshot_with_what_happened_meanwhile(make):
    stack = await make(phones={"agent1": Answer(after=0.2), "agent2": NoAnswer(), "agent3": NoAnswer()})
    page = await connect(stack, "alice")
    assert (await page.next())["offer"] is None
    await page.ws.close()
    stack.call()  # alice takes it while her page is closed
    await stack.until(lambda: stack.controller.engine.agents["alice"].call is not None)
    page = await connect(stack, "alice")
    snap = await page.next()
    assert snap["type"] == "snapshot" and snap["seq"] == 1
    assert snap["agent"]["state"] == "talking" and snap["call"]["caller_number"] == "5551234"
    assert snap["offer"] is None


async def test_wrapup_countdown_and_pause_reason_in_the_agent_view(make):
    stack = await make(phones={"agent1": Answer(after=0.2, hangup_after=1), "agent2": NoAnswer()})
    page = await connect(stack, "alice")
    await page.next()
    stack.call()
    frame = await page.next(lambda f: f["type"] == "agent" and f["agent"]["state"] == "wrapup")
    assert frame["agent"]["wrapup_until"] > frame["server_time"]
    status, view, _ = await stack.request(
        "POST", "/api/agents/alice/pause", token=TOKENS["alice"], json={"reason": "Almoço"}
    )
    assert status == 200 and view["state"] == "paused" and view["pause_reason"] == "Almoço"
    frame = await page.next(lambda f: f["type"] == "agent" and f["agent"]["state"] == "paused")
    assert frame["agent"]["pause_reason"] == "Almoço"


async def test_crm_lookup_fills_the_card_and_a_slow_crm_only_leaves_a_reason(make, aiohttp_server_factory):
    slow = asyncio.Event()

    async def crm(request: web.Request) -> web.Response:
        if request.query["n"] == "5550000":
            await slow.wait()  # never answers in time
        return web.json_response({"customer": "ACME", "plan": "Fibra", "vip": True, "nested": {"x": 1}})

    base = await aiohttp_server_factory(crm)
    # 1 s (wall): enough for the answering CRM on a loaded machine; the offer rings 60 s / 20
    stack = await make(crm_url=base + "/lookup?n={caller_number}", crm_timeout=1.0)
    page = await connect(stack, "alice")
    await page.next()
    stack.call()
    card = (await page.next(offer_frame))["offer"]
    assert card["crm"]["status"] == "pending"
    card = (await page.next(lambda f: offer_frame(f) and f["offer"]["crm"]["status"] != "pending"))["offer"]
    data = {"customer": "ACME", "plan": "Fibra", "vip": "yes"}  # nested objects are left out
    assert card["crm"] == {"status": "ok", "data": data, "error": None}

    status, _, _ = await stack.request("POST", f"/api/offers/{card['id']}/reject", token=TOKENS["alice"])
    assert status == 200
    stack.call(caller_number="5550000")
    card = (await page.next(lambda f: offer_frame(f) and f["offer"]["caller_number"] == "5550000"))["offer"]
    card = (await page.next(lambda f: offer_frame(f) and f["offer"]["crm"]["status"] != "pending"))["offer"]
    assert card["crm"]["status"] == "error" and "1 s" in card["crm"]["error"]
    assert card["state"] == "ringing"  # the call went on regardless
    slow.set()
    status, text, _ = await stack.request("GET", "/metrics")
    assert status == 200
    assert 'acd_crm_lookups_total{result="ok"} 1.0' in text
    assert 'acd_crm_lookups_total{result="timeout"} 1.0' in text
    assert "acd_panel_connections 1.0" in text


async def test_caller_leaving_while_headers_are_read_is_never_queued(make):
    stack = await make(info_headers=("X-Ticket",))
    gate = asyncio.Event()
    real = stack.controller.client.get_variable

    async def slow_get_variable(channel_id: str, variable: str):
        await gate.wait()
        return await real(channel_id, variable)

    stack.controller.client.get_variable = slow_get_variable  # type: ignore[method-assign]
    caller = stack.call(headers={"X-Ticket": "7"})
    await stack.until(lambda: caller.channel_id and caller.channel_id in stack.controller.shell.calls)
    caller.hangup()
    await stack.until(
        lambda: (
            stack.controller.shell.calls.get(caller.channel_id) is None
            or stack.controller.shell.calls[caller.channel_id].gone
        )
    )
    gate.set()
    await stack.until(lambda: stack.controller.shell.stats["left_before_queued"] == 1)
    assert caller.channel_id not in stack.controller.engine.calls
    assert stack.sim.phones["agent1"].last_invite is None  # nobody was rung for a caller who left


async def test_the_page_and_its_config_are_served_with_a_strict_policy(make):
    stack = await make(panel_whatsapp_url="http://127.0.0.1:8081")
    status, html, headers = await stack.request("GET", "/", token=None)
    assert status == 200 and "<html" in html and "/panel/panel.js" in html
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "http://127.0.0.1:8081" in csp and "ws://127.0.0.1:8081" in csp
    status, cfg, _ = await stack.request("GET", "/panel/config.json", token=None)
    assert status == 200
    assert cfg == {"whatsapp_url": "http://127.0.0.1:8081", "language": "pt-BR", "demo": False}
    status, _, _ = await stack.request("GET", "/panel/..%2Fapp.py", token=None)
    assert status == 404
    status, me, _ = await stack.request("GET", "/api/me", token=TOKENS["bob"])
    assert status == 200 and me == {"role": "agent", "agent_id": "bob", "name": "Bob"}


async def test_double_click_accept_connects_once_and_refuses_the_second(make):
    stack = await make(setup_for(Acceptance.DESKTOP), honor_auto_answer=("agent1",))
    stack.call()
    await stack.until(lambda: stack.controller.engine.agents["alice"].live_offer)
    offer_id = stack.controller.engine.agents["alice"].live_offer
    path = f"/api/offers/{offer_id}/accept"
    first, second = await asyncio.gather(
        stack.request("POST", path, token=TOKENS["alice"]), stack.request("POST", path, token=TOKENS["alice"])
    )
    assert sorted([first[0], second[0]]) == [200, 409]
    await stack.until(lambda: stack.controller.engine.agents["alice"].call is not None)
    assert len(stack.sim.phones["agent1"].invites) == 1  # the phone was called once


async def test_caller_hanging_up_before_the_click_makes_accept_say_no_longer_available(make):
    stack = await make(setup_for(Acceptance.DESKTOP), honor_auto_answer=("agent1",))
    page = await connect(stack, "alice")
    await page.next()
    caller = stack.call()
    card = (await page.next(offer_frame))["offer"]
    caller.hangup()
    ended = await page.next(lambda f: f["type"] == "offer_ended")
    assert ended["outcome"] == "canceled"
    status, body, _ = await stack.request("POST", f"/api/offers/{card['id']}/accept", token=TOKENS["alice"])
    assert status in (404, 409) and "no longer available" in body["message"]
    assert stack.sim.phones["agent1"].last_invite is None  # nobody's phone rang for a caller who left


async def test_end_of_wrapup_reaches_the_page_without_any_other_event(make):
    stack = await make(phones={"agent1": Answer(after=0.2, hangup_after=1), "agent2": NoAnswer()})
    page = await connect(stack, "alice")
    await page.next()
    stack.call()
    await page.next(lambda f: f["type"] == "agent" and f["agent"]["state"] == "wrapup")
    # 40 s of wrap-up at clock speed 20: the 1 s tick notices it ended
    frame = await page.next(lambda f: f["type"] == "agent", timeout=10)
    assert frame["agent"]["state"] == "ready" and frame["agent"]["wrapup_until"] is None
