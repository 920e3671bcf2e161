"""Wiring: one :class:`WhatsAppService` owns the engine, hub, ingest worker, sender and routes.

``acdctl sidecar`` calls :func:`run_sidecar`; tests and the demo build the service directly
(``WhatsAppService(config, engine=..., graph_transport=...)``) and call ``start()``/``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

import httpx
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import load_agent_tokens, load_setup
from controller.store import create_engine, current_revision, is_sqlite, upgrade
from controller.store.migrate import head_revision
from controller.whatsapp import api, relay, webhook
from controller.whatsapp.appkey import SERVICE
from controller.whatsapp.auth import SidecarAuth, hash_token, validate_token_hashes
from controller.whatsapp.changes import ChangeLog
from controller.whatsapp.cors import add_cors_headers, cors_middleware, parse_origins
from controller.whatsapp.graph import DEFAULT_GRAPH_URL, GraphClient
from controller.whatsapp.ingest import Ingestor
from controller.whatsapp.metrics import Counters, PrometheusExport
from controller.whatsapp.models import Counter as CounterRow
from controller.whatsapp.models import OrphanStatus, WebhookInbox
from controller.whatsapp.relay import Forwarder, Hub
from controller.whatsapp.sender import Sender
from controller.whatsapp.templates import check_templates, load_templates
from controller.whatsapp.writer import SidecarWriter

__all__ = ["WEBHOOK_PATH", "WhatsAppConfig", "WhatsAppService", "run_sidecar"]

log = logging.getLogger("controller.whatsapp")

WEBHOOK_PATH = "/webhooks/whatsapp"


class MigrationNeeded(Exception):
    """PostgreSQL is not at the latest schema: the admin runs ``acdctl db upgrade`` first."""


@dataclass
class WhatsAppConfig:
    """Everything the sidecar needs, decoupled from pydantic Settings (tests build it directly).

    Agents' tokens are SHA-256 digests (``agent_token_hashes``, as ``token_sha256`` in the queue
    file); ``agent_tokens=`` (plain tokens) is a convenience for tests and demos: they are hashed
    here and only the digests are kept.
    """

    database_url: str = "sqlite+aiosqlite:///./data/acd.sqlite3"
    host: str = "127.0.0.1"
    port: int = 8081
    verify_token: str = ""
    app_secret: str = ""
    access_token: str = ""
    phone_number_id: str = ""
    graph_url: str = DEFAULT_GRAPH_URL
    admin_token: str = ""
    agent_token_hashes: dict[str, str] = field(default_factory=dict)
    team: list[str] = field(default_factory=list)
    relay_url: str = ""
    relay_secret: str = ""
    orphan_ttl_hours: float = 72.0
    send_timeout: float = 15.0
    cors_origins: list[str] = field(default_factory=list)  # the panel's origins (exact)
    # SQLite only: FULL (default) = a 200'd body is on disk, it survives a power cut too (fsync per
    # commit, off the event loop); NORMAL (WAL) survives a crash of the process only, and is
    # faster. Meta never resends what got a 200, so "stored durably" means FULL. PostgreSQL: durable.
    sqlite_synchronous: str = "FULL"
    templates: list[dict] = field(default_factory=list)  # approved templates: name, language, category, body
    agent_tokens: InitVar[Mapping[str, str] | None] = None

    def __post_init__(self, agent_tokens: Mapping[str, str] | None) -> None:
        hashes = dict(self.agent_token_hashes)
        for agent, token in (agent_tokens or {}).items():
            hashes[agent] = hash_token(token)
        self.agent_token_hashes = validate_token_hashes(hashes)
        self.cors_origins = parse_origins(self.cors_origins)
        self.templates = check_templates(self.templates, "WhatsAppConfig.templates")

    @classmethod
    def from_settings(
        cls, settings: Any, *, agent_token_hashes: Mapping[str, str] | None = None
    ) -> WhatsAppConfig:
        """The sidecar's config from Settings and the queue file (``settings.config``).

        The agents' token hashes come from ``token_sha256`` in the same queue file the controller
        reads (validated whole, like ``acdctl run`` does); ConfigError when it is missing or wrong.
        """
        if agent_token_hashes is None:
            load_setup(settings.config)
            agent_token_hashes = load_agent_tokens(settings.config)
        return cls(
            database_url=settings.database_url,
            host=settings.sidecar_host,
            port=settings.sidecar_port,
            verify_token=settings.wa_verify_token.get_secret_value(),
            app_secret=settings.wa_app_secret.get_secret_value(),
            access_token=settings.wa_access_token.get_secret_value(),
            phone_number_id=settings.wa_phone_number_id,
            graph_url=settings.wa_graph_url,
            admin_token=settings.admin_token.get_secret_value(),
            agent_token_hashes=dict(agent_token_hashes),
            team=[t.strip() for t in settings.wa_team.split(",") if t.strip()],
            relay_url=settings.wa_relay_url,
            relay_secret=settings.wa_relay_secret.get_secret_value(),
            orphan_ttl_hours=settings.wa_orphan_ttl_hours,
            cors_origins=parse_origins(settings.sidecar_cors_origins),
            templates=load_templates(settings.wa_templates_file) if settings.wa_templates_file else [],
        )

    def problems(self) -> list[str]:
        """What is missing, for the startup log (the service still starts and says 503)."""
        out = []
        if not self.app_secret:
            out.append("ACD_WA_APP_SECRET is not set: every webhook POST is refused with 503")
        if not self.verify_token:
            out.append("ACD_WA_VERIFY_TOKEN is not set: Meta's webhook verification will fail")
        if not self.access_token or not self.phone_number_id:
            out.append("ACD_WA_ACCESS_TOKEN / ACD_WA_PHONE_NUMBER_ID not set: agents cannot send")
        if not self.agent_token_hashes and not self.admin_token:
            out.append(
                "no agent has token_sha256 in the queue file and ACD_ADMIN_TOKEN is not set: "
                "nobody can use the API or the stream"
            )
        unknown = [t for t in self.team if t not in self.agent_token_hashes]
        if unknown:
            out.append(
                f"ACD_WA_TEAM lists {', '.join(unknown)} without a token_sha256 in the queue file: "
                "they cannot sign in"
            )
        return out


class WhatsAppService:
    def __init__(
        self,
        config: WhatsAppConfig,
        *,
        engine: AsyncEngine | None = None,
        clock: Callable[[], float] = time.time,
        graph_transport: httpx.AsyncBaseTransport | None = None,
        relay_client: httpx.AsyncClient | None = None,
        backoff_scale: float = 1.0,
        auto_migrate: bool | None = None,
        ingest_batch: int = 100,
    ) -> None:
        self.config = config
        self.clock = clock
        self.engine = engine or create_engine(config.database_url)
        self._own_engine = engine is None
        self.metrics = Counters()
        self.prometheus = PrometheusExport(self.metrics, self._gauges)
        self.auth = SidecarAuth(config.admin_token, config.agent_token_hashes, config.team)
        self.hub = Hub(self.auth, self.metrics)
        self.writer = SidecarWriter(self.engine, synchronous=config.sqlite_synchronous)
        self.changelog = ChangeLog(self.engine, self.hub, clock, self.writer)
        self.ingestor = Ingestor(
            self.engine,
            self.changelog,
            self.metrics,
            batch=ingest_batch,
            orphan_ttl=config.orphan_ttl_hours * 3600,
            clock=clock,
        )
        self.inbox = webhook.InboxWriter(
            self.engine,
            clock,
            processor=self.ingestor.store_and_apply,
            on_stored_unprocessed=self.wake,
            writer=self.writer,
        )
        graph = None
        if config.access_token and config.phone_number_id:
            graph = GraphClient(
                config.graph_url,
                config.phone_number_id,
                config.access_token,
                timeout=config.send_timeout,
                transport=graph_transport,
            )
        self.sender = Sender(
            self.changelog,
            graph,
            self.auth,
            self.metrics,
            phone_number_id=config.phone_number_id,
            backoff_scale=backoff_scale,
        )
        self.forwarder = (
            Forwarder(
                self.engine,
                self.hub,
                config.relay_url,
                config.relay_secret,
                client=relay_client,
                metrics=self.metrics,
                writer=self.writer,
            )
            if config.relay_url
            else None
        )
        self.auto_migrate = auto_migrate
        self._wake_event = asyncio.Event()
        self._process_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self.app = self._build_app()

    # ----------------------------------------------------------------- app

    def _build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=webhook.MAX_BODY,
            middlewares=[
                cors_middleware(
                    self.config.cors_origins,
                    lambda kind: self.metrics.inc("cors_refused", kind=kind),
                ),
                api.json_errors,
            ],
        )
        app[SERVICE] = self
        if self.config.cors_origins:
            app.on_response_prepare.append(add_cors_headers(self.config.cors_origins))
        app.router.add_get(WEBHOOK_PATH, webhook.verify)
        app.router.add_post(WEBHOOK_PATH, webhook.receive)
        app.router.add_get("/api/stream", relay.ws_handler)
        app.router.add_get("/api/stream/sse", relay.sse_handler)
        app.add_routes(api.routes)

        async def end_streams(_app: web.Application) -> None:
            self.hub.close_all()  # before aiohttp waits for open handlers

        app.on_shutdown.append(end_streams)
        return app

    async def _gauges(self) -> list[tuple[str, str, float]]:
        """Scrape-time gauges for /metrics; the database ones only while it answers."""
        out: list[tuple[str, str, float]] = [
            (
                "stream_subscribers",
                "Open live stream connections (WebSocket and SSE)",
                len(self.hub.subscribers),
            ),
            (
                "send_queue",
                "Agent messages waiting in the per-conversation send queues",
                sum(len(q) for q in self.sender._queues.values()),
            ),
        ]
        inbox, orphans, counters = WebhookInbox.__table__, OrphanStatus.__table__, CounterRow.__table__
        try:
            async with asyncio.timeout(2.0), self.engine.connect() as conn:
                backlog = (
                    await conn.execute(select(func.count()).where(inbox.c.processed_at.is_(None)))
                ).scalar_one()
                pending_orphans = (await conn.execute(select(func.count()).select_from(orphans))).scalar_one()
                values = dict((await conn.execute(select(counters.c.name, counters.c.value))).all())
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database did
            log.warning("metrics: database not reachable", extra={"error": repr(exc)[:200]})
            return [*out, ("database_up", "1 if the database answered this scrape", 0)]
        out += [
            ("database_up", "1 if the database answered this scrape", 1),
            ("ingest_backlog", "Stored webhook bodies not processed yet (retries included)", backlog),
            (
                "orphan_statuses",
                "Statuses waiting for their message (they beat the send response)",
                pending_orphans,
            ),
            (
                "change_cursor",
                "Cursor of the latest change (frames pushed since the database was created)",
                values.get("cursor", 0),
            ),
        ]
        if self.forwarder is not None:
            lag = values.get("cursor", 0) - values.get("relay_cursor", 0)
            out.append(("relay_lag", "Changes not yet delivered to the outgoing webhook", lag))
        return out

    # ----------------------------------------------------------------- lifecycle

    async def migrate(self) -> None:
        auto = is_sqlite(self.engine) if self.auto_migrate is None else self.auto_migrate
        if auto:
            await upgrade(self.engine)
            return
        current, head = await current_revision(self.engine), head_revision()
        if current != head:
            raise MigrationNeeded(
                f"database is at revision {current or 'none'}, this version needs {head}: "
                "run `acdctl db upgrade`"
            )

    async def start(self) -> None:
        await self.migrate()
        for problem in self.config.problems():
            log.warning("sidecar: %s", problem)
        self.writer.start()
        await self.sender.recover()
        self._tasks.append(asyncio.create_task(self._ingest_loop(), name="wa-ingest"))
        self._tasks.append(asyncio.create_task(self._purge_loop(), name="wa-orphans"))
        if self.forwarder is not None:
            self._tasks.append(asyncio.create_task(self.forwarder.run(), name="wa-relay"))
        self.wake()  # bodies stored before a crash are processed now

    async def stop(self) -> None:
        self.hub.close_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.sender.close()
        if self.sender.graph is not None:
            await self.sender.graph.aclose()
        if self.forwarder is not None:
            await self.forwarder.aclose()
        await self.writer.close()
        if self._own_engine:
            await self.engine.dispose()

    def wake(self) -> None:
        self._wake_event.set()

    @property
    def running(self) -> bool:
        """Started and not stopped: webhook bodies are then processed as they are stored."""
        return bool(self._tasks)

    async def process_now(self) -> int:
        async with self._process_lock:
            return await self.ingestor.process_pending()

    async def _ingest_loop(self) -> None:
        while True:
            self._wake_event.clear()  # before looking, so a wake during the pass isn't lost
            try:
                taken = await self.process_now()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingest pass failed; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            if not taken:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that
                # arrives with the wake, and the worker would then never end (stop() hangs).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await self._wake_event.wait()

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.ingestor.purge_orphans()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("orphan purge failed")
            await asyncio.sleep(600)

    async def drain(self) -> None:
        """Process every stored body and finish every queued send (tests, benchmark, demo)."""
        while True:
            while await self.process_now():
                pass
            await self.sender.drain()
            if not await self.ingestor.pending():
                return


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or OSError (in use, not an address of this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


async def run_sidecar(config: WhatsAppConfig | Any) -> int:
    """``acdctl sidecar``: serve until SIGINT/SIGTERM (``config``: a WhatsAppConfig, or Settings)."""
    if not isinstance(config, WhatsAppConfig):
        config = WhatsAppConfig.from_settings(config)
    try:  # the port first: if it is taken, nothing has started that would need stopping
        sock = _listen(config.host, config.port)
    except OSError as exc:
        problem = f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        print(f"settings: ACD_SIDECAR_HOST/ACD_SIDECAR_PORT: {problem}", file=sys.stderr)
        return 2
    # Before anything starts: a SIGTERM/Ctrl-C during start-up must stop it cleanly (as soon as
    # start-up is done), not kill the process half-way or print a KeyboardInterrupt traceback.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    service = WhatsAppService(config)
    try:
        await service.start()
    except MigrationNeeded as exc:
        sock.close()
        log.error("sidecar: %s", exc)
        await service.stop()
        return 2
    gc.freeze()  # start-up objects out of the collector's way: shorter gen2 pauses under load
    runner = web.AppRunner(service.app, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    log.info(
        "WhatsApp sidecar listening",
        extra={"url": f"http://{config.host}:{config.port}", "webhook": WEBHOOK_PATH},
    )
    try:
        await stop.wait()
        log.info("WhatsApp sidecar stopping (signal)")
    finally:
        await runner.cleanup()
        await service.stop()
    return 0
