"""WhatsApp sidecar fixtures: a migrated database per backend, the service, a signed poster, Meta mock.

Every test that takes ``engine`` (directly or through ``sidecar``) runs on SQLite and on
PostgreSQL. Migrations run once per session (SQLite: a template file copied per test;
PostgreSQL: one throwaway schema whose ``wa_*`` tables are truncated before each test).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import respx
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from controller.store import create_engine, upgrade
from controller.whatsapp.service import WhatsAppConfig, WhatsAppService
from tests.dbkit import PG_URL, pg_reachable, require_pg

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SIGNATURES = json.loads((FIXTURES / "signatures.json").read_bytes())["signatures_over_exact_file_bytes"]
APP_SECRET = "fixture-app-secret"
VERIFY_TOKEN = "verify-me-please"
ACCESS_TOKEN = "EAAG-test-access-token"
PNID = "112233445566778"
GRAPH = "https://graph.test/v24.0"
SEND_URL = f"{GRAPH}/{PNID}/messages"
T0 = 1786629725.0  # the fixtures' first customer message
ADMIN = "admin-token-123"
TOKENS = {"alice": "alice-token-1", "bob": "bob-token-22", "carol": "carol-token-3"}
WA_TABLES = (
    "wa_changes",
    "wa_channel_alerts",
    "wa_orphan_statuses",
    "wa_status_history",
    "wa_messages",
    "wa_conversations",
    "wa_webhook_inbox",
)
# The fixtures' ids (so statuses correlate with messages the tests send).
MARIA = "5511987654321"
JOAO = "5521998765432"
WAMID_REPLY = "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABEYFDZGMkI5QzFEMEUzQTRCNUM2RDdFAA=="
MSG_REPLY = "msg:7f3c2a10-5b1e-4c7e-9d2a-0c8e1b2f4a61"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def run_in_thread(coro_fn: Any) -> Any:
    """Run a coroutine on its own loop in a worker thread (session fixtures may be built mid-test)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn()).result()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("whatsapp-db") / "template.sqlite3"

    async def build() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()

    run_in_thread(build)
    return path


@pytest.fixture(scope="session")
def pg_schema_name() -> Any:
    reason = run_in_thread(pg_reachable)
    require_pg(reason)
    schema = "wa_test_" + secrets.token_hex(5)

    async def create() -> None:
        admin = create_engine(PG_URL, pool_size=1)
        async with admin.begin() as conn:
            await conn.execute(text(f'create schema "{schema}"'))
        await admin.dispose()
        engine = create_engine(PG_URL, schema=schema)
        await upgrade(engine)
        await engine.dispose()

    async def drop() -> None:
        admin = create_engine(PG_URL, pool_size=1)
        async with admin.begin() as conn:
            await conn.execute(text(f'drop schema if exists "{schema}" cascade'))
        await admin.dispose()

    run_in_thread(create)
    yield schema
    run_in_thread(drop)


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        path = tmp_path / "acd.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        eng = create_engine(f"sqlite+aiosqlite:///{path}", sqlite_synchronous="NORMAL")
    else:
        schema = request.getfixturevalue("pg_schema_name")
        eng = create_engine(PG_URL, schema=schema)
        async with eng.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(WA_TABLES)} RESTART IDENTITY CASCADE"))
            await conn.execute(text("UPDATE wa_counters SET value = 0"))
    yield eng
    await eng.dispose()


# --------------------------------------------------------------------------- the service


@pytest.fixture
def meta() -> Any:
    """Meta's Graph API, mocked with respx (only the send endpoint is ever called)."""
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@dataclass
class Sidecar:
    service: WhatsAppService
    client: TestClient
    clock: Clock
    meta: Any
    extra: dict = field(default_factory=dict)

    async def post(self, body: bytes | str, *, signature: str | None = "auto", **headers: str) -> Any:
        raw = body if isinstance(body, bytes) else fixture_bytes(body)
        if signature == "auto":
            signature = SIGNATURES.get(body) if isinstance(body, str) else sign(raw)
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        headers.setdefault("Content-Type", "application/json")
        return await self.client.post("/webhooks/whatsapp", data=raw, headers=headers)

    async def deliver(self, *names_or_bodies: bytes | str) -> None:
        """POST each body (must be accepted) and wait until everything is processed."""
        for item in names_or_bodies:
            resp = await self.post(item)
            assert resp.status == 200, await resp.text()
        await self.service.drain()

    async def api(self, method: str, path: str, token: str = ADMIN, **kw: Any) -> tuple[int, Any]:
        resp = await self.client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
        try:
            data = await resp.json()
        except Exception:  # noqa: BLE001 - plain-text error bodies
            data = await resp.text()
        return resp.status, data

    async def send_text(
        self, conversation_id: int, text_: str, token: str = TOKENS["alice"]
    ) -> tuple[int, Any]:
        return await self.api(
            "POST",
            f"/api/conversations/{conversation_id}/messages",
            token,
            json={"type": "text", "text": text_},
        )

    async def rows(self, sql: str, **params: Any) -> list[dict]:
        async with self.service.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]

    async def messages(self, conversation_id: int | None = None) -> list[dict]:
        where = "" if conversation_id is None else f"WHERE conversation_id = {int(conversation_id)}"
        return await self.rows(f"SELECT * FROM wa_messages {where} ORDER BY conversation_id, event_ts, seq")


def make_config(**overrides: Any) -> WhatsAppConfig:
    values: dict[str, Any] = {
        "verify_token": VERIFY_TOKEN,
        "app_secret": APP_SECRET,
        "access_token": ACCESS_TOKEN,
        "phone_number_id": PNID,
        "graph_url": GRAPH,
        "admin_token": ADMIN,
        "agent_tokens": dict(TOKENS),
        "team": ["alice", "bob"],
    }
    values.update(overrides)
    return WhatsAppConfig(**values)


@pytest.fixture
async def make_sidecar(engine, meta):
    """Factory: a started service on the test database with an aiohttp test client."""
    made: list[Sidecar] = []

    async def factory(*, start: bool = True, clock: Clock | None = None, **overrides: Any) -> Sidecar:
        clock = clock or Clock(T0 + 60)
        service = WhatsAppService(
            make_config(**overrides), engine=engine, clock=clock, backoff_scale=0.0, auto_migrate=False
        )
        if start:
            await service.start()
        client = TestClient(TestServer(service.app))
        await client.start_server()
        sidecar = Sidecar(service, client, clock, meta)
        made.append(sidecar)
        return sidecar

    yield factory
    for sidecar in made:
        await sidecar.client.close()
        await sidecar.service.stop()


@pytest.fixture
async def sidecar(make_sidecar) -> Sidecar:
    return await make_sidecar()


def accept(meta: Any, wamid: str = WAMID_REPLY, wa_id: str = MARIA) -> Any:
    """Meta answers the next sends with 200 + this wamid."""
    body = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": f"+{wa_id}", "wa_id": wa_id}],
        "messages": [{"id": wamid}],
    }
    return meta.post(SEND_URL).respond(200, json=body)
