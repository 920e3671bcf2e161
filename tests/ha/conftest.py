from __future__ import annotations

import pytest

from tests.dbkit import migrated_db


@pytest.fixture
async def pg_db(tmp_path):
    """(engine, url, schema): a migrated PostgreSQL schema (hot standby needs PostgreSQL)."""
    async with migrated_db("postgresql", tmp_path) as found:
        yield found


@pytest.fixture
def pg(pg_db):
    return pg_db[0]
