"""ARI events in, engine events out: one handler per event type, strictly one event at a time.

Rules that live here:
- a customer channel may enter the app many times (``continue`` into dialplan that runs
  ``Stasis(acd,…)`` again): each StasisStart after its StasisEnd is a new call with its new args;
- the same ARI event delivered twice (an endpoint subscribed twice, a channel seen through two
  subscriptions) changes nothing the second time;
- an originated leg enters Stasis only once answered (originate_variant.json: ChannelStateChange Up,
  Dial ANSWER, then StasisStart in state Up): it is answered for the engine at its StasisStart,
  never at the Up before it, when play/addChannel would still fail (409/422); a StasisStart for a
  leg this controller does not know is hung up;
- a leg ends at its ChannelHangupRequest that is not soft and carries a cause (the phone's 603, 486,
  480, a BYE while bridged): nothing can keep that channel alive, and its ChannelDestroyed comes
  after the dial thread noticed it. A soft request (our DELETE, a dial timeout of create+dial) or
  one without a cause (a BYE while alone) waits for ChannelDestroyed;
- Asterisk's own originate timeout shows only as ChannelDestroyed 19/480, with no hangup request
  before it (a 480 from the phone has one): that is a dial timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from controller.acd import events as ev
from controller.ari import models as ari
from controller.ari.errors import AriError
from controller.telephony.channels import OFFER_ARG, CallChannels, Leg

if TYPE_CHECKING:
    from controller.telephony.shell import Telephony

log = logging.getLogger("controller.telephony")

INFO_HEADER_TIMEOUT = 1.0  # s: a caller never waits longer than this for the card's extra info
DEDUP_WINDOW = 2048  # recent event keys remembered to drop an event delivered twice
SEEN_CUSTOMERS = 20_000  # customer channel ids remembered to tell a re-entry from a first arrival


def parse_priority(args: list[str], call_id: str = "") -> int:
    """The second Stasis() arg is the call's priority; anything else is logged and ignored."""
    if len(args) < 2 or not args[1].strip():
        return 0
    try:
        return int(args[1])
    except ValueError:
        log.warning("ignoring a non-numeric priority %r in Stasis() args", args[1], extra={"call": call_id})
        return 0


class StasisEvents:
    """Mixin of ``Telephony``: the ARI event handlers."""

    def _init_events(self: Telephony) -> None:
        self._event_keys: deque[tuple[Any, ...]] = deque()
        self._event_key_set: set[tuple[Any, ...]] = set()
        self._seen_customers: OrderedDict[str, None] = OrderedDict()
        self._reentry_seq = itertools.count(2)

    async def on_event(self: Telephony, event: ari.Event) -> None:
        """The EventStream handler: strictly one event at a time."""
        handler = self._event_handlers.get(type(event))
        if handler is None:
            return
        if self._duplicate(event):
            self.stats["duplicate_event"] += 1
            return
        started = self.lanes.started
        handler(self, event)
        if self.lanes.started != started:
            # A new ARI job (the next agent's originate, a bridge): let it send its request now,
            # before the frames behind this one in the same burst are handled (its first step
            # writes the request: ari.http).
            await asyncio.sleep(0)

    def _duplicate(self: Telephony, event: ari.Event) -> bool:
        """An identical event (type, time, channel, state, args, digit) seen a moment ago."""
        if not event.timestamp:
            return False
        channel = getattr(event, "channel", None)
        endpoint = getattr(event, "endpoint", None)
        key = (
            event.type,
            event.timestamp,
            channel.id if channel is not None else None,
            channel.state if channel is not None else None,
            tuple(getattr(event, "args", ())),
            getattr(event, "digit", None),
            getattr(event, "cause", None),
            (endpoint.resource, endpoint.state) if endpoint is not None else None,
        )
        if key in self._event_key_set:
            return True
        self._event_key_set.add(key)
        self._event_keys.append(key)
        if len(self._event_keys) > DEDUP_WINDOW:
            self._event_key_set.discard(self._event_keys.popleft())
        return False

    def _on_stasis_start(self: Telephony, e: ari.StasisStart) -> None:
        channel = e.channel
        if e.args and e.args[0] == OFFER_ARG:
            leg = self.leg_by_channel.get(channel.id)
            if leg is None:
                # A leg of an offer this controller does not know (an earlier run, or one it gave up on).
                self.stats["orphan_leg"] += 1
                self.lanes.submit(f"orphan:{channel.id}", lambda: self._hangup_orphan(channel.id))
                return
            leg.in_stasis = True
            if channel.state == "Up":
                self._leg_answered(leg)
            return
        current = self.call_of_channel.get(channel.id)
        if current is not None and current in self.calls and not self.calls[current].gone:
            self.stats["duplicate_stasis_start"] += 1
            return
        call_id = self._new_call_id(channel.id)
        if call_id != channel.id:
            self.stats["stasis_reentry"] += 1
            log.info(
                "caller came back into the app; a new call with its new args",
                extra={"call": call_id, "channel": channel.id, "stasis_args": ",".join(e.args)},
            )
        self._arrive(call_id, channel, list(e.args))

    def _new_call_id(self: Telephony, channel_id: str) -> str:
        seen = self._seen_customers
        if channel_id in seen or channel_id in self.calls or channel_id in self.engine.calls:
            return f"{channel_id}-r{next(self._reentry_seq)}"
        seen[channel_id] = None
        if len(seen) > SEEN_CUSTOMERS:
            seen.popitem(last=False)
        return channel_id

    def _arrive(
        self: Telephony,
        call_id: str,
        channel: ari.Channel,
        args: list[str],
        *,
        arrived_at: float | None = None,
        prepare: Callable[[CallChannels], None] | None = None,
    ) -> CallChannels:
        """Register a customer's Stasis session and queue it (with its SIP header info if configured)."""
        queue = args[0] if args else ""
        if not queue or queue not in self.engine.setup.queues:
            log.warning(
                "call asks for queue %r which is not in the queue file; it continues in the dialplan"
                " after Stasis() (fix the dialplan or add the queue)",
                queue,
                extra={"call": call_id, "queue": queue},
            )
        chans = self.calls[call_id] = CallChannels(call_id, channel.id, epoch=self.epoch)
        chans.answered = channel.state == "Up"
        self.call_of_channel[channel.id] = call_id
        if prepare is not None:
            prepare(chans)
        arrived = ev.CallArrived(
            call_id,
            queue,
            caller_number=channel.caller.number,
            caller_name=channel.caller.name,
            priority=parse_priority(args, call_id),
            arrived_at=arrived_at,
        )
        if self.info_headers and queue in self.engine.setup.queues:
            self.lanes.submit(f"call:{call_id}", lambda: self._arrive_with_info(chans, arrived))
        else:
            self._timed(call_id, "dial", arrived)
        return chans

    async def _arrive_with_info(self: Telephony, chans: CallChannels, arrived: ev.CallArrived) -> None:
        """Read the configured SIP headers of the caller's INVITE, then queue the call with them."""
        info = await self._read_headers(chans.channel_id)
        if chans.gone:
            # The caller left while we read: the engine never heard of this call, nothing to undo.
            self.stats["left_before_queued"] += 1
            self._maybe_forget_call(chans.call_id)
            return
        self._timed(chans.call_id, "dial", replace(arrived, info=info))

    async def _read_headers(self: Telephony, channel_id: str) -> dict[str, str]:
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

    def _on_stasis_end(self: Telephony, e: ari.StasisEnd) -> None:
        call_id = self.call_of_channel.get(e.channel.id)
        chans = self.calls.get(call_id) if call_id is not None else None
        if chans is None or chans.gone:
            return  # agent legs end with ChannelDestroyed
        chans.gone = True
        self._marks.pop(chans.call_id, None)
        if not chans.released and chans.call_id in self.engine.calls:
            self.feed(ev.CallerHungUp(chans.call_id))
        if chans.holding_bridge or chans.mixing_bridge:
            self.lanes.submit(f"call:{chans.call_id}", lambda: self._destroy_bridges(chans))
        self._maybe_forget_call(chans.call_id)

    def _leg_answered(self: Telephony, leg: Leg) -> None:
        """The leg is Up and in Stasis: the engine may now connect it or play the confirm prompt."""
        if leg.ended or leg.answered:
            return
        leg.answered = True
        self._timed(leg.call_id, "bridge", ev.AgentLegAnswered(leg.offer_id))

    def _on_state_change(self: Telephony, e: ari.ChannelStateChange) -> None:
        leg = self.leg_by_channel.get(e.channel.id)
        if leg is not None and e.channel.state == "Up" and leg.in_stasis:
            self._leg_answered(leg)  # not yet in Stasis: its StasisStart follows and answers it

    def _on_hangup_request(self: Telephony, e: ari.ChannelHangupRequest) -> None:
        leg = self.leg_by_channel.get(e.channel.id)
        if leg is None or leg.ended or e.soft or not e.cause:
            return
        leg.cause_seen = True
        self._leg_ended(leg, e.cause, e.tech_cause, dial_timeout=False)

    def _on_destroyed(self: Telephony, e: ari.ChannelDestroyed) -> None:
        self.doomed.discard(e.channel.id)
        leg = self.leg_by_channel.get(e.channel.id)
        if leg is None or leg.ended:
            return
        self._leg_ended(leg, e.cause, e.tech_cause, dial_timeout=e.cause == 19 and not leg.cause_seen)

    def _leg_ended(
        self: Telephony, leg: Leg, cause: int | None, tech_cause: int | None, *, dial_timeout: bool
    ) -> None:
        leg.ended = True
        self._forget_leg(leg)
        self._timed(
            leg.call_id,
            "dial",
            ev.AgentLegEnded(leg.offer_id, cause, tech_cause, dial_timeout=dial_timeout),
        )
        self._maybe_forget_call(leg.call_id)  # the engine may have let the call go just now
        log.debug(
            "agent leg ended",
            extra={"call": leg.call_id, "agent": leg.agent_id, "cause": cause, "tech_cause": tech_cause},
        )

    def _on_dtmf(self: Telephony, e: ari.ChannelDtmfReceived) -> None:
        leg = self.leg_by_channel.get(e.channel.id)
        if leg is not None:
            self._timed(leg.call_id, "bridge", ev.ConfirmDigit(leg.offer_id, e.digit))

    def _on_endpoint(self: Telephony, e: ari.EndpointStateChange) -> None:
        endpoint = f"{e.endpoint.technology}/{e.endpoint.resource}"
        self.feed(ev.EndpointState(endpoint, e.endpoint.state != "offline"))

    async def _hangup_orphan(self: Telephony, channel_id: str) -> None:
        await self._hangup_channel(channel_id, "normal")

    _event_handlers: dict[type, Callable[[Telephony, ari.Event], None]] = {
        ari.StasisStart: _on_stasis_start,
        ari.StasisEnd: _on_stasis_end,
        ari.ChannelStateChange: _on_state_change,
        ari.ChannelHangupRequest: _on_hangup_request,
        ari.ChannelDestroyed: _on_destroyed,
        ari.ChannelDtmfReceived: _on_dtmf,
        ari.EndpointStateChange: _on_endpoint,
    }
