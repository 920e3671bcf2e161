"""Scrolling back through a long WhatsApp chat in the panel: older pages load as the agent scrolls
up, in order, without duplicates, without moving what the agent is reading; a send whose outcome
is unknown says what to do."""

from __future__ import annotations

import time

import httpx
import pytest

from controller.sim import NoAnswer
from tests.e2e.test_panel_browser import MARIA, _chat_ready, _conv_id, queue_setup

pytest.importorskip("playwright")
from playwright.async_api import expect  # noqa: E402

N = 250  # the panel loads 100 per page: three pages


def _top_of(message_id: str) -> str:
    """JS: the message's top relative to the list's top (what the agent sees where)."""
    return (
        "el => { const m = el.querySelector('[data-message-id=\"" + message_id + "\"]');"
        " return m.getBoundingClientRect().top - el.getBoundingClientRect().top; }"
    )


async def test_scrolling_up_reaches_the_first_message_in_order_without_jumps(browser, world_maker, shots):
    world = await world_maker(queue_setup([("alice", "agent1")]), {"agent1": NoAnswer()}, whatsapp=True)
    start = int(time.time()) - 3600
    await world.webhook(
        {
            "contacts": [{"profile": {"name": "Maria Souza"}, "wa_id": MARIA}],
            "messages": [
                {
                    "from": MARIA,
                    "id": f"wamid.H{i:04d}",
                    "timestamp": str(start + 10 * i),
                    "type": "text",
                    "text": {"body": f"m{i}"},
                }
                for i in range(N)
            ],
        }
    )
    page = await _chat_ready(browser, world, MARIA)
    listing = page.get_by_test_id("message-list")
    messages = listing.get_by_test_id("message")
    await expect(messages).to_have_count(100)
    await expect(messages.last).to_contain_text(f"m{N - 1}")
    await expect(page.get_by_test_id("messages-older")).to_have_attribute("data-state", "more")

    # A late message older than every page shown arrives on the stream: it waits for its page
    # instead of showing above a gap.
    await world.customer_writes(MARIA, "Maria Souza", "late", start + 105, "wamid.LATE")
    await world.customer_writes(MARIA, "Maria Souza", "newest", start + 10 * N, "wamid.NEWEST")
    await expect(messages.last).to_contain_text("newest")
    await expect(messages).to_have_count(101)
    await expect(messages.first).to_contain_text("m150")

    _, history = await world.api("GET", f"/wa/api/conversations/{await _conv_id(world, MARIA)}/messages")
    reading = next(m["id"] for m in history["messages"] if m["body"] == "m150")
    # Scroll to the top and measure in the same task: the page loads on the scroll event, later.
    before = await listing.evaluate(_top_of(reading).replace("el => {", "el => { el.scrollTop = 0;"))
    await expect(messages).to_have_count(201)
    after = await listing.evaluate(_top_of(reading))
    assert abs(after - before) <= 2, f"the view jumped: m150 was at {before}px, now {after}px"
    await shots(page, "history-second-page")

    await listing.evaluate("el => { el.scrollTop = 0; }")
    await expect(messages).to_have_count(N + 2)
    await expect(page.get_by_test_id("messages-older")).to_have_attribute("data-state", "start")
    bodies = await listing.get_by_test_id("message-body").all_text_contents()
    expected = [f"m{i}" for i in range(N)]
    expected.insert(11, "late")  # between m10 (start + 100) and m11 (start + 110)
    assert bodies == [*expected, "newest"]
    ids = await messages.evaluate_all("els => els.map(e => e.dataset.messageId)")
    assert len(ids) == len(set(ids))
    await shots(page, "history-start")
    assert not page.errors  # type: ignore[attr-defined]


async def test_an_unknown_send_outcome_tells_the_agent_what_to_do(browser, world_maker, shots):
    world = await world_maker(queue_setup([("alice", "agent1")]), {"agent1": NoAnswer()}, whatsapp=True)
    await world.customer_writes(MARIA, "Maria Souza", "Oi?", time.time() - 60, "wamid.U1")
    page = await _chat_ready(browser, world, MARIA)
    world.meta.fail_with = httpx.ReadTimeout("Meta took the request and never answered")
    await page.get_by_test_id("composer-text").fill("Resposta")
    await page.get_by_test_id("composer-send").click()
    bubble = page.get_by_test_id("message").filter(has_text="Resposta")
    await expect(bubble).to_have_attribute("data-status", "unknown", timeout=10_000)
    notice = bubble.get_by_test_id("message-notice")
    await expect(notice).to_contain_text("Resultado do envio desconhecido")
    await expect(notice).to_contain_text("pode receber duas vezes")
    await expect(bubble.locator(".tick-unknown")).to_have_attribute("aria-label", "Resultado desconhecido")
    await shots(page, "unknown-pt-BR")
    await page.get_by_test_id("lang-select").select_option("en")
    await expect(notice).to_contain_text("Send outcome unknown")
    await expect(notice).to_contain_text("may get it twice")
    assert len(world.meta.sent) == 1  # never resent
    assert not page.errors  # type: ignore[attr-defined]
