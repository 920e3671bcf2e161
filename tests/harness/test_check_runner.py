"""The check runner against fake scenarios and a fake ARI: table, exit code, cleanup, leftovers."""

import asyncio

from controller.harness.check import (
    SCENARIOS,
    Failed,
    Skipped,
    exit_code,
    format_results,
    left_behind,
    offer_queue,
    run_scenarios,
)
from controller.harness.ua import HarnessError


async def passes(ctx):
    ctx.append("pass")
    return {"INVITE->agent INVITE": 0.004, "ring before next": 8.02}


async def fails(ctx):
    raise Failed("next agent never rang")


async def skips(ctx):
    raise Skipped("no confirm-mode queue")


async def crashes(ctx):
    raise KeyError("boom")


async def sip_timeout(ctx):
    raise HarnessError("agents: no INVITE at alice within 18 s\nworker stderr")


async def hangs(ctx):
    await asyncio.Event().wait()


async def test_table_exit_code_and_cleanup_after_every_scenario():
    ctx, cleaned = [], []

    async def cleanup():
        cleaned.append(True)

    async def no_channels():
        return []

    scenarios = [("ok", passes), ("bad", fails), ("n/a", skips), ("bug", crashes), ("sip", sip_timeout)]
    results = await run_scenarios(scenarios, ctx, cleanup=cleanup, leftovers=no_channels)
    assert [(r.name, r.outcome) for r in results] == [
        ("ok", "PASS"),
        ("bad", "FAIL"),
        ("n/a", "SKIP"),
        ("bug", "FAIL"),
        ("sip", "FAIL"),
        ("nothing left behind in Asterisk", "PASS"),
    ]
    assert len(cleaned) == 5 and ctx == ["pass"]
    assert exit_code(results) == 1
    table = format_results(results)
    assert "INVITE->agent INVITE 4.0 ms, ring before next 8.0 s" in table
    assert "next agent never rang" in table and "KeyError" in table
    assert "agents: no INVITE at alice within 18 s" in table and "worker stderr" not in table
    assert table.rstrip().endswith("2 passed, 3 failed, 1 skipped")


async def test_all_passing_exits_zero_and_a_left_channel_fails_the_check():
    async def no_channels():
        return []

    assert exit_code(await run_scenarios([("ok", passes)], [], leftovers=no_channels)) == 0

    async def one_left():
        return ["PJSIP/agent1-00000007"]

    results = await run_scenarios([("ok", passes)], [], leftovers=one_left)
    assert results[-1].outcome == "FAIL" and "PJSIP/agent1-00000007" in results[-1].detail
    assert exit_code(results) == 1

    async def ari_down():
        raise OSError("connection refused")

    results = await run_scenarios([], [], leftovers=ari_down)
    assert results[-1].outcome == "FAIL" and "connection refused" in results[-1].detail


async def test_a_hanging_scenario_fails_after_its_timeout_and_the_rest_still_run():
    results = await run_scenarios([("stuck", hangs), ("ok", passes)], [], timeout=0.05)
    assert [(r.outcome, r.detail) for r in results] == [
        ("FAIL", "did not finish within 0.05 s"),
        ("PASS", ""),
    ]


def test_the_built_in_list_covers_the_issue():
    names = " | ".join(name for name, _ in SCENARIOS)
    for needle in (
        "accept",
        "603",
        "486",
        "no answer",
        "offline",
        "abandons",
        "auto-answer",
        "wrap-up",
        "confirm",
        "desktop",
        "overflow",
    ):
        assert needle in names


def test_left_behind_ignores_channels_that_are_not_the_checks():
    before = {"PJSIP/provider-00000001"}
    now = [
        "PJSIP/provider-00000001",
        "PJSIP/provider-00000009",
        "PJSIP/agent1-0000000a",
        "Announcer/ARI_MOH-00000004;1",
        "PJSIP/harness-0000000b",
    ]
    ours = ("PJSIP/agent1-", "PJSIP/harness-")
    assert left_behind(before, now, ours) == [
        "PJSIP/agent1-0000000a",
        "Announcer/ARI_MOH-00000004;1",
        "PJSIP/harness-0000000b",
    ]


def test_an_overflowed_offer_is_told_by_its_queue_header_not_by_the_agent():
    """After an overflow the same agent may be offered the call again (member of both queues):
    only the INVITE's X-Acd-Queue says the call moved."""
    assert offer_queue({"x_acd": {"X-Acd-Queue": "support", "X-Acd-Wait": "12"}}) == "support"
    assert offer_queue({"x_acd": {"x-acd-queue": "sales"}}) == "sales"
    assert offer_queue({"x_acd": {}}) is None and offer_queue({}) is None
