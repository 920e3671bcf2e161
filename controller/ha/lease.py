"""The active controller's lease in PostgreSQL: a row with an expiry and a fencing token.

Why a row and not an advisory lock: an advisory lock lives as long as its TCP connection, and a
frozen process (SIGSTOP, a VM paused, a GC stall) keeps its connection, so the lock would never be
given up and no standby could take over. A row with ``expires_at`` judged on the database's own
clock expires whatever the holder does. ``token`` grows by one at every takeover; a former active
that wakes up finds a token that is not its own in every write transaction (``check``) and writes
nothing.

The holder also keeps a local deadline: ``sent + ttl * SAFETY`` on its monotonic clock, where
``sent`` is when the renewal that succeeded was sent. The database computed ``expires_at`` after
that moment, so the local deadline always falls before the row expires: once ``held()`` is false
a standby may be active, and this process must not act (``controller.ha.node`` fences it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from controller.ari.errors import Fenced

__all__ = ["SAFETY", "Acquired", "Fenced", "Lease", "LeaseInfo"]

SAFETY = 0.8  # share of the TTL the holder trusts its lease for, after the renewal was sent


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """The lease row as a standby sees it."""

    holder: str
    address: str
    token: int
    expires_at: datetime
    renewed_at: datetime | None
    now: datetime  # the database's clock when it was read

    @property
    def live(self) -> bool:
        return bool(self.holder) and self.expires_at > self.now


@dataclass(frozen=True, slots=True)
class Acquired:
    """A successful takeover: the new token, who held it before, how long it had been silent."""

    token: int
    previous: str
    silent_for: float | None  # s since the previous holder's last renewal (None: first holder)


_SELECT = text(
    "select holder, address, token, expires_at, renewed_at, clock_timestamp() as now "
    "from acd_ha_lease where name = :name"
)


class Lease:
    """One process's view of the lease ``name``; ``holder`` must be unique per process."""

    def __init__(
        self,
        db: AsyncEngine,
        name: str,
        holder: str,
        address: str = "",
        *,
        ttl: float = 5.0,
        timeout: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self.db = db
        self.name = name
        self.holder = holder
        self.address = address
        self.ttl = ttl
        self.timeout = timeout if timeout is not None else ttl * SAFETY / 2
        self.monotonic = monotonic
        self.token: int | None = None
        self.deadline = 0.0  # monotonic: trust the lease until then

    def held(self) -> bool:
        """True while this process may act (it holds the lease and its local deadline is ahead)."""
        return self.token is not None and self.monotonic() < self.deadline

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.monotonic()) if self.token is not None else 0.0

    def drop(self) -> None:
        """Forget the lease locally (fenced): ``held()`` is false from now on."""
        self.token = None
        self.deadline = 0.0

    async def current(self) -> LeaseInfo | None:
        async with asyncio.timeout(self.timeout), self.db.connect() as conn:
            row = (await conn.execute(_SELECT, {"name": self.name})).first()
        if row is None:
            return None
        return LeaseInfo(row.holder, row.address, int(row.token), row.expires_at, row.renewed_at, row.now)

    async def try_acquire(self) -> Acquired | None:
        """Take the lease if it is free or expired; None while another process holds it."""
        sent = self.monotonic()
        async with asyncio.timeout(self.timeout), self.db.begin() as conn:
            await conn.execute(
                text(
                    "insert into acd_ha_lease (name, holder, address, token, expires_at) "
                    "values (:name, '', '', 0, clock_timestamp()) on conflict (name) do nothing"
                ),
                {"name": self.name},
            )
            row = (await conn.execute(text(_SELECT.text + " for update"), {"name": self.name})).first()
            if row.holder and row.expires_at > row.now and row.holder != self.holder:
                return None
            token = int(row.token) + 1
            await conn.execute(
                text(
                    "update acd_ha_lease set holder = :holder, address = :address, token = :token, "
                    "expires_at = clock_timestamp() + make_interval(secs => :ttl), "
                    "acquired_at = clock_timestamp(), renewed_at = clock_timestamp() where name = :name"
                ),
                {
                    "name": self.name,
                    "holder": self.holder,
                    "address": self.address,
                    "token": token,
                    "ttl": self.ttl,
                },
            )
        self.token = token
        self.deadline = sent + self.ttl * SAFETY
        silent = (row.now - row.renewed_at).total_seconds() if row.renewed_at and row.holder else None
        return Acquired(token, row.holder, silent)

    async def renew(self) -> bool:
        """Push the expiry one TTL further; False when the lease is not ours any more."""
        if self.token is None:
            return False
        sent = self.monotonic()
        async with asyncio.timeout(self.timeout), self.db.begin() as conn:
            result = await conn.execute(
                text(
                    "update acd_ha_lease set expires_at = clock_timestamp() + make_interval(secs => :ttl), "
                    "renewed_at = clock_timestamp() "
                    "where name = :name and holder = :holder and token = :token "
                    "and expires_at > clock_timestamp()"
                ),
                {"name": self.name, "holder": self.holder, "token": self.token, "ttl": self.ttl},
            )
        if result.rowcount != 1:
            self.drop()
            return False
        if self.token is not None:
            self.deadline = max(self.deadline, sent + self.ttl * SAFETY)
        return True

    async def release(self, token: int | None = None) -> None:
        """Give the lease up now (clean shutdown): a standby takes over without waiting the TTL."""
        token, self.token = token if token is not None else self.token, None
        self.deadline = 0.0
        if token is None:
            return
        async with asyncio.timeout(self.timeout), self.db.begin() as conn:
            await conn.execute(
                text(
                    "update acd_ha_lease set holder = '', expires_at = clock_timestamp() "
                    "where name = :name and holder = :holder and token = :token"
                ),
                {"name": self.name, "holder": self.holder, "token": token},
            )

    async def check(self, conn: AsyncConnection) -> None:
        """Inside a write transaction: raise Fenced unless the row still carries our token.

        ``for share`` holds a takeover (which updates the row) until this transaction ends, so
        what this transaction writes is always written under our term."""
        token = self.token
        if token is None or not self.held():
            raise Fenced("write refused")
        query = text("select holder, token from acd_ha_lease where name = :name for share")
        row = (await conn.execute(query, {"name": self.name})).first()
        if row is None or row.holder != self.holder or int(row.token) != token:
            self.drop()
            raise Fenced("write refused: another controller holds the lease")
