"""Test databases for every store test: SQLite in a temp dir and PostgreSQL in a throwaway schema.

PostgreSQL comes from ``ACD_TEST_PG_URL`` (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``,
trust auth, what ``.ci/run`` starts). Each test gets its own schema (``search_path``), dropped after,
so concurrent runs never see each other's rows. Unreachable PostgreSQL skips locally and fails
in CI (``CI=true``): a green CI run always means both databases were tested.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.store import create_engine, upgrade

PG_URL = os.environ.get("ACD_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


async def pg_reachable(url: str = PG_URL) -> str | None:
    """None when PostgreSQL answers, else why not."""
    engine = create_engine(url, pool_size=1)
    try:
        async with asyncio.timeout(5):
            async with engine.connect() as conn:
                await conn.execute(text("select 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any reason means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


def require_pg(reason: str | None) -> None:
    if reason is None:
        return
    message = f"PostgreSQL not reachable at {PG_URL} ({reason}); start it with .ci/run or set ACD_TEST_PG_URL"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def pg_schema(url: str = PG_URL) -> AsyncIterator[str]:
    """A fresh schema, dropped afterwards."""
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(url, pool_size=1)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'create schema "{schema}"'))
        yield schema
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
        await admin.dispose()


@asynccontextmanager
async def migrated_db(
    backend: str, tmp_path: Path, **kw
) -> AsyncIterator[tuple[AsyncEngine, str, str | None]]:
    """(engine, url, schema) with every migration applied."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/acd.sqlite3"
        engine = create_engine(url, sqlite_synchronous="NORMAL", **kw)
        try:
            await upgrade(engine)
            yield engine, url, None
        finally:
            await engine.dispose()
        return
    require_pg(await pg_reachable())
    async with pg_schema() as schema:
        engine = create_engine(PG_URL, schema=schema, **kw)
        try:
            await upgrade(engine)
            yield engine, PG_URL, schema
        finally:
            await engine.dispose()
