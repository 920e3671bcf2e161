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
