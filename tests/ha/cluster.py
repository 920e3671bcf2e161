"""Two (or more) controller replicas in one test process, one simulated Asterisk, one PostgreSQL schema."""

from __future__ import annotations

from typing import Any

import aiohttp

from controller.acd.setup import AcdSetup
from controller.app import Controller
from controller.clock import Clock
from controller.config import load_settings
from controller.ha.replica import Replica
from controller.sim import SimAsterisk
from controller.store import create_engine
from tests.dbkit import PG_URL

ADMIN = "admin-token-123"
SPEED = 20.0


class Cluster:
    def __init__(self, sim: SimAsterisk, clock: Clock, setup: AcdSetup, schema: str, **settings: Any) -> None:
        self.sim = sim
        self.clock = clock
        self.setup = setup
        self.schema = schema
        settings = {"ha": True, "ha_ttl": 1.0, "ha_renew": 0.2, "admin_token": ADMIN} | settings
        self.settings = load_settings(env_file=None, database_url=PG_URL, **settings)
        self.replicas: list[Replica] = []
        self.engines: list[Any] = []
        self.http = aiohttp.ClientSession()

    def _controller(self) -> Controller:
        return Controller(
            self.setup,
            ari_url=self.sim.base_url,
            ari_user="acd",
            ari_password="secret",
            clock=self.clock,
            seed=1,
            backoff_initial=0.05,
            backoff_max=0.2,
        )

    async def replica(self, name: str, **kw: Any) -> Replica:
        """Start one more replica (its own database pools, like another process)."""
        db = create_engine(PG_URL, schema=self.schema, pool_size=3)
        lease_db = create_engine(PG_URL, schema=self.schema, pool_size=2, max_overflow=0)
        self.engines += [db, lease_db]
        replica = Replica(
            self.settings,
            self._controller,
            db=db,
            lease_db=lease_db,
            holder=name,
            host="127.0.0.1",
            port=0,
            services_options={"writer_options": {"linger": 0.005, "retry_initial": 0.05, "retry_max": 0.2}},
            **kw,
        )
        await replica.start()
        self.replicas.append(replica)
        return replica

    async def get(self, replica: Replica, path: str, token: str | None = ADMIN):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(replica.url + path, headers=headers) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body, resp.headers

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.stop()
        await self.http.close()
        await self.sim.stop()
        for engine in self.engines:
            await engine.dispose()


async def make_cluster(pg_db, setup: AcdSetup, phones: dict[str, object], **settings: Any) -> Cluster:
    _engine, _url, schema = pg_db
    clock = Clock(speed=SPEED)
    strict = {"duplicate_channel_events": True, "add_waits_for_playback": True}
    sim = SimAsterisk(clock=clock, seed=1, user="acd", password="secret", **strict)
    await sim.start("127.0.0.1", 0)
    for name, behaviour in phones.items():
        sim.add_phone(name, behaviour)
    return Cluster(sim, clock, setup, schema, **settings)
