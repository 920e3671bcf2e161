"""The short chaos set (CI): seeded traffic and every fault kind on two hot-standby replicas,
checked against the invariants of ``bench/chaos.py`` on the simulator's records and the store.
The long run is ``python -m bench.chaos`` (docs/reliability.md)."""

from __future__ import annotations

import pytest

from bench import chaos
from tests.dbkit import pg_reachable, require_pg


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_chaos_seed_keeps_every_invariant(seed):
    require_pg(await pg_reachable())
    report = await chaos.run(seed, calls=40)
    assert sum(report.faults.values()) >= 2, report.as_dict()  # the run did face faults
    assert report.calls == 40 and report.invites > 0
    assert not report.violations, report.as_dict()
    assert not report.details, report.as_dict()


async def test_chaos_takeover_seed_really_took_over():
    """A run with only process faults: the standby took over at least once, invariants hold."""
    require_pg(await pg_reachable())
    report = await chaos.run(7, calls=30, faults=("kill", "freeze"))
    assert report.takeovers, report.as_dict()
    assert not report.violations, report.as_dict()


async def test_callers_arriving_during_a_takeover_are_retried_into_the_new_active():
    """kill -9 of the active: for the takeover no replica holds the app, Stasis() fails; the
    shipped dialplan retries and the new active takes those callers: none refused, no fallback."""
    require_pg(await pg_reachable())
    report = await chaos.run(7, calls=30, faults=("kill",))
    assert report.takeovers, report.as_dict()
    assert report.retried_in > 0 and not report.outcomes["refused"], report.as_dict()
    assert report.fallback == 0 and not report.violations, report.as_dict()


async def test_fallback_after_a_whole_window_without_controller_is_no_violation(monkeypatch):
    """A retry window shorter than a takeover: callers reach the fallback, which the simulator
    answers and hangs up (its Queue() is a no-op); that is neither caller_lost nor call_rows."""
    require_pg(await pg_reachable())
    monkeypatch.setattr(chaos, "STASIS_RETRIES", 3)
    report = await chaos.run(7, calls=30, faults=("kill",))
    assert report.fallback > 0, report.as_dict()
    assert not report.violations, report.as_dict()


async def test_fallback_before_the_window_is_over_is_a_violation(monkeypatch):
    """The dialplan gives up after 3 s while the suite expects STASIS_RETRIES s: every such
    fallback is one the retry loop should have prevented."""
    require_pg(await pg_reachable())
    load = chaos.Chaos._load_dialplan

    def short_window(self):
        load(self)
        self.sim.dialplan.globals["ACD_STASIS_RETRIES"] = "3"

    monkeypatch.setattr(chaos.Chaos, "_load_dialplan", short_window)
    report = await chaos.run(7, calls=30, faults=("kill",))
    assert report.fallback > 0, report.as_dict()
    assert report.violations["fallback_while_served"] == report.fallback, report.as_dict()
