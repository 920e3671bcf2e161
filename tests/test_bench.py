"""Benchmarks stay runnable (figures are printed, never asserted: timing goals live in bench/)."""

from __future__ import annotations

from bench import engine


def test_engine_benchmark_quick_run_completes(capsys):
    assert engine.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "median" in out and "agents" in out


def test_panel_benchmark_runs_and_the_hub_really_built_cards(capsys):
    import asyncio

    from bench import panel

    result = asyncio.run(panel.run(20, 50))
    assert result["frames"] >= 50 * 3  # per offer: card, agent ringing; then card gone, agent ready
    assert panel.main(["--agents", "20", "--offers", "50"]) == 0
    assert "per offer" in capsys.readouterr().out
