"""Live state for agents' panels: each connected page gets its agent's state, offer card and call.

The stream is *state*, not a log: a connection (or reconnection) starts with a full snapshot,
then gets a frame whenever what the agent sees changes. So a page that was disconnected misses
nothing it should still show, and nothing is shown twice. Changes are noticed from the shell's
Notify/Record commands (coalesced per loop iteration) and by a 1 s tick that catches timed
changes such as the end of wrap-up. Views come from :mod:`controller.api.views`, the same code
``GET /api/agents/{id}`` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.acd import commands as cmd
from controller.api.views import agent_view, call_view, live_offer
from controller.panel.crm import CrmLookup

if TYPE_CHECKING:
    from controller.app import Controller

__all__ = ["Feed", "PanelHub"]

log = logging.getLogger("controller.panel")

_ENDED_KINDS = {"offer.rejected", "offer.timeout", "offer.canceled", "offer.failed"}
_QUEUE_LIMIT = 500
TICK_SLICE = 500  # pages compared per loop iteration by the tick
_OUTCOMES_KEPT = 5000


class Feed:
    """One connected page of one agent."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.seq = 0
        self.agent: dict[str, Any] | None = None  # last agent view sent, without its offer
        self.offer: dict[str, Any] | None = None  # last card sent
        self.call: dict[str, Any] | None = None
        self.closed = False


class PanelHub:
    def __init__(
        self,
        controller: Controller,
        wall: Callable[[float | None], str | None],
        *,
        crm: CrmLookup | None = None,
        tick: float = 1.0,
    ) -> None:
        self.engine = controller.engine
        self.wall = wall
        self.crm: CrmLookup | None = None
        self.set_crm(crm)
        self.tick = tick
        self.feeds: dict[str, set[Feed]] = {}
        self._dirty: set[str] = set()
        self._scheduled = False
        self._outcomes: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._task: asyncio.Task | None = None

    def set_crm(self, crm: CrmLookup | None) -> None:
        self.crm = crm
        if crm is not None:
            crm.on_done = self._crm_done

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._ticker(), name="panel-tick")

    async def close(self) -> None:
        for feeds in self.feeds.values():
            for feed in feeds:
                self._end(feed)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.crm is not None:
            await self.crm.close()

    async def _ticker(self) -> None:
        """Catch changes no command announces (end of wrap-up, of a pause after a reject, ...).

        Only the one-word status is compared here (a property read per page), so a thousand
        open panels cost well under a millisecond per tick; views are rebuilt only on change.
        """
        while True:
            await asyncio.sleep(self.tick)
            await self.tick_once()

    async def tick_once(self) -> None:
        """One sweep, in slices of ``TICK_SLICE`` pages so call events are never held up long."""
        agents = self.engine.agents
        ids = list(self.feeds)
        for start in range(0, len(ids), TICK_SLICE):
            if start:
                await asyncio.sleep(0)
            for agent_id in ids[start : start + TICK_SLICE]:
                agent, feeds = agents.get(agent_id), self.feeds.get(agent_id)
                if agent is None or not feeds:
                    continue
                status = agent.status
                for f in feeds:
                    if f.agent is None or f.agent["state"] != status:
                        self._dirty.add(agent_id)
                        break
        if self._dirty:
            self._flush()

    # ------------------------------------------------------------------ input

    def listener(self, command: cmd.Notify | cmd.Record) -> None:
        """Shell listener: note which agents' pages need a look (never blocks the shell)."""
        if isinstance(command, cmd.Notify):
            agent = command.agent_id
            data = command.data
            if command.kind in _ENDED_KINDS and "offer_id" in data:
                outcome, detail = str(data.get("outcome", "")), str(data.get("detail", ""))
                self._remember(str(data["offer_id"]), outcome, detail)
            elif command.kind == "offer.accepted" and "offer_id" in data:
                self._remember(str(data["offer_id"]), "accepted", "")
        else:
            agent = command.data.get("agent")
        if agent in self.feeds:
            self._dirty.add(agent)
            self._schedule()

    def _remember(self, offer_id: str, outcome: str, detail: str) -> None:
        self._outcomes[offer_id] = (outcome, detail)
        while len(self._outcomes) > _OUTCOMES_KEPT:
            self._outcomes.popitem(last=False)

    def _crm_done(self, call_id: str) -> None:
        for agent_id in self.feeds:
            offer = live_offer(self.engine, agent_id) if agent_id in self.engine.agents else None
            if offer is not None and offer.call_id == call_id:
                self._dirty.add(agent_id)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, agent_id: str) -> Feed:
        feed = Feed(agent_id)
        self.feeds.setdefault(agent_id, set()).add(feed)
        agent, offer, call = self._views(agent_id)
        self._send(feed, {"type": "snapshot", "agent": agent, "offer": offer, "call": call})
        feed.agent, feed.offer, feed.call = _without_offer(agent), offer, call
        return feed

    def unsubscribe(self, feed: Feed) -> None:
        feeds = self.feeds.get(feed.agent_id)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self.feeds[feed.agent_id]
        feed.closed = True

    @property
    def connections(self) -> int:
        return sum(len(f) for f in self.feeds.values())

    # ------------------------------------------------------------------ output

    def _views(self, agent_id: str) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        engine = self.engine
        crm_state = None
        offer = live_offer(engine, agent_id)
        if offer is not None and self.crm is not None:
            call = engine.calls.get(offer.call_id)
            if call is not None:
                crm_state = self.crm.request(
                    call.id,
                    {
                        "caller_number": call.caller_number,
                        "caller_name": call.caller_name,
                        "queue": call.queue,
                        "call_id": call.id,
                    },
                )
        agent = agent_view(engine, agent_id, self.wall, crm_state)
        return agent, agent["offer"], call_view(engine, engine.agents[agent_id].call, self.wall)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, set()
        for agent_id in dirty:
            feeds = self.feeds.get(agent_id)
            if not feeds or agent_id not in self.engine.agents:
                continue
            agent, offer, call = self._views(agent_id)
            bare = _without_offer(agent)
            for feed in list(feeds):
                self._update(feed, agent, bare, offer, call)

    def _update(
        self,
        feed: Feed,
        agent: dict[str, Any],
        bare: dict[str, Any],
        offer: dict[str, Any] | None,
        call: dict[str, Any] | None,
    ) -> None:
        before = feed.offer
        if before is not None and (offer is None or offer["id"] != before["id"]):
            outcome, detail = self._outcomes.get(before["id"], ("", ""))
            if not outcome:
                ended = self.engine.offers.get(before["id"])
                outcome = getattr(ended.outcome, "value", "") if ended is not None else "ended"
                detail = ended.detail if ended is not None else ""
            frame = {"type": "offer_ended", "offer_id": before["id"], "call_id": before["call_id"]}
            self._send(feed, frame | {"outcome": outcome or "ended", "detail": detail})
        if offer is not None and offer != before:
            self._send(feed, {"type": "offer", "offer": offer})
        feed.offer = offer
        if call != feed.call:
            self._send(feed, {"type": "call", "call": call})
            feed.call = call
        if bare != feed.agent:
            self._send(feed, {"type": "agent", "agent": agent})
            feed.agent = bare

    def _send(self, feed: Feed, frame: dict[str, Any]) -> None:
        if feed.closed:
            return
        if feed.queue.qsize() >= _QUEUE_LIMIT:
            # A page that stopped reading: cut it off; it reconnects and gets a fresh snapshot.
            log.warning("panel stream too slow, disconnecting it", extra={"agent": feed.agent_id})
            self._end(feed)
            return
        feed.seq += 1
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        feed.queue.put_nowait({**frame, "seq": feed.seq, "server_time": now})

    def _end(self, feed: Feed) -> None:
        if not feed.closed:
            feed.closed = True
            feed.queue.put_nowait(None)


def _without_offer(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "offer"}
