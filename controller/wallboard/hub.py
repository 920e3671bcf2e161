"""Live state for supervisors' wallboards: queues, agents and today's charts, per scope.

Like the agent panel's stream, this is *state*, not a log: every connection (or reconnection)
starts with a snapshot, then gets one ``delta`` frame per coalesced change with only the queues
and agents whose views changed. Changes are noticed from the shell's Notify/Record commands
(coalesced per loop iteration) and by a 1 s tick that catches timed changes (end of wrap-up).

Views are built once per change for everybody; each *scope* (the set of queues a supervisor may
see; the admin's scope is everything) keeps what it last sent, so 50 wallboards of the same
queues cost one comparison, not 50. Charts come from the store every ``charts_every`` seconds,
per scope, and are sent only when they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

from controller.acd import commands as cmd
from controller.store import reports
from controller.wallboard.views import agent_view, member_ids, queue_views, scoped_agent

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from controller.app import Controller

__all__ = ["WallFeed", "WallboardHub"]

log = logging.getLogger("controller.wallboard")

_QUEUE_LIMIT = 500
ALL = "*"  # the charts' key for every queue of the scope together
_ENDINGS = frozenset({"call.ended", "offer.ended"})


class WallFeed:
    """One connected wallboard."""

    def __init__(self, scope: Scope, viewer: dict[str, Any]) -> None:
        self.scope = scope
        self.viewer = viewer
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()  # encoded JSON frames
        self.seq = 0
        self.closed = False


class Scope:
    """The wallboards that see the same queues (``None``: the admin's, every queue)."""

    def __init__(self, queues: frozenset[str] | None) -> None:
        self.queues = queues
        self.feeds: set[WallFeed] = set()
        self.sent_queues: dict[str, dict[str, Any]] = {}
        self.sent_agents: dict[str, dict[str, Any]] = {}
        self.charts: dict[str, Any] | None = None

    def sees_queue(self, name: str) -> bool:
        return self.queues is None or name in self.queues


class WallboardHub:
    def __init__(
        self,
        controller: Controller,
        wall: Callable[[float | None], str | None],
        *,
        db: AsyncEngine | None = None,
        service_level: float = 20.0,
        service_level_target: float = 0.8,
        tick: float = 1.0,
        charts_every: float = 30.0,
        charts_gap: float = 5.0,
        history_now: Callable[[], datetime | None] | None = None,
    ) -> None:
        self.controller = controller
        self.engine = controller.engine
        self.wall = wall
        self.db = db
        self.service_level = service_level
        self.service_level_target = service_level_target
        self.tick = tick
        self.charts_every = charts_every
        self.charts_gap = charts_gap  # at least this long between two refreshes caused by calls
        self._charts_due = False
        # "now" on the history's time line (the writer's; a sped-up demo runs ahead of the wall)
        self.history_now = history_now
        self.scopes: dict[frozenset[str] | None, Scope] = {}
        self.agents: dict[str, dict[str, Any]] = {}  # base views (everything), by agent id
        self.queues: dict[str, dict[str, Any]] = {}  # base views, by queue name
        self.states: dict[str, str] = {}  # state word of each agent's view in the cache
        # since when each agent is in its state; kept even while no wallboard is open
        self.since: dict[str, str | None] = {}
        self._seen: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}  # queue -> agent ids, kept with the views
        self._dirty_agents: set[str] = set()
        self._dirty_queues: set[str] = set()
        self._scheduled = False
        self._tasks: list[asyncio.Task] = []
        self._charts_wake = asyncio.Event()
        self.stats = {"flushes": 0, "frames": 0, "chart_errors": 0}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._ticker(), name="wallboard-tick"),
                loop.create_task(self._charts_loop(), name="wallboard-charts"),
            ]

    async def close(self) -> None:
        for scope in self.scopes.values():
            for feed in scope.feeds:
                self._end(feed)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def connections(self) -> int:
        return sum(len(s.feeds) for s in self.scopes.values())

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.tick_once()

    def tick_once(self) -> None:
        """Catch changes no command announces (end of wrap-up, agents added by a reload...).

        Only the one-word status is compared per agent; views are rebuilt only on change."""
        if not self.connections:
            return
        states = self.states
        for agent_id, agent in self.engine.agents.items():
            if states.get(agent_id) != agent.status:
                self._dirty_agents.add(agent_id)
        gone = [a for a in self.agents if a not in self.engine.agents]
        self._dirty_agents.update(gone)
        queues = self.engine.setup.queues
        if len(queues) != len(self.queues) or any(q not in self.queues for q in queues):
            self._dirty_queues.update(queues)  # a reload added or removed queues
            self._dirty_queues.update(self.queues)
        if self._dirty_agents or self._dirty_queues:
            self._flush()

    # ------------------------------------------------------------------ input

    def listener(self, command: cmd.Notify | cmd.Record) -> None:
        """Shell listener: note which agents and queues need a look (never blocks the shell)."""
        agent = command.agent_id if isinstance(command, cmd.Notify) else command.data.get("agent")
        if isinstance(agent, str) and agent:
            self._note_state(agent)
        if not self.connections:
            return
        if isinstance(agent, str) and agent:
            self._dirty_agents.add(agent)
        queue = command.data.get("queue")
        if isinstance(queue, str):
            self._dirty_queues.add(queue)
        if type(command) is cmd.Record and command.kind in _ENDINGS and not self._charts_due:
            self._charts_due = True  # today's figures changed: refresh soon, not per call
            self._charts_wake.set()
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, queues: frozenset[str] | None, viewer: dict[str, Any]) -> WallFeed:
        if not self.connections:
            self._rebuild()  # nobody watched: the cache may be stale
        scope = self.scopes.get(queues)
        if scope is None:
            scope = self.scopes[queues] = Scope(queues)
            scope.sent_queues = {n: v for n, v in self.queues.items() if scope.sees_queue(n)}
            scope.sent_agents = self._scoped_agents(scope)
        feed = WallFeed(scope, viewer)
        scope.feeds.add(feed)
        snapshot = {
            "type": "snapshot",
            "viewer": viewer,
            "service_level_seconds": self.service_level,
            "service_level_target": self.service_level_target,
            "queues": dict(scope.sent_queues),  # copies: the scope's dicts change after this
            "agents": dict(scope.sent_agents),
        }
        self._send(feed, snapshot)
        if scope.charts is not None:
            self._send(feed, scope.charts)
        self._charts_wake.set()
        return feed

    def unsubscribe(self, feed: WallFeed) -> None:
        scope = feed.scope
        scope.feeds.discard(feed)
        if not scope.feeds:
            self.scopes.pop(scope.queues, None)
        feed.closed = True

    # ------------------------------------------------------------------ views

    def _now_wall(self) -> str | None:
        return self.wall(self.controller.clock.now())

    def _note_state(self, agent_id: str) -> str | None:
        """The agent's state word now; a change starts its time in state."""
        agent = self.engine.agents.get(agent_id)
        if agent is None:
            return None
        status = agent.status
        if self._seen.get(agent_id) != status:
            self._seen[agent_id] = status
            self.since[agent_id] = self._now_wall()
        return status

    def _rebuild(self) -> None:
        engine = self.engine
        now = self._now_wall()
        self.agents = {}
        for agent_id in engine.agents:
            self.states[agent_id] = self._note_state(agent_id) or ""
            self.agents[agent_id] = agent_view(engine, agent_id, self.wall, self.since.get(agent_id, now))
        self.members = member_ids(engine)
        self.queues = queue_views(engine, engine.setup.queues, self.states, self.wall, self.members)

    def _scoped_agents(self, scope: Scope) -> dict[str, dict[str, Any]]:
        out = {}
        for agent_id, view in self.agents.items():
            seen = scoped_agent(view, scope.queues)
            if seen is not None:
                out[agent_id] = seen
        return out

    def _flush(self) -> None:
        """Rebuild what changed once, then send each scope only what it sees that changed."""
        self._scheduled = False
        self.stats["flushes"] += 1
        engine = self.engine
        dirty_agents, self._dirty_agents = self._dirty_agents, set()
        dirty_queues, self._dirty_queues = self._dirty_queues, set()
        changed_agents: dict[str, dict[str, Any] | None] = {}
        for agent_id in dirty_agents:
            agent = engine.agents.get(agent_id)
            before = self.agents.get(agent_id)
            if agent is None:
                self.since.pop(agent_id, None)
                self._seen.pop(agent_id, None)
                if before is not None:
                    del self.agents[agent_id]
                    self.states.pop(agent_id, None)
                    changed_agents[agent_id] = None
                    dirty_queues.update(before["queues"])
                    for q in before["queues"]:
                        self.members.get(q, set()).discard(agent_id)
                continue
            status = self._note_state(agent_id) or agent.status
            view = agent_view(engine, agent_id, self.wall, self.since.get(agent_id))
            if view != before:
                self.agents[agent_id] = view
                changed_agents[agent_id] = view
                if before is None or before["state"] != status:
                    dirty_queues.update(agent.penalties)
                if before is None or before["queues"] != view["queues"]:
                    for q in before["queues"] if before is not None else ():
                        self.members.get(q, set()).discard(agent_id)
                        dirty_queues.add(q)
                    for q in view["queues"]:
                        self.members.setdefault(q, set()).add(agent_id)
                        dirty_queues.add(q)
            self.states[agent_id] = status
        changed_queues = {}
        if dirty_queues:
            views = queue_views(engine, dirty_queues, self.states, self.wall, self.members)
            for name, view in views.items():
                if self.queues.get(name) != view:
                    self.queues[name] = view
                    changed_queues[name] = view
            for name in dirty_queues - set(engine.setup.queues):
                if self.queues.pop(name, None) is not None:
                    changed_queues[name] = None
        if not changed_agents and not changed_queues:
            return
        for scope in list(self.scopes.values()):
            self._send_delta(scope, changed_agents, changed_queues)

    def _send_delta(
        self,
        scope: Scope,
        changed_agents: dict[str, dict[str, Any] | None],
        changed_queues: dict[str, dict[str, Any] | None],
    ) -> None:
        queues: dict[str, Any] = {}
        for name, view in changed_queues.items():
            if scope.sees_queue(name) and scope.sent_queues.get(name) != view:
                queues[name] = view
                if view is None:
                    scope.sent_queues.pop(name, None)
                else:
                    scope.sent_queues[name] = view
        agents: dict[str, Any] = {}
        for agent_id, base in changed_agents.items():
            view = scoped_agent(base, scope.queues) if base is not None else None
            if view is None:
                if scope.sent_agents.pop(agent_id, None) is not None:
                    agents[agent_id] = None  # left the scope (or the queue file)
            elif scope.sent_agents.get(agent_id) != view:
                scope.sent_agents[agent_id] = view
                agents[agent_id] = view
        if queues or agents:
            body = _encode({"type": "delta", "queues": queues, "agents": agents})
            stamp = self._now_wall()
            for feed in list(scope.feeds):
                self._send(feed, None, body, stamp)

    # ------------------------------------------------------------------ charts

    async def _charts_loop(self) -> None:
        """Every ``charts_every`` s, on a new wallboard, and ``charts_gap`` s after calls or
        offers end (coalesced: the store has the rows by then, and a busy floor costs one
        refresh per gap, not one per call)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.charts_every):
                    await self._charts_wake.wait()
            if self._charts_due:
                await asyncio.sleep(self.charts_gap)
            self._charts_wake.clear()
            self._charts_due = False  # an ending from now on asks for the next refresh
            for scope in list(self.scopes.values()):
                await self.refresh_charts(scope)

    async def refresh_charts(self, scope: Scope) -> None:
        """Today's figures of the scope's queues from the store; sent when they changed."""
        if self.db is None or not scope.feeds:
            return
        now = self.history_now() if self.history_now is not None else None
        if now is None:
            now = datetime.fromtimestamp(self.controller.clock.to_wall(self.controller.clock.now()), UTC)
        since = datetime.combine(now.date(), time(0), UTC)
        names = sorted(self.engine.setup.queues if scope.queues is None else scope.queues)
        try:
            async with asyncio.timeout(5):
                intervals = await reports.queue_intervals(
                    self.db, since, now, self.service_level, names, total=ALL
                )
                outcomes = await reports.offer_outcomes_today(self.db, since, names)
        except Exception as exc:
            self.stats["chart_errors"] += 1
            log.warning("wallboard charts: history query failed", extra={"error": f"{type(exc).__name__}"})
            return
        frame = {
            "type": "charts",
            "since": _iso(since),
            "interval_seconds": int(reports.INTERVAL.total_seconds()),
            "queues": {q: [dict(r, start=_iso(r["start"])) for r in rows] for q, rows in intervals.items()},
            "outcomes": outcomes,
        }
        if frame != scope.charts:
            scope.charts = frame
            for feed in list(scope.feeds):
                self._send(feed, frame)

    # ------------------------------------------------------------------ output

    def _send(
        self, feed: WallFeed, frame: dict[str, Any] | None, body: str | None = None, stamp: str | None = None
    ) -> None:
        """Queue one frame; ``body`` = the frame already encoded once for a whole scope."""
        if feed.closed:
            return
        if feed.queue.qsize() >= _QUEUE_LIMIT:
            log.warning(
                "wallboard stream too slow, disconnecting it", extra={"viewer": feed.viewer.get("id")}
            )
            self._end(feed)
            return
        feed.seq += 1
        self.stats["frames"] += 1
        if body is None:
            body = _encode(frame)
        # server_time on the engine's clock, like every time in the views (the demo runs fast);
        # an ISO time needs no JSON escaping
        stamp = stamp or self._now_wall()
        feed.queue.put_nowait(f'{body[:-1]},"seq":{feed.seq},"server_time":"{stamp}"}}')

    def _end(self, feed: WallFeed) -> None:
        if not feed.closed:
            feed.closed = True
            feed.queue.put_nowait(None)


def _encode(frame: dict[str, Any] | None) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
