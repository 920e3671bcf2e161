"""Async engine factory and the two ways to open a transaction (read snapshot, write).

SQLite: WAL (readers don't block the writer), ``busy_timeout`` (writers wait instead of failing),
``synchronous=FULL`` by default (a commit survives power loss, which is what "stored durably
before answering 200" means), and write transactions start with ``BEGIN IMMEDIATE`` so a
transaction that reads and then writes can never fail with SQLITE_BUSY_SNAPSHOT halfway.
PostgreSQL: asyncpg; an optional ``schema`` (search_path) lets tests isolate a run.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = ["create_engine", "is_sqlite", "reading", "writing"]

_BEGIN_OPTION = "acd_sqlite_begin"
# One writer at a time per SQLite engine, queued in asyncio: SQLite's own busy handler would make
# a second writer sleep 1..100 ms in its thread, which shows up directly as push latency.
_SQLITE_WRITE_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(
    url: str,
    *,
    schema: str | None = None,
    sqlite_synchronous: str = "FULL",
    busy_timeout_ms: int = 30_000,
    **kwargs: Any,
) -> AsyncEngine:
    """An AsyncEngine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``).

    For a SQLite file the parent directory is created (``./data/`` by default).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, **kwargs)
        sync = sqlite_synchronous.upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"sqlite_synchronous: OFF, NORMAL, FULL or EXTRA, not {sqlite_synchronous!r}")

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take BEGIN away from the driver so we decide DEFERRED vs IMMEDIATE ourselves.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute(f"PRAGMA synchronous={sync}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if backend == "postgresql":
        connect_args = dict(kwargs.pop("connect_args", {}))
        if schema:
            settings = dict(connect_args.get("server_settings", {}))
            settings["search_path"] = schema
            connect_args["server_settings"] = settings
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 10)
        return create_async_engine(parsed, connect_args=connect_args, **kwargs)
    raise ValueError(f"unsupported database {backend!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://")


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction, committed on success (SQLite: BEGIN IMMEDIATE, one writer at a time)."""
    if not is_sqlite(engine):
        async with engine.connect() as conn, conn.begin():
            yield conn
        return
    lock = _SQLITE_WRITE_LOCKS.get(engine.sync_engine)
    if lock is None:
        lock = _SQLITE_WRITE_LOCKS[engine.sync_engine] = asyncio.Lock()
    async with lock, engine.connect() as conn:
        await conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        async with conn.begin():
            yield conn


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read transaction that sees one snapshot for all its statements."""
    async with engine.connect() as conn:
        if not is_sqlite(engine):
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn
