"""The controller process: settings + queue file -> engine, ARI client, event stream, shell.

``acdctl run`` calls ``run_controller``. The demo (``controller.demo``) builds on this module,
never the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from typing import Any

from controller.acd.engine import Engine
from controller.acd.setup import AcdSetup
from controller.ari.client import AriClient
from controller.ari.errors import ApplicationReplaced, AriConnectionError, AriError, AriUnauthorized
from controller.ari.events import EventStream
from controller.clock import Clock
from controller.config import ConfigError, Settings, load_agent_tokens
from controller.telephony.shell import Telephony

log = logging.getLogger("controller.app")


class Controller:
    """One running controller attached to one ARI app."""

    def __init__(
        self,
        setup: AcdSetup,
        *,
        ari_url: str,
        ari_user: str,
        ari_password: str,
        ari_app: str = "acd",
        clock: Clock | None = None,
        seed: int | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        info_headers: tuple[str, ...] = (),
    ) -> None:
        self.clock = clock or Clock()
        self.engine = Engine(setup, seed=seed)
        self.client = AriClient(ari_url, ari_user, ari_password, ari_app)
        self.shell = Telephony(self.engine, self.client, self.clock, info_headers=info_headers)
        self.stream = EventStream(
            self.client,
            self.shell.on_event,
            on_connect=self.shell.on_connect,
            on_disconnect=self.shell.on_disconnect,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            types=self.shell.event_types,
        )
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, setup: AcdSetup, **kw: Any) -> Controller:
        return cls(
            setup,
            ari_url=settings.ari_url,
            ari_user=settings.ari_user,
            ari_password=settings.require_ari_password(),
            ari_app=settings.ari_app,
            info_headers=tuple(settings.info_headers),
            **kw,
        )

    async def check_ari(self) -> dict[str, Any]:
        """Fail fast at start: unreachable ARI or wrong credentials are configuration errors."""
        return await self.client.asterisk_info()

    async def start(self) -> None:
        """Start consuming events; returns once the first socket is connected and resynced."""
        self._task = asyncio.get_running_loop().create_task(self.stream.run())
        waiter = asyncio.ensure_future(self.stream.first_connected.wait())
        done, _ = await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()  # raises AriUnauthorized / ApplicationReplaced
        # What exists now lives as long as the process: keep full GC passes from walking it
        # (a full collection of a large steady state costs tens of ms of reaction time).
        gc.freeze()

    async def wait(self) -> None:
        """Run until the event stream ends (stop() or another controller took the app over)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        await self.stream.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, ApplicationReplaced, AriError):
                await self._task
        await self.shell.close()
        await self.client.close()


def _stderr(message: str) -> None:
    print(f"acdctl: {message}", file=sys.stderr)


async def run_controller(settings: Settings, setup: AcdSetup) -> int:
    """``acdctl run``: attach to ARI and route calls until SIGINT/SIGTERM."""
    if settings.ha:  # hot standby: one replica of several (controller.ha)
        from controller.ha.run import run_ha

        return await run_ha(settings, setup)
    controller = Controller.from_settings(settings, setup)
    try:
        info = await controller.check_ari()
    except AriUnauthorized as exc:
        _stderr(str(exc))
        await controller.client.close()
        return 2
    except (AriConnectionError, AriError) as exc:
        _stderr(f"{exc} (is Asterisk running with ARI enabled in http.conf and ari.conf? check ACD_ARI_URL)")
        await controller.client.close()
        return 2
    version = (info.get("system") or {}).get("version", "?") if isinstance(info, dict) else "?"
    log.info(
        "attached to Asterisk",
        extra={"ari_url": settings.ari_url, "asterisk": version, "app": settings.ari_app},
    )
    from controller.service import Services  # history store, queue_log, events, HTTP API

    services = Services(controller, settings, agent_tokens=load_agent_tokens(settings.config))
    try:
        await services.attach()
    except ConfigError as exc:
        _stderr(str(exc))
        await services.close()
        await controller.client.close()
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[Any]] = set()

    def on_sighup() -> None:  # reload the queue file; the result is logged by the reloader
        task = loop.create_task(services.reloader.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    try:
        await controller.start()
        services.close_books("restart")  # rows the previous run left open
        await services.serve()
    except ConfigError as exc:
        _stderr(str(exc))
        await controller.stop()
        await services.close()
        return 2
    except AriUnauthorized as exc:
        _stderr(str(exc))
        await controller.stop()
        await services.close()
        return 2
    except ApplicationReplaced:
        await controller.stop()
        await services.close()
        return 1
    stopper = asyncio.ensure_future(stop.wait())
    runner = asyncio.ensure_future(controller.wait())
    await asyncio.wait({stopper, runner}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if runner.done() and isinstance(runner.exception(), ApplicationReplaced):
        code = 1
    stopper.cancel()
    log.info("stopping")
    await controller.stop()
    await services.close()
    return code
