"""The store benchmark stays runnable (figures are printed, never asserted)."""

from __future__ import annotations

from bench import store


def test_store_throughput_benchmark_small_run(capsys):
    assert store.main(["--only", "throughput", "--offers", "400", "--no-pg"]) == 0
    out = capsys.readouterr().out
    assert "| sqlite | 400 |" in out
