"""Benchmarks stay runnable (figures are printed, never asserted: timing goals live in bench/)."""

from __future__ import annotations

from bench import engine


def test_engine_benchmark_quick_run_completes(capsys):
    assert engine.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "median" in out and "agents" in out
