"""Engine vs. Asterisk: the resync at every (re)connect and the periodic reconciliation pass.

Rules that live here:
- while the events websocket is down nothing is routed and nobody is charged: rings wait
  (``actions``), timers that run out are held; ring/confirm/connect timers resume shifted by the
  outage, so a ring that ran out while we were deaf is not a miss;
- after a gap every live leg is reconciled: gone -> ended, answered into Stasis -> answered
  (connect or confirm), ringing (listed in the app, dialplan AppDial2, not in Stasis) -> kept;
  a leg answered while the app had no websocket is hung up by Asterisk (its Stasis() fails)
  and so found gone; only what existed before the listing was asked for is judged, so a
  leg created meanwhile is never declared gone;
- a restarted controller takes back what it finds: a customer with an answered leg is connected
  (or just kept, if already bridged), a waiting customer is re-queued with its arrival time
  (measured on Asterisk's clock at its ping), its priority (Stasis args) and its call info (SIP
  headers), a leg nobody waits for (in Stasis, or still ringing) is hung up;
- the periodic pass repairs drift (lost events, failed hangups/continues, leaked bridges),
  counts each repair in ``repairs`` (``/metrics``) and logs it. Between two passes events keep
  flowing, so what a listing shows missing or unknown is only acted on when the next pass
  confirms it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from controller.acd import events as ev
from controller.acd.engine import OfferState
from controller.ari import models as ari
from controller.ari.errors import Fenced
from controller.telephony.channels import OFFER_ARG, CallChannels, Leg

if TYPE_CHECKING:
    from controller.telephony.shell import Telephony

log = logging.getLogger("controller.telephony")

RESUMED_TIMERS = ("ring", "confirm", "connect")  # timers that judge an agent: shifted by an outage
ANSWERABLE = (OfferState.RINGING, OfferState.CONNECTING)


class Reconciler:
    """Mixin of ``Telephony``."""

    # ------------------------------------------------------------------ connection state

    async def on_connect(self: Telephony, reconnected: bool) -> None:
        """Resync before the first event of a new socket: Asterisk replays nothing."""
        self.on_disconnect()  # a failed earlier attempt may not have told us
        await self.set_event_filter()
        await self.watch_endpoints()
        await self.reconcile(at_connect=True, reconnected=reconnected)
        self._go_online()

    async def set_event_filter(self: Telephony) -> None:
        """Ask Asterisk to send only the event types we handle (most of a call's ~60 are not).

        Set at every connect: the filter dies with the app in Asterisk (a new app after a restart or
        an idle gap has none) and a new HA active must set it for itself. ApplicationReplaced is
        filtered like any event, so it is always on the list (the takeover fence depends on it).
        Never fatal: without it (an ARI older than 13.26/16.3, or any error) every event is sent,
        which works; the stream's own type filter stays as the safety net.
        """
        allowed = sorted(self.event_types | {"ApplicationReplaced"})
        try:
            await self.client.set_event_filter(allowed=allowed)
        except (asyncio.CancelledError, Fenced):
            raise  # a standby that lost the lease must not go on with the resync
        except Exception as exc:
            self.stats["event_filter_failed"] += 1
            level = logging.WARNING if self.event_filter_ok is not False else logging.DEBUG
            self.event_filter_ok = False
            log.log(
                level,
                "could not set the ARI event filter (%s): Asterisk will send every event of the app; "
                "this works, but costs CPU on both sides",
                exc,
                extra={"ari_app": self.app, "error_status": getattr(exc, "status", None)},
            )
            return
        if self.event_filter_ok is not True:
            log.info(
                "ARI event filter set: Asterisk sends only %d event types",
                len(allowed),
                extra={"ari_app": self.app, "event_types": ",".join(allowed)},
            )
        self.event_filter_ok = True

    def on_disconnect(self: Telephony) -> None:
        """The events websocket is gone: from now on nothing is routed until the next resync."""
        if self.online.is_set():
            self.online.clear()
            self._offline_since = self.clock.now()
            self.stats["outages"] += 1

    def _go_online(self: Telephony) -> None:
        outage = max(0.0, self.clock.now() - self._offline_since) if self._offline_since is not None else 0.0
        self._offline_since = None
        held, self._held_timers = self._held_timers, {}
        self.online.set()
        for timer_id, at in held.items():
            if timer_id not in self.engine.timers:
                continue  # cancelled meanwhile (e.g. the resync found the leg answered)
            kind = timer_id.partition(":")[0]
            when = at + outage if kind in RESUMED_TIMERS else self.clock.now()
            if kind in RESUMED_TIMERS:
                self.stats["timer_resumed"] += 1
            self._timers[timer_id] = self.clock.call_at(when, self._fire, timer_id)
            self._timer_at[timer_id] = when
        if self._periodic is None and self.reconcile_interval > 0:
            self._periodic = asyncio.get_running_loop().create_task(self._reconcile_forever())

    async def _reconcile_forever(self: Telephony) -> None:
        while True:
            await self.clock.sleep(self.reconcile_interval)
            if not self.online.is_set():
                continue
            try:
                await self.reconcile()
                await self.watch_endpoints(full=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an unreachable Asterisk: the next pass tries again
                self.stats["reconcile_failed"] += 1
                log.warning("reconciliation with Asterisk failed: %s", exc)

    async def resync(self: Telephony, reconnected: bool) -> None:
        """Reconcile the engine with what Asterisk has now (after a gap or a restart)."""
        await self.reconcile(at_connect=True, reconnected=reconnected)

    # ------------------------------------------------------------------ the pass

    async def reconcile(self: Telephony, *, at_connect: bool = False, reconnected: bool = False) -> None:
        """Compare the engine with GET /channels, /applications/{app} and /bridges; repair drift."""
        async with self._reconcile_lock:
            self.epoch += 1
            epoch = self.epoch
            channels = {c.id: c for c in await self.client.list_channels()}
            app = await self.client.get_application(self.app)
            bridges = await self.client.list_bridges()
            before = self.clock.now()
            pong = await self.client.ping()
            after = self.clock.now()
            asterisk_now = _parse_ts(pong.get("timestamp", ""))
            self.ping_uncertainty = after - before
            engine_at_ping = (before + after) / 2  # Asterisk's clock read happened within [before, after]
            in_app = set(app.channel_ids)
            self.reconcile_runs += 1
            suspects: set[str] = set()
            confirmed = (lambda key: True) if at_connect else (lambda key: key in self._suspects)

            def doubt(key: str) -> bool:
                """True when a finding is confirmed; otherwise remember it for the next pass."""
                if confirmed(key):
                    return True
                suspects.add(key)
                return False

            # 1. customers who left while we did not hear it
            for chans in list(self.calls.values()):
                if chans.gone or chans.released or chans.epoch >= epoch or chans.channel_id in in_app:
                    continue
                if not doubt(f"call:{chans.call_id}"):
                    continue
                chans.gone = True
                self._repair("caller_gone", call=chans.call_id)
                if chans.call_id in self.engine.calls:
                    self.feed(ev.CallerHungUp(chans.call_id))
                if chans.holding_bridge or chans.mixing_bridge:
                    self.lanes.submit(f"call:{chans.call_id}", lambda c=chans: self._destroy_bridges(c))
                self._maybe_forget_call(chans.call_id)
            # 2. agent legs: gone -> ended, answered -> answered, ringing -> kept
            for leg in list(self.legs.values()):
                if leg.ended or not leg.created or leg.epoch >= epoch:
                    continue
                channel = channels.get(leg.channel_id)
                if channel is None:
                    if doubt(f"leg:{leg.offer_id}"):
                        self._leg_lost(leg)
                    continue
                # The app lists a ringing originated leg too (originate subscribes it): only the
                # snapshot's dialplan (Stasis, not AppDial2) says it was answered into Stasis.
                if not leg.in_stasis and channel.id in in_app and _in_stasis(channel, self.app):
                    leg.in_stasis = True  # its StasisStart was lost
                offer = self.engine.offers.get(leg.offer_id)
                answered = (
                    leg.in_stasis
                    and not leg.answered
                    and channel.state == "Up"
                    and offer is not None
                    and offer.state in ANSWERABLE
                )
                if answered and doubt(f"answer:{leg.offer_id}"):
                    self._repair("leg_answered", call=leg.call_id, offer=leg.offer_id)
                    self._leg_answered(leg)
            # 3. channels in the app that we do not know: legs of earlier runs, customers to take back
            self._take_back(channels, in_app, bridges, asterisk_now, engine_at_ping, doubt)
            # 4. customers we sent on whose continue failed: send them on again
            for chans in list(self.calls.values()):
                if chans.release_failed and not chans.gone and chans.overflow is not None:
                    if chans.channel_id in in_app:
                        self._repair("continue_retried", call=chans.call_id)
                        c = chans.overflow
                        self.lanes.submit(
                            f"call:{chans.call_id}", lambda ch=chans, c=c: self._continue(ch, c)
                        )
                    else:
                        chans.release_failed = False
            # 5. channels and bridges whose DELETE failed
            for channel_id in list(self.doomed):
                if channel_id not in channels:
                    self.doomed.discard(channel_id)
                    continue
                self._repair("hangup_retried", channel=channel_id)
                self.lanes.submit(f"orphan:{channel_id}", lambda cid=channel_id: self._hangup_orphan(cid))
            live_bridges = {b.id: b for b in bridges}
            for bridge_id in list(self.doomed_bridges):
                self.doomed_bridges.discard(bridge_id)
                if bridge_id in live_bridges:
                    self._repair("bridge_destroy_retried", bridge=bridge_id)
                    self.lanes.submit(f"bridge:{bridge_id}", lambda b=bridge_id: self._destroy_bridge(b))
            # 6. our bridges that no live call uses (left behind by a failure or an earlier run)
            if not at_connect:
                in_use = {
                    b
                    for c in self.calls.values()
                    if not c.gone
                    for b in (c.holding_bridge, c.mixing_bridge)
                    if b
                }
                for bridge in bridges:
                    call_id, _, kind = bridge.id.rpartition("-")
                    if kind not in ("hold", "talk") or bridge.channels or bridge.id in in_use:
                        continue
                    chans = self.calls.get(call_id)
                    if chans is not None and not chans.gone:
                        continue
                    if doubt(f"bridge:{bridge.id}"):
                        self._repair("bridge_leaked", bridge=bridge.id)
                        self.lanes.submit(f"bridge:{bridge.id}", lambda b=bridge.id: self._destroy_bridge(b))
            self._suspects = suspects
            log.log(
                logging.INFO if at_connect else logging.DEBUG,
                "resynced with Asterisk" if at_connect else "reconciled with Asterisk",
                extra={"reconnected": reconnected, "channels": len(channels), "in_app": len(in_app)},
            )

    def _repair(self: Telephony, kind: str, **extra: str) -> None:
        self.repairs[kind] += 1
        self.stats[f"resync_{kind}"] += 1
        log.info("reconciliation: %s", kind.replace("_", " "), extra={"repair": kind, **extra})

    def _leg_lost(self: Telephony, leg: Leg) -> None:
        leg.ended = True
        self._forget_leg(leg)
        self._repair("leg_gone", call=leg.call_id, offer=leg.offer_id)
        self.feed(ev.AgentLegEnded(leg.offer_id, lost=True))
        self._maybe_forget_call(leg.call_id)

    def _take_back(
        self: Telephony,
        channels: dict[str, ari.Channel],
        in_app: set[str],
        bridges: list[ari.Bridge],
        asterisk_now: float | None,
        engine_at_ping: float,
        doubt,
    ) -> None:
        bridge_of = {ch: b for b in bridges for ch in b.channels}
        unknown_customers: dict[str, tuple[ari.Channel, list[str]]] = {}
        orphan_legs: list[tuple[ari.Channel, list[str]]] = []
        for channel_id in in_app:
            channel = channels.get(channel_id)
            if channel is None:
                continue
            if not _in_stasis(channel, self.app):
                # Subscribed without being in Stasis: a ringing originated leg (AppDial2). One of
                # an earlier run, or one we gave up on, is hung up (DELETE needs no Stasis).
                if _is_outgoing(channel) and channel.id not in self.leg_by_channel:
                    orphan_legs.append((channel, []))
                continue
            args = _stasis_args(channel, self.app)
            if args and args[0] == OFFER_ARG:
                if channel.id not in self.leg_by_channel:
                    orphan_legs.append((channel, args))
                continue
            call_id = self.call_of_channel.get(channel.id)
            if call_id is not None and call_id in self.calls and not self.calls[call_id].gone:
                continue
            if doubt(f"customer:{channel.id}"):
                unknown_customers[channel.id] = (channel, args)

        def arrived_at(channel: ari.Channel) -> float | None:
            created = _parse_ts(channel.creationtime)
            if created is None or asterisk_now is None:
                return None
            return engine_at_ping - max(0.0, asterisk_now - created)

        for leg_channel, args in orphan_legs:
            # A leg of ours that ended while the snapshots were read is listed but already
            # forgotten: only a second pass (or the connect-time resync) proves an orphan.
            if not doubt(f"orphan:{leg_channel.id}"):
                continue
            call_id = args[2] if len(args) > 2 else ""
            customer_id = _customer_of(call_id, unknown_customers)
            agent_id = self._agent_of(leg_channel)
            if customer_id is not None and agent_id is not None and args and leg_channel.state == "Up":
                channel, cargs = unknown_customers[customer_id]
                bridge = bridge_of.get(channel.id)
                bridged = bridge is not None and leg_channel.id in bridge.channels
                chans = self._session(call_id, channel)
                self.feed(
                    ev.CallRestored(
                        call_id,
                        cargs[0] if cargs else "",
                        agent_id,
                        channel.caller.number,
                        channel.caller.name,
                        arrived_at=arrived_at(channel),
                        bridged=bridged,
                    )
                )
                call = self.engine.calls.get(call_id)
                if call is not None and call.connected_offer is not None:
                    del unknown_customers[customer_id]
                    leg = self._add_leg(call.connected_offer, leg_channel.id, call_id, agent_id)
                    leg.created = leg.in_stasis = leg.answered = True
                    self.restored_offers[leg_channel.id.rpartition(".")[0]] = call.connected_offer
                    if bridged:
                        chans.mixing_bridge = bridge.id
                    elif bridge is not None and bridge.bridge_type == "holding":
                        chans.holding_bridge = bridge.id
                        chans.parked = True
                    self._repair("restored", call=call_id, agent=agent_id)
                    continue
                self.calls.pop(call_id, None)
                self.call_of_channel.pop(channel.id, None)
            self._repair("orphan_leg", channel=leg_channel.id)
            self.stats["orphan_leg"] += 1
            self.lanes.submit(f"orphan:{leg_channel.id}", lambda cid=leg_channel.id: self._hangup_orphan(cid))

        def place(item: tuple[str, tuple[ari.Channel, list[str]]]) -> tuple[int, str, str]:
            channel, args = item[1]
            try:  # a bad priority is logged once, by _arrive
                priority = int(args[1]) if len(args) > 1 and args[1].strip() else 0
            except ValueError:
                priority = 0
            return (-priority, channel.creationtime, channel.id)

        # Each arrival is dispatched at once: take callers back in their queue order (priority,
        # then arrival), so a free agent gets the caller who waited longest, as before the gap.
        for channel_id, (channel, args) in sorted(unknown_customers.items(), key=place):
            self._repair("requeued", call=channel_id)
            bridge = bridge_of.get(channel_id)
            call_id = self._new_call_id(channel_id)

            def prepare(chans: CallChannels, bridge=bridge) -> None:
                if bridge is not None and bridge.bridge_type == "holding":
                    chans.holding_bridge = bridge.id  # still parked with music: no need to park again
                    chans.parked = True

            self._arrive(call_id, channel, args, arrived_at=arrived_at(channel), prepare=prepare)

    def _session(self: Telephony, call_id: str, channel: ari.Channel) -> CallChannels:
        chans = self.calls[call_id] = CallChannels(call_id, channel.id, epoch=self.epoch)
        chans.answered = channel.state == "Up"
        self.call_of_channel[channel.id] = call_id
        return chans

    def _agent_of(self: Telephony, channel: ari.Channel) -> str | None:
        """The agent whose endpoint a channel belongs to ("PJSIP/agent1-0000002a")."""
        endpoint = channel.name.rsplit("-", 1)[0]
        for agent in self.engine.agents.values():
            if agent.endpoint == endpoint:
                return agent.id
        return None


def _customer_of(call_id: str, customers: dict[str, tuple[ari.Channel, list[str]]]) -> str | None:
    """The customer channel of a call id: the id itself, or ``<channel>-r<n>`` for a re-entry."""
    if call_id in customers:
        return call_id
    base, sep, _ = call_id.rpartition("-r")
    return base if sep and base in customers else None


def _parse_ts(text: str) -> float | None:
    """ARI timestamps: ``2026-11-25T16:31:24.933+0000``."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None


def _in_stasis(channel: ari.Channel, app: str) -> bool:
    """The snapshot's dialplan runs ``Stasis(<app>,…)``."""
    dialplan = channel.dialplan
    return dialplan.app_name.lower() == "stasis" and dialplan.app_data.split(",", 1)[0] == app


def _is_outgoing(channel: ari.Channel) -> bool:
    """An outgoing leg still dialling (main/dial.c names its application AppDial2)."""
    return channel.dialplan.app_name == "AppDial2"


def _stasis_args(channel: ari.Channel, app: str) -> list[str]:
    """Stasis() arguments from a channel snapshot's dialplan (``app_data`` = "acd,support,10")."""
    if channel.dialplan.app_name.lower() != "stasis":
        return []
    parts = channel.dialplan.app_data.split(",")
    if not parts or parts[0] != app:
        return []
    return parts[1:]
