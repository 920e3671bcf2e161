from __future__ import annotations

import pytest

from tests.dbkit import BACKENDS, migrated_db


@pytest.fixture(params=BACKENDS)
async def db(request, tmp_path):
    """A migrated database engine; every test using it runs on SQLite and on PostgreSQL."""
    async with migrated_db(request.param, tmp_path) as (engine, _url, _schema):
        yield engine
