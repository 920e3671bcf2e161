"""One replica of a hot-standby pair: standby -> active -> fenced, around one lease.

States:
- ``standby``: tries the lease every ``renew`` s (only while its own ARI answers a ping, so a
  replica cut off from Asterisk never takes the app); serves the standby HTTP API; no websocket.
- ``active``: won the lease; builds a fresh controller (engine + shell) and the services, restores
  agent states from the store, opens the events websocket (Asterisk sends ``ApplicationReplaced``
  to whoever had it) and resyncs from ARI; renews every ``renew`` s.
- ``fenced``: the lease could not be proved any more (renewal refused, the local deadline passed,
  the events websocket down for longer than ``ari_grace``, or ``ApplicationReplaced``): the ARI
  client and the store writer refuse everything at once (they ask ``lease.held()`` /
  ``lease.check`` themselves), the controller is stopped, and ``run`` returns. ``acdctl run``
  exits with code 3 so its supervisor restarts it as a fresh standby: a process never goes back
  to active with the state of an earlier term.

The routing engine knows nothing of this: it only ever runs inside an active term.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from controller.ari.errors import ApplicationReplaced
from controller.ha.lease import Acquired, Lease

log = logging.getLogger("controller.ha")

__all__ = ["Node", "Term"]

START_GRACE = 10.0  # s a new term may take to restore and resync before "offline" counts


@dataclass
class Term:
    """What one active term runs: built by the caller's ``activate`` once the lease is won."""

    stop: Callable[[], Awaitable[None]]  # stop routing (no release: the node does that)
    ended: Awaitable[Any]  # completes when the controller's event stream ends on its own
    online: Callable[[], bool]  # the events websocket is connected and resynced
    extra: dict[str, Any] = field(default_factory=dict)


class Node:
    """The state machine. ``activate(acquired)`` builds and starts a term; see module docstring."""

    def __init__(
        self,
        lease: Lease,
        activate: Callable[[Acquired], Awaitable[Term]],
        *,
        renew: float = 1.0,
        ari_ok: Callable[[], Awaitable[bool]] | None = None,
        ari_grace: float | None = None,
    ) -> None:
        self.lease = lease
        self.activate = activate
        self.renew_every = renew
        self.ari_ok = ari_ok
        self.ari_grace = lease.ttl if ari_grace is None else ari_grace
        self.role = "standby"
        self.stats: Counter[str] = Counter()
        self.takeover_seconds: list[float] = []  # previous holder silent -> this one online
        self.term: Term | None = None
        self.reason = ""
        self.became_active = asyncio.Event()
        self.paused = False  # tests: a frozen renewal (the process would be stopped)
        self.start_grace = START_GRACE
        self._lost = asyncio.Event()
        self._stopping = asyncio.Event()
        self._watchdog: asyncio.TimerHandle | None = None
        self._standby_error: str | None = None

    # ------------------------------------------------------------------ public

    async def run(self) -> str:
        """Standby until the lease is won, active until fenced or stopped. Returns why it ended:
        ``stopped``, ``lost`` (renewal refused or deadline), ``ari`` or ``replaced``."""
        acquired = await self._standby()
        if acquired is None:
            return "stopped"
        return await self._active(acquired)

    async def stop(self) -> None:
        self._stopping.set()

    def lose(self, reason: str) -> None:
        """Fence now (called by the watchdog, a refused renewal or ``ApplicationReplaced``)."""
        if self._lost.is_set():
            return
        self.reason = reason
        self.lease.drop()  # the ARI client and the writer refuse from this instant
        self.role = "fenced"
        self.stats["lost"] += 1
        self._lost.set()

    # ------------------------------------------------------------------ standby

    async def _standby(self) -> Acquired | None:
        extra = {"lease": self.lease.name, "holder": self.lease.holder}
        log.info("standby: waiting for the lease", extra=extra)
        while not self._stopping.is_set():
            acquired = await self._try()
            if acquired is not None:
                return acquired
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.renew_every):
                    await self._stopping.wait()
        return None

    async def _try(self) -> Acquired | None:
        try:
            if self.ari_ok is not None and not await self.ari_ok():
                self._standby_problem("Asterisk does not answer this replica: not taking the lease")
                return None
            acquired = await self.lease.try_acquire()
        except Exception as exc:  # database down or not migrated: keep waiting, say it once
            self.stats["standby_errors"] += 1
            self._standby_problem(f"cannot reach the lease: {type(exc).__name__}: {str(exc)[:200]}")
            return None
        self._standby_error = None
        return acquired

    def _standby_problem(self, message: str) -> None:
        if self._standby_error != message:
            self._standby_error = message
            log.warning("standby: %s", message, extra={"lease": self.lease.name})

    # ------------------------------------------------------------------ active

    async def _active(self, acquired: Acquired) -> str:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.role = "active"
        self.stats["takeovers"] += 1
        self._arm_watchdog()
        renewer = loop.create_task(self._renew_forever())
        log.warning(
            "this replica is now the active controller",
            extra={
                "lease": self.lease.name,
                "token": acquired.token,
                "previous": acquired.previous or "-",
                "previous_silent_s": None if acquired.silent_for is None else round(acquired.silent_for, 3),
            },
        )
        try:
            return await self._serve_term(acquired, renewer, started)
        except asyncio.CancelledError:  # killed (tests): no release, no stop; the lease expires
            renewer.cancel()
            if self._watchdog is not None:
                self._watchdog.cancel()
            raise

    async def _serve_term(self, acquired: Acquired, renewer: asyncio.Task[None], started: float) -> str:
        loop = asyncio.get_running_loop()
        try:
            self.term = await self._until_lost(self.activate(acquired))
        except _Lost:
            self.term = None
        except Exception:
            log.exception("could not start the active term; giving the lease up")
            self.lose("start_failed")
            await self._finish(renewer, release=True)
            return "start_failed"
        if self.term is not None:
            self.became_active.set()
            took = loop.time() - started + (acquired.silent_for or 0.0)
            if acquired.previous:
                self.takeover_seconds.append(took)
            log.info("active and online", extra={"lease": self.lease.name, "takeover_s": round(took, 3)})
            ended = asyncio.ensure_future(self.term.ended)
            stopping = asyncio.ensure_future(self._stopping.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            await asyncio.wait({ended, stopping, lost}, return_when=asyncio.FIRST_COMPLETED)
            if ended.done() and not self._lost.is_set():
                error = None if ended.cancelled() else ended.exception()
                replaced = isinstance(error, ApplicationReplaced)
                self.lose("replaced" if replaced else "stream_ended")
            for f in (ended, stopping, lost):
                if not f.done():
                    f.cancel()
        release = not self._lost.is_set()  # a clean stop hands over at once
        reason = self.reason if self._lost.is_set() else "stopped"
        if self._lost.is_set():
            log.error(
                "fenced: stopped acting as the active controller; exit and come back as a standby",
                extra={"lease": self.lease.name, "reason": self.reason},
            )
        await self._finish(renewer, release=release)
        return reason

    async def _until_lost(self, work: Awaitable[Term]) -> Term:
        task = asyncio.ensure_future(work)
        lost = asyncio.ensure_future(self._lost.wait())
        await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise _Lost

    async def _finish(self, renewer: asyncio.Task[None], *, release: bool) -> None:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        if self._watchdog is not None:
            self._watchdog.cancel()
        term, self.term = self.term, None
        if term is not None:
            try:
                await term.stop()
            except Exception:
                log.exception("error while stopping the active term")
        if release:
            try:
                await self.lease.release()
            except Exception as exc:
                log.warning("could not release the lease (it expires by itself): %s", exc)
        self.role = "stopped" if release else "fenced"

    def _arm_watchdog(self) -> None:
        """A timer at the lease's local deadline: past it this replica must not act."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_at(loop.time() + self.lease.remaining(), self._deadline)

    def _deadline(self) -> None:
        if self.paused:
            return  # tests: a frozen process runs no timer either
        if not self.lease.held():
            self.lose("deadline")
        else:
            self._arm_watchdog()

    async def _renew_forever(self) -> None:
        # A term that never gets online must not keep the app either (start: store restore, resync).
        began = time.monotonic()
        offline_since: float | None = None
        while True:
            await asyncio.sleep(self.renew_every)
            if self.paused:
                continue
            term = self.term
            now = time.monotonic()
            if term is None:
                cut_off = now - began >= self.start_grace + self.ari_grace
            elif term.online():
                offline_since, cut_off = None, False
            else:
                offline_since = now if offline_since is None else offline_since
                cut_off = now - offline_since >= self.ari_grace
            if cut_off:
                # Asterisk unreachable from here: hand the app to a replica that can reach it
                self.stats["ari_lost"] += 1
                token = self.lease.token
                self.lease.drop()  # fenced at once; released before the node stops this task
                with contextlib.suppress(Exception):
                    await self.lease.release(token)
                self.lose("ari")
                return
            try:
                ok = await self.lease.renew()
            except Exception as exc:  # the watchdog fences us if this lasts until the deadline
                self.stats["renew_failures"] += 1
                log.warning(
                    "cannot renew the lease: %s",
                    f"{type(exc).__name__}: {str(exc)[:200]}",
                    extra={"lease": self.lease.name, "remaining_s": round(self.lease.remaining(), 3)},
                )
                continue
            if not ok:
                self.stats["renew_refused"] += 1
                self.lose("taken")
                return
            self._arm_watchdog()


class _Lost(Exception):
    pass
