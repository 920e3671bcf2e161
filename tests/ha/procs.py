"""Real ``acdctl run`` replicas (ACD_HA=true) as subprocesses, against a simulator in the test process.

Each replica is a separate process, so SIGSTOP / SIGKILL are the real thing: a stopped process
keeps its sockets (events websocket, database connections) open and its timers do not run.

Telling the replicas apart on independent evidence:
- **ARI**: each replica logs in as its own ARI user (``acd-<name>``, several ``ari.conf`` users);
  the simulator records the authenticated user of every REST request (``RestRecord.user``) and
  events websocket (``ws_log``).
- **Database**: each replica connects as its own PostgreSQL role (``<schema>_<name>``, whose
  ``search_path`` is the test's schema, which isolates the test like ``tests/dbkit.py`` does),
  and a row trigger on every table records ``current_user`` of each insert/update/delete in
  ``acd_test_audit``. A renewal or release that matches no row writes nothing and records
  nothing, as it should.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url

from controller.store import create_engine, upgrade
from tests.dbkit import PG_URL, pg_reachable, require_pg

ADMIN = "proc-admin-token-123"
ROOT = str(Path(__file__).resolve().parents[2])
ARI_PASSWORD = "secret"
TTL = 1.0
RENEW = 0.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def roles_schema(names: tuple[str, ...]) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A migrated schema with an audit trigger on every table, and a login role per replica
    whose ``search_path`` is that schema: (schema, {name: database URL})."""
    require_pg(await pg_reachable())
    schema = "p_" + secrets.token_hex(5)
    roles = {name: f"{schema}_{name}" for name in names}
    admin = create_engine(PG_URL, pool_size=1)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'create schema "{schema}"'))
        db = create_engine(PG_URL, schema=schema, pool_size=1)
        try:
            await upgrade(db)
        finally:
            await db.dispose()
        async with admin.begin() as conn:
            await conn.execute(
                text(
                    f'create table "{schema}".acd_test_audit (who text, tbl text, op text, '
                    "at timestamptz default clock_timestamp())"
                )
            )
            await conn.execute(
                text(
                    f'create function "{schema}".acd_test_audit_fn() returns trigger language plpgsql as $$ '
                    f'begin insert into "{schema}".acd_test_audit (who, tbl, op) '
                    "values (current_user, tg_table_name, tg_op); return null; end $$"
                )
            )
            tables = (
                await conn.execute(
                    text("select table_name from information_schema.tables where table_schema = :s"),
                    {"s": schema},
                )
            ).scalars()
            for table in tables:
                if table in ("acd_test_audit", "alembic_version"):
                    continue
                await conn.execute(
                    text(
                        "create trigger acd_test_audit after insert or update or delete "
                        f'on "{schema}"."{table}" '
                        f'for each row execute function "{schema}".acd_test_audit_fn()'
                    )
                )
            for role in roles.values():
                await conn.execute(text(f'create role "{role}" login superuser'))
                await conn.execute(text(f'alter role "{role}" set search_path = "{schema}"'))
        base = make_url(PG_URL)
        urls = {name: base.set(username=r).render_as_string(hide_password=False) for name, r in roles.items()}
        yield schema, urls
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
            for role in roles.values():
                with contextlib.suppress(Exception):
                    async with conn.begin_nested():
                        await conn.execute(text(f'drop role if exists "{role}"'))
        await admin.dispose()


async def audit(schema: str) -> list[Any]:
    """Every row written so far: (who, tbl, op, at)."""
    db = create_engine(PG_URL, pool_size=1)
    try:
        async with db.connect() as conn:
            query = text(f'select * from "{schema}".acd_test_audit order by at')
            return list((await conn.execute(query)).all())
    finally:
        await db.dispose()


TOML = """
[queues.support]
ring_timeout = {ring_timeout}
wrapup = 1
hold = "moh"
max_no_answer = 0

[agents.alice]
endpoint = "PJSIP/alice"
queues = ["support"]

[agents.bob]
endpoint = "PJSIP/bob"
queues = ["support"]
state = "{bob_state}"
"""


@dataclass
class Proc:
    name: str
    ari_user: str
    db_role: str
    port: int
    log: Path
    process: asyncio.subprocess.Process
    stopped: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False


@dataclass
class Replicas:
    """Starts replicas; ``close()`` (the fixture's finalizer) kills every one still running."""

    tmp: Path
    ari_url: str
    schema: str
    db_urls: dict[str, str]
    bob_state: str = "available"
    ring_timeout: float = 600
    procs: list[Proc] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None

    async def start(self, name: str) -> Proc:
        config = self.tmp / "acd.toml"
        if not config.exists():
            text = TOML.format(bob_state=self.bob_state, ring_timeout=self.ring_timeout)
            config.write_text(text, encoding="utf-8")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACD_")}
        env |= {
            "PYTHONPATH": ROOT,
            "ACD_CONFIG": str(config),
            "ACD_HA": "true",
            "ACD_HA_TTL": str(TTL),
            "ACD_HA_RENEW": str(RENEW),
            "ACD_DATABASE_URL": self.db_urls[name],
            "ACD_ARI_URL": self.ari_url,
            "ACD_ARI_USER": f"acd-{name}",
            "ACD_ARI_PASSWORD": ARI_PASSWORD,
            "ACD_HTTP_HOST": "127.0.0.1",
            "ACD_HTTP_PORT": str(port),
            "ACD_HA_ADDRESS": f"http://127.0.0.1:{port}",
            "ACD_ADMIN_TOKEN": ADMIN,
            "ACD_LOG_LEVEL": "INFO",
        }
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controller.cli", "run", cwd=self.tmp, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        proc = Proc(name, f"acd-{name}", f"{self.schema}_{name}", port, log, process)
        self.procs.append(proc)
        return proc

    async def get(self, proc: Proc, path: str, token: str | None = ADMIN) -> tuple[int, Any]:
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(proc.url + path, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def post(self, proc: Proc, path: str) -> tuple[int, Any]:
        assert self.http is not None
        async with self.http.post(proc.url + path, headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            return resp.status, await resp.json(content_type=None)

    async def role(self, proc: Proc) -> str | None:
        """``active`` / ``standby`` as the replica's own /healthz says, None while it does not answer.

        ``active`` only once the active term's API answers with the events websocket connected (the
        standby API says ``starting`` while the new term starts)."""
        if not proc.running or proc.stopped:
            return None
        try:
            _status, body = await self.get(proc, "/healthz", token=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        role = body.get("role")
        if role == "active" and not (body.get("ari") or {}).get("connected"):
            return "starting"
        return role

    async def close(self) -> None:
        for proc in self.procs:
            if proc.running:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.send_signal(signal.SIGCONT)
                    proc.process.kill()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await proc.process.wait()
        if self.http is not None:
            await self.http.close()

    def logs(self) -> str:
        """Each replica's stderr/stdout, shown by pytest when a test fails."""
        parts = []
        for proc in self.procs:
            body = proc.log.read_text(encoding="utf-8", errors="replace") if proc.log.exists() else ""
            parts.append(f"----- replica {proc.name} (exit {proc.process.returncode}) -----\n{body[-20000:]}")
        return "\n".join(parts)
