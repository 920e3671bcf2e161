"""``acdctl demo`` as a person uses it: sign in to the panel as the demo's human agent, take real offers."""

from __future__ import annotations

import asyncio
import io

from controller.demo import demo
from tests.ci import require_module

require_module("playwright", "pip install -e '.[dev]' (the browser is Debian's chromium)")
from playwright.async_api import expect  # noqa: E402


async def test_a_person_signs_in_to_the_demo_and_takes_and_rejects_offers(browser, shots):
    urls: dict[str, str] = {}
    started, stop = asyncio.Event(), asyncio.Event()

    def ready(found: dict[str, str]) -> None:
        urls.update(found)
        started.set()

    out = io.StringIO()
    options = {"speed": 2, "seed": 3, "agents": 6, "live": False, "http_port": 0}
    task = asyncio.create_task(demo(duration=0, out=out, ready=ready, stop=stop, **options))
    try:
        await asyncio.wait_for(started.wait(), 30)
        assert urls["panel"].startswith(urls["api"] + "/#token=")
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(urls["panel"])
        state = page.get_by_test_id("agent-state")
        await expect(state).to_have_attribute("data-state", "logged_out", timeout=10_000)
        await page.get_by_test_id("state-login").click()
        await expect(state).to_have_attribute("data-state", "ready")
        # the demo's WhatsApp traffic gave this agent conversations, one with Meta's refusals
        await expect(page.get_by_test_id("conversation").first).to_be_visible(timeout=10_000)

        # take the first offer: answer the softphone (answer/confirm queues) or click Accept (vip, desktop)
        card = page.get_by_test_id("offer-card")
        await expect(card).to_be_visible(timeout=45_000)
        await shots(page, "demo-offer")
        if await card.get_attribute("data-acceptance") == "desktop":
            await page.get_by_test_id("offer-accept").click()
        else:
            await expect(page.get_by_test_id("demo-phone")).to_have_attribute("data-state", "ringing")
            await page.get_by_test_id("demo-phone-answer").click()
        await expect(page.get_by_test_id("active-call")).to_be_visible(timeout=10_000)
        await expect(state).to_have_attribute("data-state", "talking")
        await shots(page, "demo-talking")

        # and reject the next one: the card goes and the call moves on
        await expect(card).to_be_visible(timeout=90_000)
        offer_id = await card.get_attribute("data-offer-id")
        await page.get_by_test_id("offer-reject").click()
        await expect(page.locator(f'[data-testid=offer-card][data-offer-id="{offer_id}"]')).to_have_count(0)
        assert not errors, errors
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    narration = out.getvalue()
    assert "  you accepted " in narration and "  you: rejected" in narration, narration[-2000:]
