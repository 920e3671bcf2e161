"""The imperative shell around the routing engine: ARI events in, ARI requests and timers out.

It owns what the engine must not: channel and bridge ids, REST calls, timers on the event loop.
Every engine call happens synchronously on the loop (``feed``), so the engine sees one event at a
time in the order they happened; the REST work its commands cause runs on lanes (``lanes``) so a
slow request never holds up the next event.

Each job lives in its own module (one obvious place per rule):
- ``stasis``: ARI events -> engine events (re-entries, duplicates, a leg's StasisStart);
- ``actions``: engine commands -> ARI requests (dial after StasisStart, DELETE on doubt, bridging,
  privacy, stopping the confirm prompt);
- ``endpoints``: agent endpoint subscriptions and states, callable at any time;
- ``reconcile``: resync at every (re)connect, restart take-back, outage rules, periodic repair;
- ``channels``: what is known of each leg and customer; ``timing``: reaction times; ``logfmt``:
  the admin's log lines.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import Engine, OfferState
from controller.ari.client import AriClient
from controller.clock import Clock
from controller.telephony.actions import AUTO_ANSWER_HEADERS, Actions
from controller.telephony.channels import OFFER_ARG, CallChannels, Leg
from controller.telephony.endpoints import SUBSCRIBE_CHUNK, EndpointWatch
from controller.telephony.lanes import Lanes
from controller.telephony.logfmt import log_record
from controller.telephony.reconcile import Reconciler
from controller.telephony.stasis import INFO_HEADER_TIMEOUT, StasisEvents
from controller.telephony.timing import Reactions, ReactionTiming

log = logging.getLogger("controller.telephony")

# ARI event types the shell acts on; the stream skips decoding the rest (most are ChannelVarset).
HANDLED_EVENTS = frozenset(
    {
        "StasisStart",
        "StasisEnd",
        "ChannelStateChange",
        "ChannelHangupRequest",
        "ChannelDestroyed",
        "ChannelDtmfReceived",
        "EndpointStateChange",
    }
)
RECONCILE_INTERVAL = 30.0  # clock s between two reconciliation passes


class Telephony(StasisEvents, Actions, EndpointWatch, Reconciler, ReactionTiming):
    """Turns ARI events into engine events and engine commands into ARI requests and timers."""

    def __init__(
        self,
        engine: Engine,
        client: AriClient,
        clock: Clock,
        *,
        app: str | None = None,
        info_headers: tuple[str, ...] = (),
        reconcile_interval: float = RECONCILE_INTERVAL,
    ) -> None:
        self.engine = engine
        # What the events stream passes on (EventStream(types=...)) and the allowed list of the ARI
        # event filter set at every connect (``reconcile.set_event_filter``).
        self.event_types: frozenset[str] = HANDLED_EVENTS
        self.event_filter_ok: bool | None = None  # last eventFilter outcome; None = not tried yet
        self.info_headers = tuple(info_headers)  # SIP headers of the caller's INVITE for the offer card
        self.client = client
        self.clock = clock
        self.app = app or client.app
        self.reconcile_interval = reconcile_interval
        self.lanes = Lanes()
        self.legs: dict[str, Leg] = {}  # offer id -> leg
        self.leg_by_channel: dict[str, Leg] = {}
        self.calls: dict[str, CallChannels] = {}  # call id -> the customer's Stasis session
        self.call_of_channel: dict[str, str] = {}  # customer channel id -> its current call id
        self.stats: Counter[str] = Counter()
        self.repairs: Counter[str] = Counter()  # reconciliation repairs by kind (/metrics)
        self.reconcile_runs = 0
        self.ping_uncertainty = 0.0  # clock s: how far the last restore's arrival times may be off
        self.reactions = Reactions()
        # Told of every Notify/Record. ``recorders`` at once (the history writer: hot standby's
        # write-ahead waits on what it was told); ``listeners`` (logs, panel, wallboard, metrics)
        # one loop turn later, once the ARI requests of the same event are on the wire.
        self.recorders: list[Callable[[cmd.Notify | cmd.Record], None]] = []
        self.listeners: list[Callable[[cmd.Notify | cmd.Record], None]] = []
        self._told_later: list[cmd.Notify | cmd.Record] = []
        self.run_token = secrets.token_hex(3)
        self.online = asyncio.Event()  # set while the events websocket is connected and resynced
        self.epoch = 0  # counts reconciliation listings (see Leg.epoch)
        self.doomed: set[str] = set()  # channels whose DELETE failed: retried by reconciliation
        self.doomed_bridges: set[str] = set()
        self.unknown_endpoints: set[str] = set()
        # offer id of an earlier run -> ours: its leg was found answered and kept (store.books)
        self.restored_offers: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timer_at: dict[str, float] = {}
        self._held_timers: dict[str, float] = {}  # timers that ran out while offline -> their time
        self._offline_since: float | None = None
        self._marks: dict[str, tuple[str, float]] = {}  # call id -> (what we wait for, since)
        self._acted: set[str] = set()  # calls rung or connected by the current feed
        self._suspects: set[str] = set()
        self._reconcile_lock = asyncio.Lock()
        self._watch_lock = asyncio.Lock()
        self._periodic: asyncio.Task[None] | None = None
        self.closing = False
        # hot standby's write-ahead (``actions._durable``): resolves True once every history fact
        # queued so far is committed, False if the database did not confirm in time. None: no wait.
        self.durable: Callable[[], Awaitable[bool]] | None = None
        self._init_events()

    # ------------------------------------------------------------------ engine side

    def feed(self, event: ev.Event) -> None:
        """Hand one event to the engine and carry out its commands.

        Wire first: a command that needs Asterisk becomes a lane job at once, and the lane's first
        request (the originate that rings the next agent, the answer of a waiting caller) is on
        the wire before the observers are told (``listeners``: logging, panel, wallboard,
        metrics); on a real Asterisk they took a good part of the controller's time between an
        agent's 603 and the next INVITE.
        """
        first = not self._told_later
        for command in self.engine.handle(event, self.clock.now()):
            self._execute(command)
        if first and self._told_later:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # fed outside a loop (a synchronous caller): tell them now
                self._tell_listeners()
            else:
                # after the first step of the lanes just started, which writes their request
                loop.call_soon(self._tell_listeners)

    def _tell_listeners(self) -> None:
        batch, self._told_later = self._told_later, []
        for c in batch:
            if isinstance(c, cmd.Record):
                log_record(c)
            for listener in self.listeners:
                try:
                    listener(c)
                except Exception:
                    log.exception("listener failed on %s", c.kind)

    def _execute(self, c: cmd.Command) -> None:
        if isinstance(c, cmd.StartTimer):
            self._cancel_timer(c.timer_id)
            self._timers[c.timer_id] = self.clock.call_at(c.at, self._fire, c.timer_id)
            self._timer_at[c.timer_id] = c.at
        elif isinstance(c, cmd.CancelTimer):
            self._cancel_timer(c.timer_id)
        elif isinstance(c, cmd.RingAgent):
            leg = self._add_leg(c.offer_id, f"{c.offer_id}.{self.run_token}", c.call_id, c.agent_id)
            self._acted.add(c.call_id)
            self.lanes.submit(f"leg:{c.offer_id}", lambda: self._ring(c, leg))
        elif isinstance(c, cmd.CancelOffer):
            reason = "answered_elsewhere" if c.reason is cmd.CancelReason.ANSWERED_ELSEWHERE else "normal"
            self._hangup_leg(c.offer_id, reason)
        elif isinstance(c, cmd.HangupAgent):
            self._hangup_leg(c.offer_id, "normal")
        elif isinstance(c, cmd.ParkCaller):
            chans = self._chans(c.call_id)
            chans.hold = c.hold
            self.lanes.submit(f"call:{c.call_id}", lambda: self._park(chans))
        elif isinstance(c, cmd.Connect):
            self._acted.add(c.call_id)
            self.lanes.submit(f"call:{c.call_id}", lambda: self._connect(c))
        elif isinstance(c, cmd.PlayConfirmPrompt):
            self.lanes.submit(f"leg:{c.offer_id}", lambda: self._confirm_prompt(c))
        elif isinstance(c, cmd.HangupCaller):
            chans = self._chans(c.call_id)
            chans.released = True
            self.lanes.submit(f"call:{c.call_id}", lambda: self._hangup_caller(chans, c.reason))
        elif isinstance(c, cmd.Overflow):
            chans = self._chans(c.call_id)
            chans.released = True
            self.lanes.submit(f"call:{c.call_id}", lambda: self._continue(chans, c))
        elif isinstance(c, cmd.Notify | cmd.Record):
            for recorder in self.recorders:
                try:
                    recorder(c)
                except Exception:
                    log.exception("recorder failed on %s", c.kind)
            self._told_later.append(c)

    def _chans(self, call_id: str) -> CallChannels:
        chans = self.calls.get(call_id)
        if chans is None:
            chans = self.calls[call_id] = CallChannels(call_id, epoch=self.epoch)
            self.call_of_channel.setdefault(chans.channel_id, call_id)
        return chans

    def _add_leg(self, offer_id: str, channel_id: str, call_id: str, agent_id: str) -> Leg:
        leg = Leg(offer_id, channel_id, call_id, agent_id)
        self.legs[offer_id] = leg
        self.leg_by_channel[channel_id] = leg
        self._chans(call_id).legs.add(offer_id)
        return leg

    def _cancel_timer(self, timer_id: str) -> None:
        handle = self._timers.pop(timer_id, None)
        if handle is not None:
            handle.cancel()
        self._timer_at.pop(timer_id, None)
        self._held_timers.pop(timer_id, None)

    def _fire(self, timer_id: str) -> None:
        self._timers.pop(timer_id, None)
        at = self._timer_at.pop(timer_id, self.clock.now())
        if not self.online.is_set():
            # Deaf to events: an agent is not charged, a caller not routed, on what we cannot hear.
            self._held_timers[timer_id] = at
            return
        self.feed(ev.TimerFired(timer_id))

    # ------------------------------------------------------------------ bookkeeping

    def _forget_leg(self, leg: Leg) -> None:
        if self.leg_by_channel.get(leg.channel_id) is leg:
            del self.leg_by_channel[leg.channel_id]
        if self.legs.get(leg.offer_id) is leg:
            del self.legs[leg.offer_id]
        chans = self.calls.get(leg.call_id)
        if chans is not None:
            chans.legs.discard(leg.offer_id)
        self._maybe_forget_call(leg.call_id)

    def _maybe_forget_call(self, call_id: str) -> None:
        """Drop a call's channel record once the customer left and no agent leg remains."""
        chans = self.calls.get(call_id)
        if chans is not None and chans.gone and not chans.legs and call_id not in self.engine.calls:
            del self.calls[call_id]
            if self.call_of_channel.get(chans.channel_id) == call_id:
                del self.call_of_channel[chans.channel_id]

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        self.closing = True
        if self._periodic is not None:
            self._periodic.cancel()
            await asyncio.gather(self._periodic, return_exceptions=True)
            self._periodic = None
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.online.set()  # held rings wake up, see ``closing`` and create nothing
        await self.lanes.drain()
        await self.lanes.close()


__all__ = [
    "AUTO_ANSWER_HEADERS",
    "HANDLED_EVENTS",
    "INFO_HEADER_TIMEOUT",
    "OFFER_ARG",
    "SUBSCRIBE_CHUNK",
    "CallChannels",
    "Leg",
    "OfferState",
    "Telephony",
]
