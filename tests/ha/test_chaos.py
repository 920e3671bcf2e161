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
