"""The agent panel in headless Chromium against the real controller, simulator and sidecar.

Each test is one thing an agent does or sees; screenshots go to the test's tmp dir
(``<tmp>/screenshots``) for a person to look at when something fails.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace

from controller.acd.setup import Acceptance, AcdSetup, AgentConfig, Membership, QueueConfig, Strategy
from controller.sim import Decline, NoAnswer
from tests.ci import require_module

require_module("playwright", "pip install -e '.[dev]' (the browser is Debian's chromium)")
from playwright.async_api import expect  # noqa: E402

MARIA = "5511987654321"


def queue_setup(agents: list[tuple[str, str]], acceptance: Acceptance = Acceptance.ANSWER) -> AcdSetup:
    q = replace(
        QueueConfig("support"),
        strategy=Strategy.LINEAR,
        ring_timeout=30,
        acceptance=acceptance,
        wrapup=5,
        max_no_answer=0,
    )
    confs = {a: AgentConfig(a, a.title(), f"PJSIP/{p}", (Membership("support"),)) for a, p in agents}
    return AcdSetup(queues={"support": q}, agents=confs)


async def open_panel(browser, world, agent: str = "alice", width: int = 1280, height: int = 800):
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(world.panel_url(agent))
    await expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "ready")
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "connected")
    assert "token=" not in page.url, "the token must not stay in the address bar"
    return page


async def test_offer_card_shows_who_waits_where_who_had_it_and_a_countdown(browser, world_maker, shots):
    # bob is offered the call first and declines; alice's card must say so
    setup = queue_setup([("bob", "agent2"), ("alice", "agent1")])
    world = await world_maker(
        setup, {"agent2": Decline(after=0.5), "agent1": NoAnswer()}, info_headers=("X-Ticket",), speed=2
    )
    page = await open_panel(browser, world)
    world.stack.call(caller_number=MARIA, caller_name="Maria Souza", headers={"X-Ticket": "4242"})

    card = page.get_by_test_id("offer-card")
    await expect(card).to_be_visible(timeout=10_000)
    await expect(card).to_have_attribute("data-acceptance", "answer")
    await expect(page.get_by_test_id("offer-caller-number")).to_contain_text(MARIA)
    await expect(page.get_by_test_id("offer-caller-name")).to_contain_text("Maria Souza")
    await expect(page.get_by_test_id("offer-queue")).to_contain_text("support")
    previous = page.get_by_test_id("offer-previous-item")
    await expect(previous).to_have_count(1)
    await expect(previous).to_have_attribute("data-agent", "bob")
    await expect(previous).to_have_attribute("data-outcome", "rejected")
    info = page.locator('[data-testid=offer-info-item][data-key="X-Ticket"]')
    await expect(info).to_contain_text("4242")
    call_id = world.stack.controller.engine.offers[await card.get_attribute("data-offer-id")].call_id
    await expect(page.get_by_test_id("offer-call-id")).to_contain_text(call_id)
    await expect(page.get_by_test_id("offer-reject")).to_be_visible()
    await expect(page.get_by_test_id("offer-accept")).to_be_hidden()  # answer mode: the phone accepts

    countdown = page.get_by_test_id("offer-countdown")
    first = float(await countdown.get_attribute("aria-valuenow"))
    assert 0 < first <= 30 / 2 + 1  # 30 s of ring timeout at clock speed 2, in the page's seconds
    await page.wait_for_timeout(1500)
    later = float(await countdown.get_attribute("aria-valuenow"))
    assert later < first, (first, later)
    await shots(page, "offer-card-1280")
    assert not page.errors  # type: ignore[attr-defined]


async def test_reject_on_the_card_rings_the_next_agent(browser, world_maker, shots):
    setup = queue_setup([("alice", "agent1"), ("bob", "agent2")])
    world = await world_maker(setup, {"agent1": NoAnswer(), "agent2": NoAnswer()}, speed=2)
    page = await open_panel(browser, world)
    world.stack.call(caller_number=MARIA)
    await expect(page.get_by_test_id("offer-card")).to_be_visible(timeout=10_000)
    offer_id = await page.get_by_test_id("offer-card").get_attribute("data-offer-id")
    call_id = world.stack.controller.engine.offers[offer_id].call_id
    phone = world.stack.sim.phones["agent1"]
    await world.stack.until(lambda: phone.last_invite is not None)  # the card may show before the INVITE
    alice_invite = phone.last_invite
    assert alice_invite.outcome in ("trying", "ringing")

    await page.get_by_test_id("offer-reject").click()
    await expect(page.get_by_test_id("offer-card")).to_have_count(0)
    await expect(page.get_by_test_id("toast").first).to_be_visible()
    await world.stack.until(lambda: world.stack.sim.phones["agent2"].last_invite is not None)
    await world.stack.until(lambda: alice_invite.outcome == "cancelled")  # her phone stopped ringing
    bob_offer = world.stack.controller.engine.agents["bob"].live_offer
    assert bob_offer is not None
    assert world.stack.controller.engine.offers[bob_offer].call_id == call_id
    await shots(page, "after-reject")
    assert not page.errors  # type: ignore[attr-defined]


async def test_desktop_accept_calls_the_phone_and_connects_the_customer(browser, world_maker, shots):
    setup = queue_setup([("alice", "agent1")], acceptance=Acceptance.DESKTOP)
    world = await world_maker(setup, {"agent1": NoAnswer()}, honor_auto_answer=("agent1",), speed=2)
    page = await open_panel(browser, world)
    caller = world.stack.call(caller_number=MARIA, caller_name="Maria Souza")
    card = page.get_by_test_id("offer-card")
    await expect(card).to_be_visible(timeout=10_000)
    await expect(card).to_have_attribute("data-acceptance", "desktop")
    assert world.stack.sim.phones["agent1"].last_invite is None  # no ringing before Accept
    await shots(page, "desktop-offer")

    await page.get_by_test_id("offer-accept").click()
    await expect(page.get_by_test_id("active-call")).to_be_visible(timeout=10_000)
    await expect(page.get_by_test_id("active-call")).to_contain_text(MARIA)
    await expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "talking")
    invite = world.stack.sim.phones["agent1"].last_invite
    assert invite is not None and invite.auto_answer
    await world.stack.until(lambda: caller.bridged_with == "agent1")
    await shots(page, "desktop-connected")
    assert not page.errors  # type: ignore[attr-defined]


async def _chat_ready(browser, world, wa_id: str):
    page = await open_panel(browser, world)
    conv = page.locator(f'[data-testid=conversation][data-conversation-id="{await _conv_id(world, wa_id)}"]')
    await expect(conv).to_be_visible(timeout=10_000)
    await conv.click()
    await expect(page.get_by_test_id("chat-connection")).to_have_attribute("data-state", "connected")
    return page


async def _conv_id(world, wa_id: str) -> int:
    status, body = await world.api("GET", "/wa/api/conversations")
    assert status == 200
    return next(c["id"] for c in body["conversations"] if c["wa_id"] == wa_id)


async def test_a_131047_failure_shows_on_the_right_message_with_its_explanation(browser, world_maker, shots):
    world = await world_maker(queue_setup([("alice", "agent1")]), {"agent1": NoAnswer()}, whatsapp=True)
    now = time.time()
    await world.customer_writes(MARIA, "Maria Souza", "Oi, meu pedido?", now - 3600, "wamid.IN1")
    page = await _chat_ready(browser, world, MARIA)

    for text in ("Primeira resposta", "Segunda resposta"):
        await page.get_by_test_id("composer-text").fill(text)
        await page.get_by_test_id("composer-send").click()
        await expect(page.get_by_test_id("message").filter(has_text=text)).to_be_visible()
    await world.sidecar.drain()
    _, history = await world.api("GET", f"/wa/api/conversations/{await _conv_id(world, MARIA)}/messages")
    first, second = [m for m in history["messages"] if m["direction"] == "out"]
    assert first["wamid"] and second["wamid"]
    for m in (first, second):
        await world.status(m["wamid"], MARIA, "sent", now)
    await world.status(
        first["wamid"],
        MARIA,
        "failed",
        now + 1,
        error={
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {"details": "Message failed to send because more than 24 hours have passed"},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        },
    )

    failed = page.locator(f'[data-testid=message][data-message-id="{first["id"]}"]')
    await expect(failed).to_have_attribute("data-status", "failed", timeout=10_000)
    error = failed.get_by_test_id("message-error")
    await expect(error).to_have_attribute("data-code", "131047")
    await expect(error.get_by_test_id("message-error-explanation")).to_contain_text("24 horas")
    await expect(error.get_by_test_id("message-error-action")).not_to_be_empty()
    other = page.locator(f'[data-testid=message][data-message-id="{second["id"]}"]')
    await expect(other).to_have_attribute("data-status", "sent")
    await expect(other.get_by_test_id("message-error")).to_have_count(0)
    await error.get_by_test_id("message-error-toggle").click()
    await expect(error.get_by_test_id("message-error-details")).to_contain_text("131047")
    await shots(page, "failed-131047-pt-BR")

    await page.get_by_test_id("lang-select").select_option("en")
    await expect(error.get_by_test_id("message-error-explanation")).to_contain_text(re.compile("24.hour"))
    await shots(page, "failed-131047-en")
    assert not page.errors  # type: ignore[attr-defined]


async def test_a_late_message_is_inserted_in_place(browser, world_maker, shots):
    world = await world_maker(queue_setup([("alice", "agent1")]), {"agent1": NoAnswer()}, whatsapp=True)
    now = time.time()
    await world.customer_writes(MARIA, "Maria Souza", "primeira", now - 600, "wamid.A1")
    await world.customer_writes(MARIA, "Maria Souza", "terceira", now - 60, "wamid.A3")
    page = await _chat_ready(browser, world, MARIA)
    bodies = page.get_by_test_id("message-list").get_by_test_id("message-body")
    await expect(bodies).to_have_text(["primeira", "terceira"])

    # Meta delivers the one written in between late, and twice
    await world.customer_writes(MARIA, "Maria Souza", "segunda", now - 300, "wamid.A2")
    await world.customer_writes(MARIA, "Maria Souza", "segunda", now - 300, "wamid.A2")
    await expect(bodies).to_have_text(["primeira", "segunda", "terceira"])
    await shots(page, "late-message")
    assert not page.errors  # type: ignore[attr-defined]


async def test_closed_window_offers_templates_and_the_page_fits_a_phone_screen(browser, world_maker, shots):
    world = await world_maker(queue_setup([("alice", "agent1")]), {"agent1": NoAnswer()}, whatsapp=True)
    await world.customer_writes(MARIA, "Maria Souza", "ontem", time.time() - 26 * 3600, "wamid.OLD")
    page = await browser.new_page(viewport={"width": 390, "height": 844})
    await page.goto(world.panel_url("alice"))
    conv = page.get_by_test_id("conversation")
    await expect(conv).to_have_attribute("data-window", "closed", timeout=10_000)
    await conv.click()
    await expect(page.get_by_test_id("composer-window-closed")).to_be_visible()
    await expect(page.get_by_test_id("composer-send")).to_be_disabled()
    await page.get_by_test_id("template-select").select_option(index=1)
    await page.get_by_test_id("template-param").first.fill("A-1234")
    await page.get_by_test_id("template-send").click()
    await expect(page.get_by_test_id("message").filter(has_text="atualizacao_pedido")).to_be_visible()
    await world.sidecar.drain()
    assert world.meta.sent and world.meta.sent[-1]["type"] == "template"
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    await shots(page, "narrow-window-closed")


async def test_the_page_says_when_it_is_disconnected_and_recovers(browser, world_maker):
    world = await world_maker(queue_setup([("alice", "agent1")]), {"agent1": NoAnswer()}, speed=2)
    page = await open_panel(browser, world)
    # remember every state the indicator goes through
    await page.evaluate(
        """() => { window.__states = [];
        const el = document.querySelector('[data-testid=connection]');
        new MutationObserver(() => window.__states.push(el.dataset.state))
          .observe(el, {attributes: true, attributeFilter: ['data-state']}); }"""
    )
    hub = world.stack.services.panel
    for feeds in list(hub.feeds.values()):
        for feed in list(feeds):
            hub._end(feed)  # the server drops the socket, as a restart or a network blip would
    # polled from here: the page's Content-Security-Policy forbids wait_for_function's eval
    states: list[str] = []
    async with asyncio.timeout(10):
        while not (states and states[-1] == "connected"):
            await asyncio.sleep(0.05)
            states = await page.evaluate("window.__states")
    assert states[0] in ("connecting", "disconnected"), states  # the agent was told
    # and it is live again: an offer still arrives
    world.stack.call(caller_number=MARIA)
    await expect(page.get_by_test_id("offer-card")).to_be_visible(timeout=10_000)


async def test_keyboard_only_sign_in_and_reject(browser, world_maker, shots):
    setup = queue_setup([("alice", "agent1"), ("bob", "agent2")])
    world = await world_maker(setup, {"agent1": NoAnswer(), "agent2": NoAnswer()}, speed=2)
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(world.url + "/")
    token = page.locator("#token")
    await expect(token).to_be_visible()
    await expect(page.get_by_label(re.compile("Token"))).to_have_count(1)  # the field has a label
    await token.focus()
    await page.keyboard.type("not-a-real-token")
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("login-error")).to_be_visible()
    await token.fill("")
    await page.keyboard.type("alice-e2e-token")
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "ready")

    world.stack.call(caller_number=MARIA)
    card = page.get_by_test_id("offer-card")
    await expect(card).to_be_visible(timeout=10_000)
    # focus moved into the card: Tab reaches Reject without the mouse
    for _ in range(6):
        focused = await page.evaluate("document.activeElement && document.activeElement.dataset.testid")
        if focused == "offer-reject":
            break
        await page.keyboard.press("Tab")
    assert focused == "offer-reject", focused
    await page.keyboard.press("Enter")
    await expect(card).to_have_count(0)
    await world.stack.until(lambda: world.stack.sim.phones["agent2"].last_invite is not None)
