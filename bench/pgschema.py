"""A throwaway PostgreSQL schema for the benchmarks that need the real database (chaos, durable)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from sqlalchemy import text

from controller.store import create_engine

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@contextlib.asynccontextmanager
async def scratch_schema(prefix: str) -> AsyncIterator[str]:
    """Create a uniquely named schema, yield its name, drop it (with everything in it) afterwards."""
    schema = f"{prefix}_{int(time.time() * 1000) % 10**9}"
    admin = create_engine(PG_URL, pool_size=1)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'create schema "{schema}"'))
        try:
            yield schema
        finally:
            async with admin.begin() as conn:
                await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
    finally:
        await admin.dispose()
