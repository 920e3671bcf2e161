"""The imperative shell around the routing engine: ARI events in, ARI requests and timers out.

It owns what the engine must not: channel and bridge ids, REST calls, timers on the event
loop. Every engine call happens synchronously on the loop (``feed``), so the engine sees one
event at a time in the order they happened; the REST work its commands cause runs on lanes
(see ``lanes``) so a slow request never holds up the next event.

Channel naming: the customer's channel id is the call id. An agent leg is created with
``appArgs = offer,<offer id>,<call id>`` and ``channelId = <offer id>.<run token>`` (unique across
controller restarts), so after a reconnect or a restart every channel in the app tells what it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import CallState, Engine, OfferState
from controller.acd.setup import HoldMode
from controller.ari import models as ari
from controller.ari.client import AriClient
from controller.ari.errors import AriBadRequest, AriError, AriNotFound, EndpointUnreachable
from controller.clock import Clock
from controller.telephony.lanes import Lanes

log = logging.getLogger("controller.telephony")

OFFER_ARG = "offer"  # first Stasis arg of agent legs; a queue may not be called this
SUBSCRIBE_CHUNK = 50  # endpoint event sources per subscription request (URL length)
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
# Sent only in desktop acceptance mode, once the agent accepted on screen. Never otherwise.
AUTO_ANSWER_HEADERS = {
    "Alert-Info": "<http://localhost>;info=alert-autoanswer;delay=0",
    "Call-Info": "<sip:localhost>;answer-after=0",
}


@dataclass(slots=True)
class Leg:
    """What the shell knows of one agent channel."""

    offer_id: str
    channel_id: str
    call_id: str
    agent_id: str
    hangup_requested: bool = False
    soft_hangup_seen: bool = False  # Asterisk's dial timeout shows as a soft hangup we didn't ask for
    ended: bool = False


INFO_HEADER_TIMEOUT = 1.0  # s: a caller never waits longer than this for the card's extra info


@dataclass(slots=True)
class CallChannels:
    """The customer's channel and the bridges made for it."""

    call_id: str
    hold: HoldMode | None = None
    holding_bridge: str | None = None
    mixing_bridge: str | None = None
    released: bool = False  # we sent it on (continue/hangup): its StasisEnd is expected
    gone: bool = False
    legs: set[str] = field(default_factory=set)  # offer ids of agent legs not yet destroyed
    parked: bool = False  # already parked (found so after a restart)


@dataclass
class Reactions:
    """Controller reaction times (seconds) for benchmarks and metrics; bounded."""

    stasis_to_dial: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    answer_to_bridge: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    decline_to_next_dial: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class Telephony:
    """Turns ARI events into engine events and engine commands into ARI requests and timers."""

    def __init__(
        self,
        engine: Engine,
        client: AriClient,
        clock: Clock,
        *,
        app: str | None = None,
        info_headers: tuple[str, ...] = (),
    ) -> None:
        self.engine = engine
        self.info_headers = tuple(info_headers)  # SIP headers of the caller's INVITE for the offer card
        self.client = client
        self.clock = clock
        self.app = app or client.app
        self.lanes = Lanes()
        self.legs: dict[str, Leg] = {}  # offer id -> leg
        self.leg_by_channel: dict[str, Leg] = {}
        self.calls: dict[str, CallChannels] = {}
        self.stats: Counter[str] = Counter()
        self.reactions = Reactions()
        self.listeners: list[Callable[[cmd.Notify | cmd.Record], None]] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._marks: dict[str, tuple[str, float]] = {}  # call id -> (what we wait for, since)
        self.run_token = secrets.token_hex(3)
        self._acted: set[str] = set()  # calls rung or connected by the current feed

    # ------------------------------------------------------------------ engine side

    def feed(self, event: ev.Event) -> None:
        """Hand one event to the engine and carry out its commands."""
        for command in self.engine.handle(event, self.clock.now()):
            self._execute(command)

    def _execute(self, c: cmd.Command) -> None:
        if isinstance(c, cmd.StartTimer):
            old = self._timers.pop(c.timer_id, None)
            if old is not None:
                old.cancel()
            self._timers[c.timer_id] = self.clock.call_at(c.at, self._fire, c.timer_id)
        elif isinstance(c, cmd.CancelTimer):
            handle = self._timers.pop(c.timer_id, None)
            if handle is not None:
                handle.cancel()
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
            chans = self.calls.setdefault(c.call_id, CallChannels(c.call_id))
            chans.hold = c.hold
            self.lanes.submit(f"call:{c.call_id}", lambda: self._park(chans))
        elif isinstance(c, cmd.Connect):
            self._acted.add(c.call_id)
            self.lanes.submit(f"call:{c.call_id}", lambda: self._connect(c))
        elif isinstance(c, cmd.PlayConfirmPrompt):
            self.lanes.submit(f"leg:{c.offer_id}", lambda: self._confirm_prompt(c))
        elif isinstance(c, cmd.HangupCaller):
            chans = self.calls.setdefault(c.call_id, CallChannels(c.call_id))
            chans.released = True
            self.lanes.submit(f"call:{c.call_id}", lambda: self._hangup_caller(chans, c.reason))
        elif isinstance(c, cmd.Overflow):
            chans = self.calls.setdefault(c.call_id, CallChannels(c.call_id))
            chans.released = True
            self.lanes.submit(f"call:{c.call_id}", lambda: self._continue(chans, c))
        elif isinstance(c, cmd.Notify | cmd.Record):
            if isinstance(c, cmd.Record):
                self._log_record(c)
            for listener in self.listeners:
                try:
                    listener(c)
                except Exception:
                    log.exception("listener failed on %s", c.kind)

    def _add_leg(self, offer_id: str, channel_id: str, call_id: str, agent_id: str) -> Leg:
        leg = Leg(offer_id, channel_id, call_id, agent_id)
        self.legs[offer_id] = leg
        self.leg_by_channel[channel_id] = leg
        self.calls.setdefault(call_id, CallChannels(call_id)).legs.add(offer_id)
        return leg

    def _fire(self, timer_id: str) -> None:
        self._timers.pop(timer_id, None)
        self.feed(ev.TimerFired(timer_id))

    # ------------------------------------------------------------------ ARI jobs

    async def _ring(self, c: cmd.RingAgent, leg: Leg) -> None:
        variables = {
            "CONNECTEDLINE(name)": c.display_name,
            "CONNECTEDLINE(num)": c.display_number,
        }
        headers = dict(c.headers)
        if c.auto_answer:
            # Desktop mode only, after the agent pressed Accept: the two headers softphones obey.
            headers.update(AUTO_ANSWER_HEADERS)
        for name, value in headers.items():
            variables[f"PJSIP_HEADER(add,{name})"] = value
        try:
            await self.client.create_channel(
                c.endpoint,
                self.app,
                [OFFER_ARG, c.offer_id, c.call_id],
                channel_id=leg.channel_id,
                variables=variables,
            )
            if leg.hangup_requested:  # cancelled while the create was in flight
                await self.client.hangup(leg.channel_id, "normal")
                return
            self._reaction_done(c.call_id, "dial")
            await self.client.dial(leg.channel_id, timeout=c.dial_timeout)
        except EndpointUnreachable:
            log.info(
                "agent endpoint unreachable (Allocation failed)",
                extra={"call": c.call_id, "agent": c.agent_id, "endpoint": c.endpoint, "offer": c.offer_id},
            )
            self._leg_gone(leg, allocation_failed=True)
        except AriNotFound:
            self._leg_gone(leg)  # hung up between create and dial: its ChannelDestroyed tells why
        except AriError as exc:
            log.warning(
                "could not ring agent: %s",
                exc,
                extra={"call": c.call_id, "agent": c.agent_id, "endpoint": c.endpoint},
            )
            self._leg_gone(leg, allocation_failed=True)

    def _leg_gone(self, leg: Leg, *, allocation_failed: bool = False) -> None:
        """The leg ended without (or before) its ChannelDestroyed reaching us."""
        if leg.ended:
            return
        if not allocation_failed:
            # A 404 on create/dial: the channel existed and its ChannelDestroyed is on its way.
            return
        leg.ended = True
        self._forget_leg(leg)
        self.feed(ev.AgentLegEnded(leg.offer_id, allocation_failed=True))

    def _hangup_leg(self, offer_id: str, reason: str) -> None:
        leg = self.legs.get(offer_id)
        if leg is None or leg.ended:
            return
        leg.hangup_requested = True

        async def job() -> None:
            if not await self.client.hangup(leg.channel_id, reason):
                # Already gone. If its ChannelDestroyed was lost (socket gap), resync reports it.
                self.stats["hangup_already_gone"] += 1

        self.lanes.submit(f"leg:{offer_id}", job)

    async def _park(self, chans: CallChannels) -> None:
        if chans.gone or chans.released or chans.parked:
            return  # gone, sent on, or still parked from before a restart
        chans.parked = True
        try:
            if chans.hold is HoldMode.RING:
                await self.client.ring(chans.call_id)
                return
            bridge_id = f"{chans.call_id}-hold"
            # known before it exists: whoever cleans up after this call also destroys it
            chans.holding_bridge = bridge_id
            await asyncio.gather(
                self.client.answer(chans.call_id),
                self.client.create_bridge("holding", bridge_id=bridge_id, name=f"acd hold {chans.call_id}"),
            )
            await self.client.add_channel(bridge_id, [chans.call_id])
            await self.client.start_bridge_moh(bridge_id)
        except (AriNotFound, AriBadRequest) as exc:
            # the caller left meanwhile ("Channel not found"): StasisEnd ends the call
            self.stats["park_caller_gone"] += 1
            log.debug("caller left while being parked: %s", exc, extra={"call": chans.call_id})
        except AriError as exc:
            log.warning("could not park caller: %s", exc, extra={"call": chans.call_id})
        if chans.gone:
            await self._destroy_bridges(chans)

    async def _connect(self, c: cmd.Connect) -> None:
        chans = self.calls.get(c.call_id)
        leg = self.legs.get(c.offer_id)
        if chans is None or leg is None or chans.gone:
            return
        bridge_id = f"{c.call_id}-talk"
        try:
            self._reaction_done(c.call_id, "bridge")
            if chans.hold is HoldMode.RING:
                await self.client.answer(c.call_id)
            await self.client.create_bridge("mixing", bridge_id=bridge_id, name=f"acd call {c.call_id}")
            chans.mixing_bridge = bridge_id
            # one addChannel moves the customer out of the holding bridge (music stops by itself)
            await self.client.add_channel(bridge_id, [c.call_id, leg.channel_id])
        except AriError as exc:
            # Either side vanished meanwhile; its hangup event ends the call in the engine.
            log.info("connect failed, a party left: %s", exc, extra={"call": c.call_id, "offer": c.offer_id})
            return
        if chans.holding_bridge is not None:
            await self.client.destroy_bridge(chans.holding_bridge)
            chans.holding_bridge = None
        log.info(
            "call connected",
            extra={"call": c.call_id, "agent": c.agent_id, "offer": c.offer_id, "bridge": bridge_id},
        )

    async def _confirm_prompt(self, c: cmd.PlayConfirmPrompt) -> None:
        leg = self.legs.get(c.offer_id)
        if leg is None or leg.ended or leg.hangup_requested:
            return
        media = ["sound:beep"]
        if c.caller_number.isdigit():
            media.append(f"digits:{c.caller_number}")
        media += [f"number:{c.wait_seconds}", "sound:seconds"]
        try:
            await self.client.play(leg.channel_id, media)
        except AriError as exc:
            log.info("could not play the confirm prompt: %s", exc, extra={"offer": c.offer_id})

    async def _hangup_caller(self, chans: CallChannels, reason: str) -> None:
        if not chans.gone:
            await self.client.hangup(
                chans.call_id, reason if reason in ("normal", "busy", "congestion") else "normal"
            )
        await self._destroy_bridges(chans)

    async def _continue(self, chans: CallChannels, c: cmd.Overflow) -> None:
        if not chans.gone:
            try:
                if c.target is None:
                    await self.client.continue_in_dialplan(c.call_id)
                else:
                    await self.client.continue_in_dialplan(
                        c.call_id, c.target.context, c.target.exten, c.target.priority
                    )
            except AriNotFound:
                pass
        await self._destroy_bridges(chans)

    async def _destroy_bridges(self, chans: CallChannels) -> None:
        for attr in ("holding_bridge", "mixing_bridge"):
            bridge_id = getattr(chans, attr)
            if bridge_id is not None:
                setattr(chans, attr, None)
                await self.client.destroy_bridge(bridge_id)

    # ------------------------------------------------------------------ ARI events

    async def on_event(self, event: ari.Event) -> None:
        """The EventStream handler: strictly one event at a time."""
        handler = self._event_handlers.get(type(event))
        if handler is not None:
            handler(self, event)

    def _on_stasis_start(self, e: ari.StasisStart) -> None:
        channel = e.channel
        if e.args and e.args[0] == OFFER_ARG:
            if channel.id not in self.leg_by_channel:
                # A leg of an offer this controller does not know (an earlier run): not ours to keep.
                self.stats["orphan_leg"] += 1
                self.lanes.submit(f"orphan:{channel.id}", lambda: self._hangup_orphan(channel.id))
            return
        if channel.id in self.calls and not self.calls[channel.id].gone:
            self.stats["duplicate_stasis_start"] += 1
            return
        queue = e.args[0] if e.args else ""
        priority = 0
        if len(e.args) > 1:
            try:
                priority = int(e.args[1])
            except ValueError:
                log.warning("ignoring a non-numeric priority %r in Stasis() args", e.args[1])
        if not queue or queue not in self.engine.setup.queues:
            log.warning(
                "call asks for queue %r which is not in the queue file; it continues in the dialplan"
                " after Stasis() (fix the dialplan or add the queue)",
                queue,
                extra={"call": channel.id, "queue": queue},
            )
        chans = self.calls[channel.id] = CallChannels(channel.id)
        arrived = ev.CallArrived(
            channel.id,
            queue,
            caller_number=channel.caller.number,
            caller_name=channel.caller.name,
            priority=priority,
        )
        if self.info_headers and queue in self.engine.setup.queues:
            self.lanes.submit(f"call:{channel.id}", lambda: self._arrive_with_info(chans, arrived))
        else:
            self._timed(channel.id, "dial", arrived)

    async def _arrive_with_info(self, chans: CallChannels, arrived: ev.CallArrived) -> None:
        """Read the configured SIP headers of the caller's INVITE, then queue the call with them."""
        info = await self._read_headers(chans.call_id)
        if chans.gone:
            # The caller left while we read: the engine never heard of this call, nothing to undo.
            self.stats["left_before_queued"] += 1
            return
        self._timed(chans.call_id, "dial", replace(arrived, info=info))

    async def _read_headers(self, channel_id: str) -> dict[str, str]:
        async def one(header: str) -> tuple[str, str | None]:
            try:
                async with asyncio.timeout(INFO_HEADER_TIMEOUT):
                    value = await self.client.get_variable(channel_id, f"PJSIP_HEADER(read,{header})")
            except (AriError, TimeoutError) as exc:
                self.stats["info_header_unread"] += 1
                log.debug("could not read SIP header %s: %s", header, exc, extra={"call": channel_id})
                return header, None
            return header, value

        found = await asyncio.gather(*(one(h) for h in self.info_headers))
        return {h: v[:200] for h, v in found if v}

    def _on_stasis_end(self, e: ari.StasisEnd) -> None:
        chans = self.calls.get(e.channel.id)
        if chans is None:
            return  # agent legs end with ChannelDestroyed
        chans.gone = True
        self._marks.pop(chans.call_id, None)
        if not chans.released:
            self.feed(ev.CallerHungUp(chans.call_id))
        if chans.holding_bridge or chans.mixing_bridge:
            self.lanes.submit(f"call:{chans.call_id}", lambda: self._destroy_bridges(chans))
        self._maybe_forget_call(chans.call_id)

    def _on_state_change(self, e: ari.ChannelStateChange) -> None:
        leg = self.leg_by_channel.get(e.channel.id)
        if leg is not None and e.channel.state == "Up" and not leg.ended:
            self._timed(leg.call_id, "bridge", ev.AgentLegAnswered(leg.offer_id))

    def _on_hangup_request(self, e: ari.ChannelHangupRequest) -> None:
        leg = self.leg_by_channel.get(e.channel.id)
        if leg is not None and e.soft and not leg.hangup_requested:
            leg.soft_hangup_seen = True

    def _on_destroyed(self, e: ari.ChannelDestroyed) -> None:
        leg = self.leg_by_channel.get(e.channel.id)
        if leg is None or leg.ended:
            return
        leg.ended = True
        self._forget_leg(leg)
        dial_timeout = leg.soft_hangup_seen and e.cause == 19
        self._timed(
            leg.call_id,
            "dial",
            ev.AgentLegEnded(leg.offer_id, e.cause, e.tech_cause, dial_timeout=dial_timeout),
        )
        self._maybe_forget_call(leg.call_id)  # the engine may have let the call go just now
        self._log_leg_end(leg, e)

    def _on_dtmf(self, e: ari.ChannelDtmfReceived) -> None:
        leg = self.leg_by_channel.get(e.channel.id)
        if leg is not None:
            self._timed(leg.call_id, "bridge", ev.ConfirmDigit(leg.offer_id, e.digit))

    def _on_endpoint(self, e: ari.EndpointStateChange) -> None:
        endpoint = f"{e.endpoint.technology}/{e.endpoint.resource}"
        self.feed(ev.EndpointState(endpoint, e.endpoint.state != "offline"))

    _event_handlers: dict[type, Callable[[Telephony, ari.Event], None]] = {
        ari.StasisStart: _on_stasis_start,
        ari.StasisEnd: _on_stasis_end,
        ari.ChannelStateChange: _on_state_change,
        ari.ChannelHangupRequest: _on_hangup_request,
        ari.ChannelDestroyed: _on_destroyed,
        ari.ChannelDtmfReceived: _on_dtmf,
        ari.EndpointStateChange: _on_endpoint,
    }

    # ------------------------------------------------------------------ (re)connect

    async def on_connect(self, reconnected: bool) -> None:
        """Resync before the first event of a new socket: Asterisk replays nothing."""
        await self._watch_endpoints()
        await self.resync(reconnected)

    async def _watch_endpoints(self) -> None:
        endpoints = sorted({a.endpoint for a in self.engine.agents.values()})
        if not endpoints:
            return
        states: dict[str, str] = {}
        for tech in sorted({e.partition("/")[0] for e in endpoints}):
            try:
                found = await self.client.list_endpoints(tech)
            except AriNotFound:
                found = []  # no such technology loaded in Asterisk: none of its endpoints exist
            for known in found:
                states[f"{known.technology}/{known.resource}"] = known.state
        # Only endpoints Asterisk knows: one unknown source makes a whole subscription fail (422),
        # and one misconfigured agent must not stop everyone else's calls.
        sources = [f"endpoint:{e}" for e in endpoints if e in states]
        # Asterisk reads at most 4 KiB of request line: subscribe in chunks, not one long URL.
        for i in range(0, len(sources), SUBSCRIBE_CHUNK):
            chunk = sources[i : i + SUBSCRIBE_CHUNK]
            try:
                await self.client.subscribe(chunk)
            except AriError as exc:
                if exc.status != 422:
                    raise
                for source in chunk:  # an endpoint removed meanwhile: subscribe the others
                    with contextlib.suppress(AriError):
                        await self.client.subscribe([source])
        for endpoint in endpoints:
            state = states.get(endpoint)
            if state is None:
                log.warning(
                    "agent endpoint %s does not exist in Asterisk; its agent is never rung"
                    " (check pjsip.conf and the queue file)",
                    endpoint,
                    extra={"endpoint": endpoint},
                )
                state = "offline"
            self.feed(ev.EndpointState(endpoint, state != "offline"))

    async def resync(self, reconnected: bool) -> None:
        """Reconcile the engine with what Asterisk has now (after a gap or a restart)."""
        channels = {c.id: c for c in await self.client.list_channels()}
        asterisk_now = _parse_ts((await self.client.ping()).get("timestamp", ""))
        app = await self.client.get_application(self.app)
        ours = [channels[i] for i in app.channel_ids if i in channels]
        # 1. callers who left during the gap end their calls
        for call_id, call in list(self.engine.calls.items()):
            if call.state is not CallState.ENDED and call_id not in channels:
                chans = self.calls.get(call_id)
                if chans is not None:
                    chans.gone = True
                self.stats["resync_caller_gone"] += 1
                self.feed(ev.CallerHungUp(call_id))
        # 2. agent legs that vanished: their end was lost
        for leg in list(self.legs.values()):
            if not leg.ended and leg.channel_id not in channels:
                leg.ended = True
                self._forget_leg(leg)
                self.stats["resync_leg_gone"] += 1
                self.feed(ev.AgentLegEnded(leg.offer_id, None, None))
        # 3. channels we do not know (a restart): a customer and the agent leg answered for
        #    them are taken back (connected if not yet bridged); other orphan legs are hung up;
        #    customers are re-queued with their original arrival time.
        bridge_of = {ch: b for b in await self.client.list_bridges() for ch in b.channels}
        unknown_customers: dict[str, tuple[ari.Channel, list[str]]] = {}
        orphan_legs: list[tuple[ari.Channel, list[str]]] = []
        for channel in ours:
            args = _stasis_args(channel, self.app)
            if args and args[0] == OFFER_ARG:
                if channel.id not in self.leg_by_channel:
                    orphan_legs.append((channel, args))
            elif channel.id not in self.engine.calls and channel.id not in self.calls:
                unknown_customers[channel.id] = (channel, args)
        for leg_channel, args in orphan_legs:
            call_id = args[2] if len(args) > 2 else ""
            customer = unknown_customers.get(call_id)
            agent_id = self._agent_of(leg_channel)
            if customer is not None and agent_id is not None and leg_channel.state == "Up":
                channel, cargs = customer
                bridge = bridge_of.get(call_id)
                bridged = bridge is not None and leg_channel.id in bridge.channels
                self.feed(
                    ev.CallRestored(
                        call_id,
                        cargs[0] if cargs else "",
                        agent_id,
                        channel.caller.number,
                        channel.caller.name,
                        arrived_at=self._engine_time_of(channel.creationtime, asterisk_now),
                        bridged=bridged,
                    )
                )
                call = self.engine.calls.get(call_id)
                if call is not None and call.connected_offer is not None:
                    del unknown_customers[call_id]
                    self._add_leg(call.connected_offer, leg_channel.id, call_id, agent_id)
                    chans = self.calls[call_id]
                    if bridged:
                        chans.mixing_bridge = bridge.id
                    elif bridge is not None and bridge.bridge_type == "holding":
                        chans.holding_bridge = bridge.id
                        chans.parked = True
                    self.stats["resync_restored"] += 1
                    continue
            self.stats["orphan_leg"] += 1
            self.lanes.submit(f"orphan:{leg_channel.id}", lambda cid=leg_channel.id: self._hangup_orphan(cid))
        for call_id, (channel, args) in unknown_customers.items():
            self.stats["resync_requeued"] += 1
            chans = self.calls[call_id] = CallChannels(call_id)
            bridge = bridge_of.get(call_id)
            if bridge is not None and bridge.bridge_type == "holding":
                chans.holding_bridge = bridge.id  # still parked with music: no need to park again
                chans.parked = True
            self.feed(
                ev.CallArrived(
                    call_id,
                    args[0] if args else "",
                    caller_number=channel.caller.number,
                    caller_name=channel.caller.name,
                    arrived_at=self._engine_time_of(channel.creationtime, asterisk_now),
                )
            )
        log.info(
            "resynced with Asterisk",
            extra={"reconnected": reconnected, "channels": len(channels), "in_app": len(ours)},
        )

    def _agent_of(self, channel: ari.Channel) -> str | None:
        """The agent whose endpoint a channel belongs to ("PJSIP/agent1-0000002a")."""
        endpoint = channel.name.rsplit("-", 1)[0]
        for agent in self.engine.agents.values():
            if agent.endpoint == endpoint:
                return agent.id
        return None

    async def _hangup_orphan(self, channel_id: str) -> None:
        await self.client.hangup(channel_id, "normal")

    def _engine_time_of(self, creationtime: str, asterisk_now: float | None) -> float | None:
        """Asterisk's channel creation time as engine time, so a re-queued call keeps its place.

        The age is measured on Asterisk's own clock (its ping timestamp), not ours.
        """
        created = _parse_ts(creationtime)
        if created is None or asterisk_now is None:
            return None
        return self.clock.now() - max(0.0, asterisk_now - created)

    # ------------------------------------------------------------------ bookkeeping

    def _forget_leg(self, leg: Leg) -> None:
        self.leg_by_channel.pop(leg.channel_id, None)
        self.legs.pop(leg.offer_id, None)
        chans = self.calls.get(leg.call_id)
        if chans is not None:
            chans.legs.discard(leg.offer_id)
        self._maybe_forget_call(leg.call_id)

    def _maybe_forget_call(self, call_id: str) -> None:
        """Drop a call's channel record once the customer left and no agent leg remains."""
        chans = self.calls.get(call_id)
        if chans is not None and chans.gone and not chans.legs and call_id not in self.engine.calls:
            self.calls.pop(call_id, None)

    def _timed(self, call_id: str, what: str, event: ev.Event) -> None:
        """Feed ``event``; if it made the engine ring or bridge, time the reaction until the
        request goes out (a call that only waits in line is not a reaction)."""
        self._marks[call_id] = (what, time.perf_counter())
        self._acted.clear()
        self.feed(event)
        if call_id not in self._acted:
            self._marks.pop(call_id, None)

    def _reaction_done(self, call_id: str, what: str) -> None:
        mark = self._marks.get(call_id)
        if mark is None or mark[0] != what:
            return
        del self._marks[call_id]
        elapsed = time.perf_counter() - mark[1]
        offer_count = self.engine.calls[call_id].offer_count if call_id in self.engine.calls else 0
        if what == "bridge":
            self.reactions.answer_to_bridge.append(elapsed)
        elif offer_count <= 1:
            self.reactions.stasis_to_dial.append(elapsed)
        else:
            self.reactions.decline_to_next_dial.append(elapsed)

    def _log_record(self, r: cmd.Record) -> None:
        d = r.data
        if r.kind == "offer.ended":
            log.info(
                "offer %s",
                d["outcome"],
                extra={
                    "call": d["call"],
                    "queue": d["queue"],
                    "agent": d["agent"],
                    "offer": d["offer"],
                    "outcome": d["outcome"],
                    "detail": d["detail"],
                    "cause": d["cause"],
                    "tech_cause": d["tech_cause"],
                    "ring_time": round(d["ring_time"], 3),
                },
            )
        elif r.kind == "call.ended":
            log.info(
                "call %s",
                d["outcome"],
                extra={
                    "call": d["call"],
                    "queue": d["queue"],
                    "outcome": d["outcome"],
                    "detail": d["detail"],
                    "agent": d["agent"],
                    "hung_up_by": d["hung_up_by"],
                    "wait": round(d["wait"], 3),
                    "talk": round(d["talk"], 3),
                },
            )
        elif r.kind == "call.connected":
            log.info(
                "call answered",
                extra={
                    "call": d["call"],
                    "queue": d["queue"],
                    "agent": d["agent"],
                    "wait": round(d["wait"], 3),
                },
            )
        elif r.kind == "agent.state":
            log.info(
                "agent %s",
                d["state"],
                extra={"agent": d["agent"], "state": d["state"], "reason": d["reason"]},
            )

    def _log_leg_end(self, leg: Leg, e: ari.ChannelDestroyed) -> None:
        log.debug(
            "agent leg destroyed",
            extra={"call": leg.call_id, "agent": leg.agent_id, "cause": e.cause, "tech_cause": e.tech_cause},
        )

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        await self.lanes.drain()
        await self.lanes.close()


def _parse_ts(text: str) -> float | None:
    """ARI timestamps: ``2026-11-25T16:31:24.933+0000``."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None


def _stasis_args(channel: ari.Channel, app: str) -> list[str]:
    """Stasis() arguments from a channel snapshot's dialplan (``app_data`` = "acd,support")."""
    if channel.dialplan.app_name.lower() != "stasis":
        return []
    parts = channel.dialplan.app_data.split(",")
    if not parts or parts[0] != app:
        return []
    return parts[1:]


__all__ = ["Telephony", "Leg", "CallChannels", "OfferState"]
