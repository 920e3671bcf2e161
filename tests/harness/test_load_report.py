"""Load figures from SIP timestamps, the table, the JSON and the PNG, without Asterisk."""

import json

import pytest

from controller.harness.load import LoadPlan, Placed, mixed_behaviours, percentile, run_load, summarize
from controller.harness.report import format_table, plot, write_json


def ev(ev, t, call, **kw):
    return {"ev": ev, "t": t, "call": call, **kw}


def fake_run():
    """Call c1: agent a declines, agent b answers. c2: nobody answers, caller gives up. c3: 503."""
    placed = [Placed("c1", "100"), Placed("c2", "101"), Placed("c3", "102")]
    callers = [
        ev("invite_sent", 10.000, "c1"),
        ev("state", 10.500, "c1", state="CONFIRMED"),
        ev("state", 12.000, "c1", state="DISCONNECTED", by="far end"),
        ev("invite_sent", 10.100, "c2"),
        ev("state", 15.000, "c2", state="DISCONNECTED", by="us"),
        ev("invite_sent", 10.200, "c3"),
        ev("state", 10.210, "c3", state="DISCONNECTED", by="far end", code=503, reason="Unavailable"),
    ]
    agents = [
        ev("incoming", 10.004, "a#1", number="100"),
        ev("sent", 10.200, "a#1", code=603),
        ev("incoming", 10.203, "b#2", number="100"),
        ev("sent", 10.498, "b#2", code=200),
        ev("state", 10.499, "b#2", state="CONFIRMED"),
        ev("incoming", 10.110, "a#3", number="101"),
    ]
    return placed, callers, agents


def test_summarize_matches_agent_invites_to_calls_by_number():
    s = summarize(*fake_run(), duration=1.0)
    assert (s["offered"], s["answered"], s["abandoned"], s["failed"]) == (3, 1, 1, 1)
    p = s["percentiles_ms"]
    assert p["invite_to_agent"]["n"] == 2 and p["invite_to_agent"]["p99"] == pytest.approx(10.0)
    assert p["refusal_to_next"] == {
        "p50": pytest.approx(3.0),
        "p95": pytest.approx(3.0),
        "p99": pytest.approx(3.0),
        "n": 1,
    }
    assert p["answer_to_connected"]["p50"] == pytest.approx(2.0)
    assert "c3: ended 503 Unavailable without an agent" in s["errors"]


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([], 50) is None


def test_table_json_and_plot(tmp_path):
    run = summarize(*fake_run(), duration=1.0)
    runs = [
        {"label": "controller", "rate": 20, "duration": 1} | run,
        {"label": "app_queue", "rate": 20, "duration": 1} | run,
    ]
    table = format_table(runs)
    assert "controller" in table and "app_queue" in table and "3.0/3.0/3.0 (n=1)" in table
    data = json.loads(write_json(runs, tmp_path / "load.json", {"pbx": "x"}).read_text())
    assert data["runs"][0]["answered"] == 1
    png = plot(runs, tmp_path / "load.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_run_load_over_loopback_counts_every_call(phones):
    """The load loop end to end with the caller dialling an agent phone directly (no PBX)."""
    agents, callers = phones
    await agents.add_agent("a1", mixed_behaviours(["answer:0.05:0.1"], 1)[0])
    pbx = f"127.0.0.1:{agents.port}"
    await callers.add_caller("caller", host=pbx)
    seen = []
    result = await run_load(
        LoadPlan(rate=10, duration=1.0, exten="a1", label="loopback", patience=5),
        [agents],
        [callers],
        pbx,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (10, 10)
    assert (result["offered"], result["answered"], result["failed"], result["unfinished"]) == (10, 10, 0, 0)
    assert result["percentiles_ms"]["invite_to_agent"]["n"] == 10
    assert result["percentiles_ms"]["answer_to_connected"]["n"] == 10
    assert result["error_count"] == 0
