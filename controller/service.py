"""Everything around the routing: history store, queue_log, events webhook, HTTP API.

``acdctl run`` and ``acdctl demo`` both build a :class:`Controller` and hand it to
:class:`Services`. ``attach()`` (before ``controller.start()``, so the first agent states are kept)
opens and migrates the database and hooks the writers onto the shell's listeners; ``serve()``
starts the HTTP API; ``close()`` flushes and stops all of it. A database that is down at start
never stops calls: its records wait in the writer's buffer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from controller.api.app import ApiContext, build_app, identify, serve
from controller.api.auth import Auth
from controller.api.metrics import Metrics
from controller.api.views import wall_for
from controller.config import ConfigError, Settings, load_supervisors, redact_url
from controller.events import WebhookDeliverer
from controller.panel.crm import CrmLookup
from controller.panel.hub import PanelHub
from controller.panel.routes import PanelConfig
from controller.reload import Reloader
from controller.store import create_engine, is_sqlite
from controller.store.agent_state import load_agent_states, restore_events, save_first_seen
from controller.store.books import Books
from controller.store.migrate import current_revision, head_revision, upgrade
from controller.store.queue_log import QueueLog
from controller.store.writer import HistoryWriter
from controller.wallboard import routes as wallboard_routes
from controller.wallboard.hub import WallboardHub

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from controller.app import Controller

__all__ = ["Services"]

log = logging.getLogger("controller.service")


class Services:
    def __init__(
        self,
        controller: Controller,
        settings: Settings,
        *,
        agent_tokens: dict[str, str] | None = None,
        db: AsyncEngine | None = None,
        writer_options: dict | None = None,
        webhook_options: dict | None = None,
        demo: bool = False,
    ) -> None:
        self.controller = controller
        self.settings = settings
        self.agent_tokens = agent_tokens or {}
        self.db = db
        self._own_db = db is None
        self.writer: HistoryWriter | None = None
        self.queue_log: QueueLog | None = None
        self.webhook: WebhookDeliverer | None = None
        self.metrics: Metrics | None = None
        self.runner: web.AppRunner | None = None
        self.url: str | None = None
        self.panel: PanelHub | None = None
        self.panel_config = PanelConfig(settings.panel_whatsapp_url, settings.panel_language, demo=demo)
        self.app_hooks: list[Callable[[web.Application], None]] = []
        self.extra_health: Callable[[], Awaitable[dict]] | None = None  # hot standby: /healthz "ha"
        self._auth: Auth | None = None
        self.reloader = Reloader(controller, settings.config)
        self.reloader.on_tokens.append(lambda tokens: self.api_auth.set_agent_tokens(tokens))
        self.reloader.on_tokens.append(lambda _: self.api_auth.set_supervisors(self._supervisors()))
        self.wallboard: WallboardHub | None = None
        self._writer_options = writer_options or {}
        self.books: Books | None = None
        self._webhook_options = webhook_options or {}

    async def attach(self) -> None:
        """Open + migrate the database, start the writers. Call before ``controller.start()``."""
        s, c = self.settings, self.controller
        # the panel's live stream hears every agent-facing command from the first one on
        crm = CrmLookup(s.crm_url, s.crm_timeout) if s.crm_url else None
        self.panel = PanelHub(c, wall_for(c.clock), crm=crm)
        c.shell.listeners.append(self.panel.listener)
        if self.db is None:
            self.db = create_engine(s.database_url)
        await self._migrate()
        self._attach_wallboard()
        self.writer = HistoryWriter(
            self.db,
            engine=c.engine,
            clock_now=c.clock.now,
            max_buffer=s.store_buffer,
            events=bool(s.events_url),
            **self._writer_options,
        )
        self.writer.touched = set()  # until the books are closed (close_books)
        c.shell.recorders.append(self.writer.listener)  # told at once (write-ahead)
        self.writer.start()
        await self._restore_agents()
        self.metrics = Metrics(c, self.writer)
        self.metrics.panel = self.panel
        self.metrics.wallboard = self.wallboard
        self.metrics.reloads = self.reloader.stats
        if s.queue_log:
            self.queue_log = QueueLog(s.queue_log, c.engine, epoch=self.writer.epoch)
            c.shell.listeners.append(self.queue_log.listener)
            self.queue_log.start()
        if s.events_url:
            self.webhook = WebhookDeliverer(
                self.db, s.events_url, s.events_secret.get_secret_value(), **self._webhook_options
            )
            self.writer.on_commit.append(self.webhook.wake)
            self.metrics.outbox_pending = lambda: self.webhook.pending if self.webhook else None
            self.webhook.start()

    def _attach_wallboard(self) -> None:
        """The supervisors' wallboard: its hub hears the shell, its routes join the API's app."""
        c = self.controller
        hub = self.wallboard = WallboardHub(
            c,
            wall_for(c.clock),
            db=self.db,
            service_level=self.settings.service_level,
            service_level_target=self.settings.service_level_target / 100,
            history_now=lambda: self.writer.ts(c.clock.now()) if self.writer is not None else None,
        )
        c.shell.listeners.append(hub.listener)
        key = web.AppKey("acd_wallboard", WallboardHub)

        def mount(app: web.Application) -> None:
            app[key] = hub
            wallboard_routes.add_routes(app, key, lambda header: identify(self.api_auth, header))

        self.app_hooks.append(mount)

    async def _restore_agents(self) -> None:
        """Paused (with reason), logged out, not responding, misses, wrap-up end as the store kept
        them, before the first ARI event; agents the store never saw keep the queue file's state.
        A database that cannot be read is logged and the queue file's states are used."""
        assert self.db is not None and self.writer is not None
        c = self.controller
        try:
            async with asyncio.timeout(10):
                stored = await load_agent_states(self.db)
        except Exception as exc:
            log.error(
                "cannot read the agents' saved states; starting with the queue file's",
                extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
            return
        events = restore_events(stored, c.engine.agents, self.writer.epoch)
        for event in events:
            c.shell.feed(event)
        seen = {s.agent for s in stored}
        first = [c.engine.agent_snapshot(a) for a in c.engine.agents if a not in seen]
        try:
            await save_first_seen(self.db, first)
        except Exception as exc:
            log.error(
                "cannot save the queue file's agent states",
                extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
        log.info(
            "agent states restored",
            extra={
                "restored": len(events),
                "new": len(first),
                "paused": sum(e.presence == "paused" for e in events),
                "logged_out": sum(e.presence == "logged_out" for e in events),
                "not_responding": sum(e.presence == "not_responding" for e in events),
            },
        )

    def close_books(self, detail: str = "restart", *, ids_reused: bool = True) -> Books | None:
        """After ``controller.start()`` (resynced): close in the background the rows an earlier run
        or term left open (``controller.store.books``); retried while the database is away."""
        if self.writer is None:
            return None
        c = self.controller

        async def in_app() -> set[str]:
            return set((await c.client.get_application(c.shell.app)).channel_ids)

        self.books = Books(
            self.writer,
            in_app=in_app,
            known_calls=lambda: set(c.engine.calls) | set(c.shell.calls),
            restored=c.shell.restored_offers,
            now=c.clock.now,
            detail=detail,
            ids_reused=ids_reused,
        )
        self.books.start()
        return self.books

    async def _migrate(self) -> None:
        assert self.db is not None
        where = redact_url(self.settings.database_url)
        if is_sqlite(self.db):
            try:
                await upgrade(self.db)
            except Exception as exc:
                problem = f"cannot open or migrate {where}: {exc}"
                raise ConfigError(f"settings: ACD_DATABASE_URL: {problem}") from None
            return
        try:
            async with asyncio.timeout(10):
                current = await current_revision(self.db)
        except Exception as exc:
            log.error(
                "database unreachable at start; calls are routed and history is buffered until it is back",
                extra={"database": where, "error": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
            return
        head = head_revision()
        if current != head:
            log.error(
                "database schema is not up to date: run `acdctl db upgrade`; history is buffered meanwhile",
                extra={"database": where, "revision": current, "expected": head},
            )

    @property
    def api_auth(self) -> Auth:
        if self._auth is None:
            admin = self.settings.admin_token.get_secret_value()
            self._auth = Auth(admin, self.agent_tokens, self._supervisors())
        return self._auth

    def _supervisors(self) -> dict:
        """``[supervisors.ID]`` of the queue file (validated by ``load_setup``); none if unreadable."""
        try:
            return load_supervisors(self.settings.config)
        except ConfigError:
            return {}

    def api_context(self) -> ApiContext:
        return ApiContext(
            self.controller,
            self.api_auth,
            db=self.db,
            writer=self.writer,
            metrics=self.metrics,
            service_level=self.settings.service_level,
            panel=self.panel,
            panel_config=self.panel_config,
            app_hooks=list(self.app_hooks),
            reload=self.reloader.reload,
            extra={"ha": self.extra_health} if self.extra_health is not None else {},
        )

    async def serve(self, host: str | None = None, port: int | None = None) -> str:
        """Start the HTTP API (``port`` 0 = any free port); returns its base URL."""
        host = host or self.settings.http_host
        port = self.settings.http_port if port is None else port
        try:
            self.runner, self.url = await serve(build_app(self.api_context()), host, port)
        except OSError as exc:
            problem = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            raise ConfigError(f"settings: ACD_HTTP_HOST/ACD_HTTP_PORT: {problem}") from None
        if self.panel is not None:
            self.panel.start()
        if self.wallboard is not None:
            self.wallboard.start()
        log.info("HTTP API and agent panel listening", extra={"url": self.url})
        return self.url

    async def close(self) -> None:
        if self.panel is not None:
            await self.panel.close()  # ends the open streams, so the runner need not wait for them
        if self.wallboard is not None:
            await self.wallboard.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.books is not None:
            await self.books.stop()
        if self.writer is not None:
            await self.writer.close()
        if self.queue_log is not None:
            await self.queue_log.close()
        if self.webhook is not None:
            await self.webhook.close()
        if self.db is not None and self._own_db:
            await self.db.dispose()
