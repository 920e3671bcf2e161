"""Engine commands carried out as ARI requests (the jobs the lanes run).

Rules that live here:
- an agent is rung with one originate (``POST /channels``): the leg dials at once and enters
  Stasis only when answered, so nothing is done on it (play, addChannel) before its StasisStart;
- every channel the controller created is tracked or hung up: after an ambiguous failure
  (timeout, 5xx) the leg's channel, whose id we chose, is DELETEd (DELETE needs no Stasis);
  a DELETE that fails too is remembered and retried by the reconciliation pass;
- a customer is waiting, bridged or handed to the dialplan: a failed bridge is retried while
  both parties exist, a failed ``continue`` is retried by reconciliation;
- what the customer sees when bridged is the queue's choice, never the agent leg's identity
  (``inhibitConnectedLineUpdates`` on addChannel);
- a confirm prompt is stopped (its own playbackId) before bridging, so pressing 1 connects at once;
- write-ahead (hot standby only, ``durable`` set): the request that makes an agent's phone ring
  and the first action on a new caller wait until the history facts behind them are committed
  (``_durable``); a database that does not confirm in time means: do not ring (the offer ends
  ``canceled``/``not_stored``, next agent) or do not park (the caller keeps waiting unanswered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import OfferState
from controller.acd.setup import HoldMode
from controller.ari.errors import AriBadRequest, AriConflict, AriError, AriNotFound, EndpointUnreachable
from controller.telephony.channels import OFFER_ARG, CallChannels, Leg

if TYPE_CHECKING:
    from controller.telephony.shell import Telephony

log = logging.getLogger("controller.telephony")

# Sent only in desktop acceptance mode, once the agent accepted on screen. Never otherwise.
AUTO_ANSWER_HEADERS = {
    "Alert-Info": "<http://localhost>;info=alert-autoanswer;delay=0",
    "Call-Info": "<sip:localhost>;answer-after=0",
}
CONNECT_ATTEMPTS = 3  # addChannel tries while both parties still exist
CONFIRMING = OfferState.CONFIRMING
PROMPT_SENT_WAIT = 2.0  # s: how long a connect waits for an in-flight prompt request to return
_CONTROL = dict.fromkeys(range(32)) | {127: None}


def caller_id(name: str, number: str) -> str:
    """``"name" <number>`` that ast_callerid_parse reads back exactly (main/callerid.c).

    The name is quoted with ``\\`` and ``"`` escaped (ast_unescape_quoted undoes it); the number
    loses ``<``, ``>`` and ``"`` (the last ``<`` starts the number), control characters go from both.
    The number is always bracketed, even empty, so a name is never read as a number.
    """
    name = name.translate(_CONTROL).replace("\\", "\\\\").replace('"', '\\"')
    number = number.translate(_CONTROL).translate(str.maketrans("", "", '<>"'))
    return f'"{name}" <{number.strip()}>'


class Actions:
    """Mixin of ``Telephony``: one coroutine per engine command, run on the call's or leg's lane."""

    # ------------------------------------------------------------------ agent legs

    async def _ring(self: Telephony, c: cmd.RingAgent, leg: Leg) -> None:
        """Ring the agent with one originate: the phone gets its INVITE about 2 ms after the request.

        What the phone shows goes in ``callerId``, not in ``CONNECTEDLINE()`` variables. Originate
        (res/ari/resource_channels.c, ari_channels_handle_originate_with_id) parses it with
        ast_callerid_parse and sets both the caller and the connected line with
        ast_channel_set_connected_line, which sends no indication; the INVITE's From/PAI/RPID come
        from the connected line (originate_variant.json). A ``CONNECTEDLINE()`` write without its
        ``i`` option goes through ast_channel_update_connected_line: an indication chan_pjsip queues
        as an UPDATE for once the dialog exists. The leg's caller id is the label too, which
        Asterisk would push to the customer when bridged (BEHAVIOUR.md); the agent is always added
        with ``inhibitConnectedLineUpdates`` (see ``_connect``), so the customer never gets it.
        """
        if not self.online.is_set():
            # Deaf to events: we would not hear the answer. The offer waits for the resync.
            self.stats["ring_held_offline"] += 1
            await self.online.wait()
            if self.closing:
                return
        if leg.hangup_requested:
            self._close_leg(leg)  # cancelled before anything was created in Asterisk
            return
        stored = await self._durable("ring", call=c.call_id, offer=c.offer_id, agent=c.agent_id)
        if self.closing:
            return
        if not stored or leg.hangup_requested:  # not stored, or cancelled while it was written
            self._close_leg(leg, not_stored=not stored)
            return
        headers = dict(c.headers)
        if c.auto_answer:
            # Desktop mode only, after the agent pressed Accept: the two headers softphones obey.
            headers.update(AUTO_ANSWER_HEADERS)
        variables = {f"PJSIP_HEADER(add,{name})": value for name, value in headers.items()}
        extra = {"call": c.call_id, "agent": c.agent_id, "endpoint": c.endpoint, "offer": c.offer_id}
        self._reaction_done(c.call_id, "dial")
        try:
            # The one ring request. The leg's id is ours, so an ambiguous failure is DELETEd by it.
            await self.client.originate(
                c.endpoint,
                app=self.app,
                app_args=[OFFER_ARG, c.offer_id, c.call_id],
                caller_id=caller_id(c.display_name, c.display_number),
                timeout=c.dial_timeout,
                variables=variables,
                channel_id=leg.channel_id,
            )
        except EndpointUnreachable:
            log.info("agent endpoint unreachable (Allocation failed)", extra=extra)
            self._close_leg(leg, allocation_failed=True)
            return
        except AriError as exc:
            # A timeout, a dropped connection or a 5xx: the channel may exist (and ring) all the same.
            self.stats["originate_failed"] += 1
            log.warning(
                "could not ring the agent: %s; deleting the channel in case it exists", exc, extra=extra
            )
            await self._discard_leg(leg)
            return
        leg.created = True
        leg.epoch = self.epoch
        # Cancelled while the originate was in flight: the hangup job queued behind us deletes it.

    async def _durable(self: Telephony, what: str, **extra: str) -> bool:
        """Write-ahead: wait until every history fact queued so far (the offer's or the call's row
        among them) is committed. True at once in single-node mode (``durable`` unset)."""
        if self.durable is None:
            return True
        if await self.durable():
            return True
        self.stats[f"{what}_not_stored"] += 1
        log.warning(
            "the database did not confirm the history in time: not acting (%s)",
            what,
            extra={"action": what, **extra},
        )
        return False

    async def _discard_leg(self: Telephony, leg: Leg) -> None:
        """The leg failed in a way that may have left its channel alive: DELETE it, then move on."""
        await self._hangup_channel(leg.channel_id, "normal")
        self._close_leg(leg)

    def _close_leg(
        self: Telephony, leg: Leg, *, allocation_failed: bool = False, not_stored: bool = False
    ) -> None:
        """End a leg whose ChannelDestroyed will not reach us (never created, or given up on)."""
        if leg.ended:
            return
        leg.ended = True
        self._forget_leg(leg)
        self.feed(ev.AgentLegEnded(leg.offer_id, allocation_failed=allocation_failed, not_stored=not_stored))

    def _hangup_leg(self: Telephony, offer_id: str, reason: str) -> None:
        leg = self.legs.get(offer_id)
        if leg is None or leg.ended:
            return
        leg.hangup_requested = True

        async def job() -> None:
            if leg.ended or not leg.created:
                return  # the ring job closed it without creating anything
            if await self._hangup_channel(leg.channel_id, reason) is False:
                # Already gone. If its ChannelDestroyed was lost (socket gap), reconciliation reports it.
                self.stats["hangup_already_gone"] += 1

        self.lanes.submit(f"leg:{offer_id}", job)

    async def _hangup_channel(self: Telephony, channel_id: str, reason: str) -> bool | None:
        """DELETE a channel: True hung up, False already gone, None failed (retried by reconciliation)."""
        try:
            done = await self.client.hangup(channel_id, reason)
        except AriError as exc:
            self.doomed.add(channel_id)
            self.stats["hangup_failed"] += 1
            log.warning("could not hang up channel %s: %s; retrying later", channel_id, exc)
            return None
        self.doomed.discard(channel_id)
        return done

    async def _confirm_prompt(self: Telephony, c: cmd.PlayConfirmPrompt) -> None:
        leg = self.legs.get(c.offer_id)
        offer = self.engine.offers.get(c.offer_id)
        if leg is None or leg.ended or leg.hangup_requested or offer is None or offer.state is not CONFIRMING:
            return  # the digit (or a hangup) came first: never play into a connected call
        media = ["sound:beep"]
        if c.caller_number.isdigit():
            media.append(f"digits:{c.caller_number}")
        media += [f"number:{c.wait_seconds}", "sound:seconds"]
        # Our own id, known before the 201: a digit pressed meanwhile can stop it.
        leg.playback_id = f"{leg.channel_id}-prompt"
        leg.prompt_sent = asyncio.get_running_loop().create_future()
        try:
            await self.client.play(leg.channel_id, media, playback_id=leg.playback_id)
        except AriError as exc:
            leg.playback_id = None
            self.stats["prompt_failed"] += 1
            log.info("could not play the confirm prompt: %s", exc, extra={"offer": c.offer_id})
        finally:
            if not leg.prompt_sent.done():
                leg.prompt_sent.set_result(None)

    async def _stop_prompt(self: Telephony, leg: Leg) -> None:
        """Stop the confirm prompt: addChannel of a playing channel waits until the playback ends."""
        if leg.playback_id is None:
            return
        if leg.prompt_sent is not None and not leg.prompt_sent.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROMPT_SENT_WAIT):
                    await asyncio.shield(leg.prompt_sent)
        playback_id, leg.playback_id = leg.playback_id, None
        if playback_id is None:
            return
        try:
            await self.client.stop_playback(playback_id)
        except AriNotFound:
            pass  # already finished
        except AriError as exc:
            log.info("could not stop the confirm prompt: %s", exc, extra={"offer": leg.offer_id})

    # ------------------------------------------------------------------ customers

    async def _park(self: Telephony, chans: CallChannels) -> None:
        if chans.gone or chans.released or chans.parked:
            return  # gone, sent on, or still parked from before a restart
        if not await self._durable("park", call=chans.call_id):
            return  # the caller keeps waiting unanswered; an agent who accepts gets them all the same
        if chans.gone or chans.released or chans.parked:
            return
        chans.parked = True
        try:
            if chans.hold is HoldMode.RING:
                await self.client.ring(chans.channel_id)
                return
            bridge_id = f"{chans.call_id}-hold"
            # known before it exists: whoever cleans up after this call also destroys it
            chans.holding_bridge = bridge_id
            await asyncio.gather(
                self._answer(chans),
                self._create_bridge("holding", bridge_id, f"acd hold {chans.call_id}"),
            )
            await self.client.add_channel(bridge_id, [chans.channel_id])
            await self.client.start_bridge_moh(bridge_id)
        except (AriNotFound, AriBadRequest) as exc:
            # the caller left meanwhile ("Channel not found"): StasisEnd ends the call
            self.stats["park_caller_gone"] += 1
            log.debug("caller left while being parked: %s", exc, extra={"call": chans.call_id})
        except AriError as exc:
            # Still in Stasis and still queued: an agent who accepts gets them all the same.
            self.stats["park_failed"] += 1
            log.warning(
                "could not park caller (no music while waiting): %s", exc, extra={"call": chans.call_id}
            )
        if chans.gone:
            await self._destroy_bridges(chans)

    async def _create_bridge(self: Telephony, kind: str, bridge_id: str, name: str) -> None:
        """Create one of our bridges; 409 means it exists (left by an earlier run): use it."""
        try:
            await self.client.create_bridge(kind, bridge_id=bridge_id, name=name)
        except AriConflict:
            self.stats["bridge_reused"] += 1

    async def _answer(self: Telephony, chans: CallChannels) -> None:
        await self.client.answer(chans.channel_id)
        chans.answered = True

    async def _connect(self: Telephony, c: cmd.Connect) -> None:
        chans = self.calls.get(c.call_id)
        leg = self.legs.get(c.offer_id)
        if chans is None or leg is None or chans.gone or leg.ended:
            return  # a party left: its event (or reconciliation) ends the call in the engine
        bridge_id = chans.mixing_bridge or f"{c.call_id}-talk"
        extra = {"call": c.call_id, "agent": c.agent_id, "offer": c.offer_id, "bridge": bridge_id}
        self._reaction_done(c.call_id, "bridge")
        await self._stop_prompt(leg)
        last: AriError | None = None
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                if not chans.answered:
                    await self._answer(chans)
                if chans.mixing_bridge is None:
                    await self._create_bridge("mixing", bridge_id, f"acd call {c.call_id}")
                    chans.mixing_bridge = bridge_id
                await self._show_customer(chans)
                # one addChannel moves the customer out of the holding bridge (music stops by itself);
                # no connected-line update: the customer never sees the agent leg's identity
                await self.client.add_channel(
                    bridge_id, [chans.channel_id, leg.channel_id], inhibit_connected_line_updates=True
                )
                break
            except AriError as exc:
                last = exc
                if chans.gone or leg.ended:
                    return
                if not await self._exists(chans.channel_id) or not await self._exists(leg.channel_id):
                    # A party left: its hangup event (or reconciliation after a gap) ends the call.
                    log.info("connect failed, a party left: %s", exc, extra=extra)
                    return
                self.stats["connect_retry"] += 1
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            # Both are there and Asterisk keeps refusing: end the call rather than strand them.
            self.stats["connect_failed"] += 1
            log.error("could not bridge the caller with the agent: %s; ending the call", last, extra=extra)
            await self._hangup_channel(leg.channel_id, "normal")
            return
        if chans.holding_bridge is not None:
            holding, chans.holding_bridge = chans.holding_bridge, None
            await self._destroy_bridge(holding)
        log.info("call connected", extra=extra)

    async def _exists(self: Telephony, channel_id: str) -> bool:
        """False only when Asterisk says the channel is gone; an unanswered question counts as alive."""
        try:
            await self.client.get_channel(channel_id)
        except AriNotFound:
            return False
        except AriError:
            return True
        return True

    async def _show_customer(self: Telephony, chans: CallChannels) -> None:
        """Set what the customer's phone shows once bridged, if the queue configures it."""
        if chans.identity_set:
            return
        chans.identity_set = True
        call = self.engine.calls.get(chans.call_id)
        queue = self.engine.setup.queues.get(call.queue) if call is not None else None
        if queue is None:
            return
        name, number = queue.customer_sees_name.replace('"', "'"), queue.customer_sees_number
        if name and number:
            variable, value = "CONNECTEDLINE(all)", f'"{name}" <{number}>'  # one update, not two
        elif name or number:
            variable, value = ("CONNECTEDLINE(name)", name) if name else ("CONNECTEDLINE(num)", number)
        else:
            return
        try:
            await self.client.set_variable(chans.channel_id, variable, value)
        except AriError as exc:
            log.info(
                "could not set the connected line shown to the caller: %s", exc, extra={"call": chans.call_id}
            )

    async def _hangup_caller(self: Telephony, chans: CallChannels, reason: str) -> None:
        if not chans.gone:
            await self._hangup_channel(
                chans.channel_id, reason if reason in ("normal", "busy", "congestion") else "normal"
            )
        await self._destroy_bridges(chans)

    async def _continue(self: Telephony, chans: CallChannels, c: cmd.Overflow) -> None:
        chans.overflow = c
        if not chans.gone:
            try:
                if c.target is None:
                    await self.client.continue_in_dialplan(chans.channel_id)
                else:
                    await self.client.continue_in_dialplan(
                        chans.channel_id, c.target.context, c.target.exten, c.target.priority
                    )
                chans.release_failed = False
            except (AriNotFound, AriConflict):
                chans.release_failed = False  # left, or no longer in Stasis: not ours any more
            except AriError as exc:
                # Still in Stasis with nobody routing it: reconciliation sends it on again.
                chans.release_failed = True
                self.stats["continue_failed"] += 1
                log.warning(
                    "could not send the caller on in the dialplan: %s; retrying later",
                    exc,
                    extra={"call": chans.call_id},
                )
        await self._destroy_bridges(chans)

    async def _destroy_bridges(self: Telephony, chans: CallChannels) -> None:
        for attr in ("holding_bridge", "mixing_bridge"):
            bridge_id = getattr(chans, attr)
            if bridge_id is not None:
                setattr(chans, attr, None)
                await self._destroy_bridge(bridge_id)

    async def _destroy_bridge(self: Telephony, bridge_id: str) -> None:
        try:
            await self.client.destroy_bridge(bridge_id)
        except AriError as exc:
            self.doomed_bridges.add(bridge_id)
            log.warning("could not destroy bridge %s: %s; retrying later", bridge_id, exc)
        else:
            self.doomed_bridges.discard(bridge_id)
