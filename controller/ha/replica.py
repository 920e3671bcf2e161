"""A whole hot-standby replica: the node's state machine wired to a controller and its services.

Each active term builds a fresh ``Controller`` (engine + shell + ARI client) and fresh
``Services`` (store writer, HTTP API): what the term knows comes from the store (agent states,
restored before the first ARI event) and from ARI (the resync takes back every caller and leg it
finds). The ARI client asks ``lease.held()`` before every request and the store writer checks the
token inside every write transaction, so a term that lost its lease can neither send nor write.
``acdctl run`` with ``ACD_HA=true`` and the HA tests both use this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from controller.api.app import serve
from controller.api.auth import Auth
from controller.app import Controller
from controller.ari.client import AriClient
from controller.config import Settings
from controller.ha.lease import SAFETY, Acquired, Lease
from controller.ha.node import Node, Term
from controller.ha.standby_api import build_standby_app, ha_metrics
from controller.store import create_engine

log = logging.getLogger("controller.ha")


def ha_engine(settings: Settings, **kwargs: Any) -> Any:
    """An engine whose sessions PostgreSQL ends when they sit in a transaction for half the
    lease's trusted time (``idle_in_transaction_session_timeout``).

    Why: a replica frozen (SIGSTOP, paused VM) inside a transaction keeps its row locks, and
    its TCP connection stays open, so without this the lock would be held for as long as the
    freeze. The history writer's ``for share`` on the lease row, a renewal's update or a
    takeover's ``for update`` would then block every other replica's takeover or renewal
    indefinitely (found by tests/ha/test_processes.py: a SIGSTOP during a history write blocked
    the standby). A normal transaction is idle for microseconds between its statements."""
    timeout_ms = max(50, int(settings.ha_ttl * SAFETY / 2 * 1000))
    connect_args = {"server_settings": {"idle_in_transaction_session_timeout": str(timeout_ms)}}
    return create_engine(settings.database_url, connect_args=connect_args, **kwargs)


__all__ = ["Replica"]

DURABLE_WAIT_SHARE = 0.5  # of ACD_HA_TTL: gives up before the local deadline (0.8 TTL) fences it


class Replica:
    """``start()`` serves the standby API and runs the node; ``ended`` resolves with the reason."""

    def __init__(
        self,
        settings: Settings,
        make_controller: Callable[[], Controller],
        *,
        db: Any = None,
        lease_db: Any = None,
        agent_tokens: dict[str, str] | None = None,
        holder: str | None = None,
        http: bool = True,
        host: str | None = None,
        port: int | None = None,
        services_options: dict[str, Any] | None = None,
        on_term: Callable[[Controller, Any], None] | None = None,
    ) -> None:
        self.settings = settings
        self.make_controller = make_controller
        self.db = db
        self._own_lease_db = lease_db is None
        # its own small pool: a renewal never waits behind the history writer's connections
        self.lease_db = lease_db or ha_engine(settings, pool_size=2, max_overflow=0)
        self.agent_tokens = agent_tokens
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.http = http
        self.host = host or settings.http_host
        self.port = settings.http_port if port is None else port
        self.services_options = services_options or {}
        self.on_term = on_term
        address = settings.ha_address.strip() or f"http://{socket.gethostname()}:{self.port}"
        self.lease = Lease(self.lease_db, settings.ari_app, self.holder, address, ttl=settings.ha_ttl)
        self.node = Node(self.lease, self._activate, renew=settings.ha_renew, ari_ok=self._ari_ok)
        # wall s a ring or a new caller's first action waits for the database's commit (write-ahead)
        self.durable_wait = settings.ha_ttl * DURABLE_WAIT_SHARE
        self.controller: Controller | None = None
        self.term_token: int | None = None  # the lease token of this replica's active term
        self.services: Any = None
        self.url: str | None = None
        self.ended: asyncio.Future[str] | None = None
        self._auth = Auth(settings.admin_token.get_secret_value(), agent_tokens or {})
        self._probe: AriClient | None = None
        self._standby_runner: web.AppRunner | None = None
        self._task: asyncio.Task[str] | None = None
        self._term_db: Any = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.http:
            await self._serve_standby()
        self._task = asyncio.get_running_loop().create_task(self.node.run())
        self.ended = self._task

    async def stop(self) -> str:
        """Clean stop: the lease is released, so a standby takes over at once."""
        await self.node.stop()
        reason = "stopped"
        task, self._task = self._task, None
        if task is not None:
            try:
                reason = await task
            except asyncio.CancelledError:
                reason = "killed"
        await self._close()
        return reason

    async def kill(self) -> None:
        """Tests: what ``kill -9`` leaves behind: the lease row stays until it expires, nothing
        buffered is written, the websocket and HTTP sockets close."""
        self.lease.drop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self.services is not None and self.services.writer is not None:
            await self.services.writer.close(timeout=0)
        await self._stop_term()
        await self._close()

    async def _close(self) -> None:
        if self._standby_runner is not None:
            await self._standby_runner.cleanup()
            self._standby_runner = None
        if self._probe is not None:
            await self._probe.close()
            self._probe = None
        if self._own_lease_db:
            await self.lease_db.dispose()
            self._own_lease_db = False

    # ------------------------------------------------------------------ standby side

    async def _serve_standby(self) -> None:
        app = build_standby_app(self.node, self._auth, self.status)
        self._standby_runner, self.url = await serve(app, self.host, self.port)
        log.info("standby HTTP API listening", extra={"url": self.url})

    async def status(self) -> dict[str, Any]:
        """Who holds the lease, as the database says (for /healthz of both roles)."""
        body: dict[str, Any] = {"role": self.node.role, "holder": self.holder, "lease": self.lease.name}
        try:
            info = await self.lease.current()
        except Exception as exc:
            body["database"] = False
            body["error"] = f"{type(exc).__name__}"
            return body
        body["database"] = True
        if info is not None and info.live:
            body["active"] = info.address
            body["active_holder"] = info.holder
            body["token"] = info.token
        else:
            body["active"] = None
        return body

    async def _ari_ok(self) -> bool:
        """A standby takes the lease only if it can reach Asterisk itself."""
        if self._probe is None:
            c = self.make_controller().client  # same URL and credentials, its own session
            self._probe = AriClient(c.base_url, c.user, c._password, c.app, request_timeout=2)
            await c.close()
        try:
            await self._probe.ping()
        except Exception:
            return False
        return True

    # ------------------------------------------------------------------ active side

    async def _activate(self, acquired: Acquired) -> Term:
        try:
            return await self._start_term(acquired)
        except BaseException:  # failed or cancelled (lease lost while starting): close what opened
            with contextlib.suppress(Exception):
                await self._stop_term()
            raise

    async def _start_term(self, acquired: Acquired) -> Term:
        from controller.service import Services  # history store, API (imports the whole app)

        controller = self.make_controller()
        self.term_token = acquired.token
        controller.client.fence = self.lease.held
        if acquired.token > 1:
            controller.engine.offer_prefix = f"t{acquired.token}."
        db = self.db
        if db is None:  # this term's own pool, disposed with the term
            db = self._term_db = ha_engine(self.settings)
        services = Services(
            controller, self.settings, agent_tokens=self.agent_tokens, db=db, **self.services_options
        )
        self.controller, self.services = controller, services
        await services.attach()  # agent states from the store, before the first ARI event
        assert services.writer is not None and services.metrics is not None
        services.writer.guard = self.lease.check
        # write-ahead: a ring or a new caller's first action waits for its row, bounded below the
        # local deadline (a replica that cannot write is fenced anyway)
        writer = services.writer
        controller.shell.durable = lambda: writer.durable(timeout=self.durable_wait)
        services.metrics.extra_collectors.append(lambda: ha_metrics(self.node))
        if self.on_term is not None:
            self.on_term(controller, services)
        await controller.start()  # the websocket: Asterisk tells the former holder ApplicationReplaced
        # offer ids of term n > 1 are <call>-t<n>.<k>; term 1's are a single node's, <call>-<n>
        services.close_books("takeover", ids_reused=acquired.token <= 1)
        if self.http:
            if self._standby_runner is not None:
                await self._standby_runner.cleanup()
                self._standby_runner = None
            services.extra_health = self.status
            self.url = await services.serve(self.host, self.port)
        log.info("resynced from ARI and the store", extra={"token": acquired.token})
        return Term(
            stop=self._stop_term,
            ended=controller.wait(),
            online=lambda: controller.shell.online.is_set(),
        )

    async def _stop_term(self) -> None:
        controller, services = self.controller, self.services
        if services is not None and services.writer is not None and not self.lease.held():
            # fenced: nothing may be written any more, so do not wait for a flush that cannot happen
            await services.writer.close(timeout=0)
        if controller is not None:
            await controller.stop()
        if services is not None:
            await services.close()
        term_db, self._term_db = self._term_db, None
        if term_db is not None:
            await term_db.dispose()
