from __future__ import annotations

import pytest

from tests.dbkit import migrated_db
from tests.ha.cluster import make_cluster


@pytest.fixture
async def pg_db(tmp_path):
    """(engine, url, schema): a migrated PostgreSQL schema (hot standby needs PostgreSQL)."""
    async with migrated_db("postgresql", tmp_path) as found:
        yield found


@pytest.fixture
def pg(pg_db):
    return pg_db[0]


@pytest.fixture
async def cluster_factory(pg_db):
    """``await cluster_factory(setup, phones, **settings)``: a simulator and replicas on ``pg_db``,
    closed at the end of the test."""
    made = []

    async def make(setup, phones, **settings):
        cluster = await make_cluster(pg_db, setup, phones, **settings)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


async def alice_talking_bob_ringing(sim, timeout: float = 20):
    """The scene a takeover test starts from, on phones ``alice`` (answers) and ``bob`` (lets his
    first offer ring): caller 1001 talks with alice, caller 1002 rings bob.
    Returns (talking caller, rung caller, bob's ringing INVITE)."""
    talking = sim.place_call("101", caller_number="1001")
    await talking.wait_for(lambda c: c.bridged_with == "alice", timeout=timeout)
    rung = sim.place_call("101", caller_number="1002")
    bob = sim.phones["bob"]
    await sim.wait_for(lambda: bob.last_invite is not None and bob.last_invite.outcome == "ringing", timeout)
    return talking, rung, bob.last_invite
