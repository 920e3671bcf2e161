"""The supervisor wallboard in headless Chromium against the real controller and simulator.

A waiting caller appears and goes, charts are drawn from known history rows, and a pause given
from the wallboard (by keyboard) reaches the agent's own panel. Screenshots: ``<tmp>/screenshots``.
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, time, timedelta

import pytest

from controller.demo import demo
from controller.sim import NoAnswer
from tests.stack import ADMIN
from tests.wallboard.conftest import SALES_SUP, SUPERVISORS, floor_setup
from tests.wallboard.test_charts_data import DAY, _load

pytest.importorskip("playwright")
from playwright.async_api import expect  # noqa: E402

PHONES = {"agent1": NoAnswer(), "agent2": NoAnswer(), "agent3": NoAnswer()}


async def make_floor(world_maker):
    world = await world_maker(floor_setup(), dict(PHONES), speed=2)
    world.stack.services.api_auth.set_supervisors(SUPERVISORS)
    world.stack.sim.dialplan["101"] = ("acd", ["support"])
    world.stack.sim.dialplan["102"] = ("acd", ["sales"])
    return world


async def open_wallboard(browser, world, token: str, width: int = 1920, height: int = 1080):
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(f"{world.url}/wallboard#token={token}")
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "connected")
    assert "token=" not in page.url, "the token must not stay in the address bar"
    return page


async def test_waiting_caller_appears_and_disappears(browser, world_maker, shots):
    world = await make_floor(world_maker)
    page = await open_wallboard(browser, world, SALES_SUP)
    await expect(page.locator("[data-testid=queue]")).to_have_count(1)  # sales only
    sales = page.locator('[data-testid=queue][data-queue="sales"]')
    await expect(sales.get_by_test_id("waiting-count")).to_have_text("0")

    caller = world.stack.sim.place_call("102", caller_number="5511911112222", caller_name="Wanda Waits")
    item = sales.get_by_test_id("caller")
    await expect(item).to_have_count(1, timeout=10_000)
    await expect(item).to_contain_text("Wanda Waits")
    await expect(sales.get_by_test_id("waiting-count")).to_have_text("1")
    await expect(sales.get_by_test_id("ring")).to_have_count(1)  # a sales agent rings for her
    await expect(sales.get_by_test_id("longest-wait")).to_have_attribute("data-threshold", "ok")
    await shots(page, "wallboard-waiting-1920")
    await page.set_viewport_size({"width": 1280, "height": 720})
    await shots(page, "wallboard-waiting-laptop")

    caller.hangup()
    await expect(item).to_have_count(0, timeout=10_000)
    await expect(sales.get_by_test_id("waiting-count")).to_have_text("0")
    await expect(sales.get_by_test_id("ring")).to_have_count(0)
    assert not page.errors, page.errors


async def test_charts_are_drawn_from_known_history(browser, world_maker, shots):
    world = await make_floor(world_maker)
    clock = world.stack.controller.clock
    now = datetime.fromtimestamp(clock.to_wall(clock.now()), UTC)
    shift = datetime.combine(now.date(), DAY.timetz()) - DAY - timedelta(hours=8)
    await _load(world.stack.services.db, shift)  # today from midnight: 3 sales calls, then 2 more
    # "now" at the day's end, so every known row (midnight to 01:00) is in the past whatever the hour
    world.stack.services.wallboard.history_now = lambda: datetime.combine(now.date(), time(23, 59), UTC)
    page = await open_wallboard(browser, world, ADMIN)

    volume = page.get_by_test_id("chart-volume")
    first = volume.locator('rect[data-series="offered"][data-index="0"]')
    await expect(first).to_have_attribute("data-value", "3", timeout=10_000)
    await expect(volume.locator('rect[data-series="abandoned"][data-index="0"]')).to_have_attribute(
        "data-value", "1"
    )
    await expect(volume.locator('rect[data-series="overflowed"][data-index="2"]')).to_have_attribute(
        "data-value", "1"
    )
    assert float(await first.get_attribute("height")) > 0
    sl = page.get_by_test_id("chart-sl")
    await expect(sl.locator('line[data-series="target"]')).to_have_attribute("data-value", "0.8")
    await expect(sl.locator('polyline[data-series="service_level"]')).to_have_count(1)
    outcomes = page.get_by_test_id("chart-outcomes")
    await expect(outcomes.locator('rect[data-agent="alice"][data-series="rejected"]')).to_have_attribute(
        "data-value", "1"
    )
    await expect(outcomes.locator('rect[data-agent="carol"][data-series="unreachable"]')).to_have_count(1)
    # 2 of 5 calls within the 10 s target: service level far under 80 % is coloured as bad
    sales_sl = page.locator('[data-testid=queue][data-queue="sales"] [data-testid=service-level]')
    await expect(sales_sl).to_have_text("25%")
    await expect(sales_sl).to_have_attribute("data-threshold", "bad")
    alice = page.locator('[data-testid=agent][data-agent="alice"]')
    await expect(alice.get_by_test_id("rejected")).to_have_text("1")
    await expect(alice.get_by_test_id("missed")).to_have_text("1")
    # choosing one queue redraws the volume chart for it
    await page.get_by_test_id("chart-queue").select_option("support")
    await expect(volume.locator('rect[data-series="offered"][data-value="1"]')).to_have_count(1)
    await expect(volume.locator('rect[data-series="offered"][data-value="3"]')).to_have_count(0)
    # and in English
    await page.get_by_test_id("lang-select").select_option("en")
    await expect(page.locator("#charts-heading")).to_have_text("Today")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(sales_sl).to_have_text("25%")
    await shots(page, "wallboard-charts")
    assert not page.errors, page.errors


async def test_pausing_an_agent_from_the_wallboard_reaches_her_panel(browser, world_maker, shots):
    world = await make_floor(world_maker)
    panel = await browser.new_page(viewport={"width": 1280, "height": 800})
    await panel.goto(world.panel_url("alice"))
    await expect(panel.get_by_test_id("agent-state")).to_have_attribute("data-state", "ready")

    page = await open_wallboard(browser, world, SALES_SUP, width=1366, height=768)
    row = page.locator('[data-testid=agent][data-agent="alice"]')
    await expect(row.get_by_test_id("agent-state")).to_contain_text("Disponível")  # pt-BR by default
    # by keyboard: focus the button, Enter opens the dialog, type the reason, Enter confirms
    await row.get_by_test_id("action-pause").focus()
    await page.keyboard.press("Enter")
    reason = page.get_by_test_id("pause-reason")
    await expect(reason).to_be_focused()
    await reason.type("coaching")
    await page.keyboard.press("Enter")

    panel_state = panel.get_by_test_id("agent-state")
    await expect(panel_state).to_have_attribute("data-state", "paused", timeout=10_000)
    await expect(panel.get_by_text("coaching")).to_be_visible()
    await expect(row.locator("[data-state=paused]")).to_be_visible()
    await expect(row).to_contain_text("coaching")
    notes = [n for n in world.stack.notifies if n.kind == "agent.state" and n.agent_id == "alice"]
    assert notes[-1].data["by"] == "supervisor:sam"
    await shots(page, "wallboard-paused")
    await shots(panel, "panel-paused-by-supervisor")

    # and make her ready again from the wallboard
    await row.get_by_test_id("action-ready").click()
    await expect(panel_state).to_have_attribute("data-state", "ready", timeout=10_000)
    assert not page.errors, page.errors


async def test_the_demo_prints_a_wallboard_link_that_shows_the_floor(browser, shots):
    urls: dict[str, str] = {}
    started, stop = asyncio.Event(), asyncio.Event()

    def ready(found: dict[str, str]) -> None:
        urls.update(found)
        started.set()

    out = io.StringIO()
    options = {"speed": 2, "seed": 3, "agents": 6, "live": False, "http_port": 0, "whatsapp": False}
    task = asyncio.create_task(demo(duration=0, out=out, ready=ready, stop=stop, **options))
    try:
        await asyncio.wait_for(started.wait(), 30)
        assert f"Supervisor wallboard: {urls['wallboard']}" in out.getvalue()
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(urls["wallboard"])
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "connected")
        await expect(page.get_by_test_id("viewer")).to_contain_text("Administrador")
        await expect(page.locator("[data-testid=queue]").first).to_be_visible()
        await expect(page.locator("[data-testid=agent]").first).to_be_visible()
        # the demo's callers come and go: one is seen waiting or ringing
        busy = page.locator("[data-testid=caller], [data-testid=ring]")
        await expect(busy.first).to_be_visible(timeout=45_000)
        await shots(page, "demo-wallboard")
        assert not errors, errors
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
