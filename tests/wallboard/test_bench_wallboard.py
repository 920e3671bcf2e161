"""The wallboard benchmark stays runnable and measures real work (figures printed, never asserted)."""

from __future__ import annotations

import asyncio

from bench import wallboard


def test_wallboard_benchmark_runs_on_a_full_floor_and_queues_deltas(capsys):
    result = asyncio.run(wallboard.run(n_agents=80, n_calls=16, boards=10, changes=40))
    assert result["in_queue"] == 16
    # every change is seen by its queue's wallboards and the admin's: deltas were really queued
    assert result["frames_per_change"] >= 2
    assert result["snapshot_kb"] > 1
    assert wallboard.main(["--agents", "40", "--calls", "8", "--boards", "5", "--changes", "20"]) == 0
    assert "per engine change" in capsys.readouterr().out
