"""Write transactions of the sidecar, with a fast path for an SQLite file.

PostgreSQL (and in-memory SQLite) use :func:`controller.store.writing` as everything else does.
For an SQLite file, every statement through aiosqlite costs several thread hand-offs (cursor,
execute, fetch, close), about 0.3-0.4 ms of CPU each on the benchmark machine, which dominated
the cost of a webhook group. The sidecar's writes are short and never wait for anything but the
database, so here they run on one synchronous ``sqlite3`` connection kept by the writer:

- statements run inline on the event loop (tens of microseconds each, the data is in the page
  cache), one transaction at a time (an asyncio lock);
- ``BEGIN IMMEDIATE`` never waits inside SQLite (``busy_timeout = 0``): if another connection
  (another process, or an aiosqlite writer) holds the write lock, the writer sleeps a few
  milliseconds in asyncio and tries again, for up to ``busy_timeout`` seconds;
- ``COMMIT`` runs inline with ``synchronous = NORMAL`` (WAL: no fsync at commit; a committed
  transaction survives a crash of the process, not a power cut), and in a worker thread with
  ``FULL``/``EXTRA`` (fsync), so the loop never waits for the disk;
- checkpoints (which do fsync) run in a worker thread every second or so, never at commit
  (``wal_autocheckpoint = 0`` on this connection).

Readers keep using the async engine (WAL: they never block the writer, nor it them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool

from controller.store import is_sqlite, writing

__all__ = ["SidecarWriter"]

log = logging.getLogger("controller.whatsapp.writer")

_CHECKPOINT_EVERY = 1.0  # seconds between background WAL checkpoints (when something was written)


class _InlineConnection:
    """The part of AsyncConnection the sidecar's units use, over a synchronous Connection."""

    def __init__(self, conn: Connection) -> None:
        self.sync_connection = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync_connection.execute(statement, parameters)


def _sqlite_file(engine: AsyncEngine) -> str | None:
    if not is_sqlite(engine):
        return None
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:") or "mode=memory" in database:
        return None
    return database


class SidecarWriter:
    def __init__(
        self, engine: AsyncEngine, *, synchronous: str = "FULL", busy_timeout: float = 30.0
    ) -> None:
        sync = synchronous.upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous: OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.engine = engine
        self.synchronous = sync
        self.busy_timeout = busy_timeout
        self.path = _sqlite_file(engine)
        self._lock = asyncio.Lock()
        self._conn: Connection | None = None
        self._sync_engine: Any = None
        self._dirty = False
        self._checkpointer: asyncio.Task | None = None
        self.stats = {"transactions": 0, "busy_retries": 0, "checkpoints": 0}

    @property
    def inline(self) -> bool:
        """True when transactions use the synchronous SQLite connection."""
        return self.path is not None

    def _connection(self) -> Connection:
        if self._conn is None:
            assert self.path is not None
            sync = self.synchronous
            engine = create_sync_engine(
                f"sqlite:///{self.path}",
                poolclass=StaticPool,
                connect_args={"check_same_thread": False, "isolation_level": None},
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=0")  # never wait inside SQLite on the loop
                cursor.execute(f"PRAGMA synchronous={sync}")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in a thread
                cursor.close()

            self._sync_engine = engine
            self._conn = engine.connect()
        return self._conn

    async def _begin(self, conn: Connection) -> None:
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except Exception as exc:
                conn.rollback()
                locked = isinstance(getattr(exc, "orig", exc), sqlite3.OperationalError) and "locked" in str(
                    exc
                )
                if not locked or time.monotonic() > deadline:
                    raise
                self.stats["busy_retries"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A write transaction: committed on success, rolled back on any exception."""
        if self.path is None:
            async with writing(self.engine) as conn:
                yield conn
            return
        async with self._lock:
            conn = self._connection()
            await self._begin(conn)
            try:
                yield _InlineConnection(conn)
            except BaseException:
                conn.rollback()
                raise
            if self.synchronous in ("OFF", "NORMAL"):
                conn.commit()  # appends to the WAL (page cache), no fsync: cheaper inline than a hop
            else:  # fsync: off the loop
                await self._commit_in_thread(conn)
            self._dirty = True
            self.stats["transactions"] += 1

    @staticmethod
    async def _commit_in_thread(conn: Connection) -> None:
        """COMMIT in a worker thread. Cancelling the caller does not cancel the commit: the
        connection stays ours (the lock is held) until the thread is done with it, so the next
        transaction can never run on it concurrently; a commit that succeeded stays committed
        (the webhook is then answered by Meta's retry, deduplicated)."""
        commit = asyncio.ensure_future(asyncio.to_thread(conn.commit))
        cancelled = False
        while True:
            try:
                await asyncio.shield(commit)
                break
            except asyncio.CancelledError:
                if commit.done():
                    break
                cancelled = True  # wait for the thread first (an fsync: milliseconds)
            except Exception:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise
        if commit.done() and not commit.cancelled() and commit.exception() is not None:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise commit.exception()  # type: ignore[misc]
        if cancelled:
            raise asyncio.CancelledError

    # ----------------------------------------------------------------- checkpoints

    def start(self) -> None:
        if self.path is not None and self._checkpointer is None:
            self._checkpointer = asyncio.create_task(self._checkpoint_loop(), name="wa-checkpoint")

    def _checkpoint(self) -> None:
        assert self.path is not None
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    async def checkpoint(self) -> None:
        if self.path is None:
            return
        self._dirty = False
        await asyncio.to_thread(self._checkpoint)
        self.stats["checkpoints"] += 1

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(_CHECKPOINT_EVERY)
            if not self._dirty:
                continue
            try:
                await self.checkpoint()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried next round; the WAL only grows meanwhile
                log.warning("WAL checkpoint failed", extra={"error": repr(exc)[:200]})

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        async with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._sync_engine is not None:
                self._sync_engine.dispose()
                self._sync_engine = None
        if self.path is not None and self._dirty:
            with contextlib.suppress(Exception):
                await self.checkpoint()
