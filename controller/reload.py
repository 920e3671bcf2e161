"""Reloading the queue file while calls go on (SIGHUP, ``POST /api/admin/reload``).

The file goes through exactly the validation of a start (``load_setup``: same messages); an
invalid file changes nothing and the problems are returned, logged and counted. A valid one is
handed to the engine as ``SetupReloaded`` (what happens to removed agents, removed queues and
waiting callers is the engine's rule, see ``Engine._on_reload``), then the shell watches the
endpoints of new agents so they are rung without a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.acd import events as ev
from controller.acd.setup import AcdSetup
from controller.config import ConfigError, load_agent_tokens, load_setup, setup_warnings

if TYPE_CHECKING:
    from controller.app import Controller

__all__ = ["ReloadResult", "Reloader", "diff_setups"]

log = logging.getLogger("controller.reload")


def diff_setups(old: AcdSetup, new: AcdSetup) -> dict[str, dict[str, list[str]]]:
    """What a reload changes, by name: ``{"queues"|"agents": {"added", "removed", "changed"}}``."""
    out: dict[str, dict[str, list[str]]] = {}
    for kind, before, after in (("queues", old.queues, new.queues), ("agents", old.agents, new.agents)):
        out[kind] = {
            "added": sorted(after.keys() - before.keys()),
            "removed": sorted(before.keys() - after.keys()),
            "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
        }
    return out


@dataclass
class ReloadResult:
    ok: bool
    changes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        if not self.ok:
            return {"reloaded": False, "errors": self.errors}
        return {"reloaded": True, "changes": self.changes, "warnings": self.warnings}


class Reloader:
    """One per process; reloads never overlap (a second request waits for the first)."""

    def __init__(self, controller: Controller, path: str | Path) -> None:
        self.controller = controller
        self.path = Path(path)
        self.stats: Counter[str] = Counter()  # ok, rejected (invalid file), failed (a bug)
        self.on_tokens: list[Any] = []  # callbacks(agent id -> token hash) for the API's auth
        self._lock = asyncio.Lock()

    async def reload(self) -> ReloadResult:
        async with self._lock:
            try:
                setup = await asyncio.to_thread(load_setup, self.path)
                tokens = await asyncio.to_thread(load_agent_tokens, self.path)
            except ConfigError as exc:
                self.stats["rejected"] += 1
                log.error(
                    "queue file reload rejected: nothing changed",
                    extra={"config": str(self.path), "problems": exc.problems},
                )
                return ReloadResult(False, errors=list(exc.problems))
            c = self.controller
            changes = diff_setups(c.engine.setup, setup)
            try:
                c.shell.feed(ev.SetupReloaded(setup))
            except Exception as exc:  # a bug, not the admin's file: say so, keep running
                self.stats["failed"] += 1
                log.exception("queue file reload failed", extra={"config": str(self.path)})
                return ReloadResult(False, errors=[f"internal error while applying the file: {exc!r}"])
            for callback in self.on_tokens:
                callback(tokens)
            warnings = setup_warnings(setup)
            self.stats["ok"] += 1
            log.info("queue file reloaded", extra={"config": str(self.path), "changes": changes})
            for warning in warnings:
                log.warning("config: %s", warning, extra={"config": str(self.path)})
            await self._watch_endpoints()
            return ReloadResult(True, changes=changes, warnings=warnings)

    async def _watch_endpoints(self) -> None:
        """New agents' phones: subscribe and read their state now (the socket may be down: then
        the next connect does it)."""
        c = self.controller
        if not c.stream.connected:
            return
        try:
            await c.shell.watch_endpoints()
        except Exception as exc:  # ARI trouble: the next (re)connect watches them all again
            self.stats["watch_failed"] += 1
            log.warning(
                "cannot watch the reloaded agents' endpoints yet: %s",
                exc,
                extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
