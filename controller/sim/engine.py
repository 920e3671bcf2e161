"""The simulated Asterisk core: channel lifecycles, dialing, bridges, playbacks and event fan-out.

Every sequence here reproduces a recorded Asterisk 22.10.1 trace (``ari-api-docs/traces`` in the
shared folder). REST handlers and the simulated SIP user agents (phones,
callers) both drive this object; it never awaits, so an operation and the events it causes are one
atomic step, and all delays go through the shared Clock. Mixins of Engine, one job each:
subscriptions.py, outbound.py (create/dial/originate), bridging.py, playback.py, dialplan.py
(continue, Local channels), variables.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from controller.sim.bridging import BridgeOps
from controller.sim.dialplan import DialplanOps
from controller.sim.errors import AriError
from controller.sim.model import (
    HANGUP_REASONS,
    Bridge,
    Channel,
    Endpoint,
    Ids,
    Party,
    Playback,
    Timestamps,
    cause_to_sip,
    cause_txt,
    jstr,
)
from controller.sim.outbound import OutboundOps, auto_answer_headers, dial_status
from controller.sim.playback import PlaybackOps
from controller.sim.subscriptions import SubscriptionOps
from controller.sim.variables import VariableOps

if TYPE_CHECKING:
    from asyncio import TimerHandle

    from controller.clock import Clock
    from controller.sim.apps import App, AppRegistry
    from controller.sim.dialplan import Dialplan


_DEFAULT_SOUNDS = {
    "hello-world": 1.4,
    "beep": 0.25,
    "silence/1": 1.0,
    "silence/2": 2.0,
    "silence/5": 5.0,
    "tt-monkeys": 3.0,
    "demo-congrats": 11.0,
    "queue-thankyou": 1.5,
}


class Engine(SubscriptionOps, OutboundOps, BridgeOps, PlaybackOps, DialplanOps, VariableOps):
    """Channels, bridges, endpoints and playbacks of one simulated Asterisk."""

    def __init__(
        self,
        *,
        clock: Clock,
        ids: Ids,
        ts: Timestamps,
        apps: AppRegistry,
        asterisk_id: str,
        sip_host: str,
        dialplan: Dialplan,
        sound_durations: dict[str, float],
        default_sound_duration: float,
        changed: Callable[[], None],
    ) -> None:
        self.clock = clock
        self.ids = ids
        self.ts = ts
        self.apps = apps
        self.sip_host = sip_host
        self.dialplan = dialplan
        self.sound_durations = {**_DEFAULT_SOUNDS, **sound_durations}
        self.default_sound_duration = default_sound_duration
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.playbacks: dict[str, Playback] = {}
        self.tech_subs: dict[str, set[App]] = {}
        self.globals: dict[str, str] = {}
        self.dialplan_log: deque[tuple[float, str, str, str, int]] = deque(maxlen=10_000)
        self._aid = f', "asterisk_id": "{asterisk_id}"'
        # clock seconds between a /channels/create 200 and the channel's Stasis entry (StasisStart);
        # until then channel operations get 409 "Channel not in Stasis application"
        self.stasis_entry_delay = 0.0
        # deliver channel-topic events twice to an app subscribed to the channel and its endpoint,
        # as Asterisk does (see _recips); a test may turn it off to isolate something else
        self.duplicate_channel_events = True
        # addChannel of a channel that is playing waits for the playback's end (Asterisk does)
        self.add_waits_for_playback = True
        self._changed = changed

    # ------------------------------------------------------------------------------------------
    # scheduling and event fan-out
    # ------------------------------------------------------------------------------------------
    def later(self, delay: float, cb: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.clock.call_at(self.clock.now() + max(0.0, delay), cb, *args)

    def _recips(self, ch: Channel, bridge: Bridge | None = None) -> Iterable[App]:
        """Apps that get an event of ``ch``. An app subscribed to both the channel and its endpoint
        gets channel-topic events twice: res/stasis/app.c forwards the channel's topic to the app
        and the endpoint's topic (which carries its channels' messages) too, with no de-duplication.
        For bridge events (``bridge`` given) and subscribeAll apps there is one forward."""
        ep = ch.endpoint
        epsubs = ep.subs if ep is not None else ()
        techsubs = self.tech_subs.get(ch.tech) if self.tech_subs else None
        allapps = self.apps.all_apps
        if not epsubs and not allapps and not techsubs and (bridge is None or not bridge.subs):
            return ch.subs
        out = set(ch.subs)
        out.update(allapps)
        if techsubs:
            out.update(techsubs)
        if bridge is not None:
            out.update(bridge.subs)
            out.update(epsubs)
            return out
        twice = (
            [app for app in epsubs if app not in allapps and app in ch.subs]
            if self.duplicate_channel_events
            else ()
        )
        out.update(epsubs)
        return [*out, *twice] if twice else out

    def _emit(self, type_: str, recips: Iterable[App], mid: str, pre: str = "") -> None:
        body = f'{{{pre}"type": "{type_}", "timestamp": "{self.ts.fmt()}"{mid}{self._aid}'
        self.apps.deliver(body, type_, recips)

    def ev_chan(self, type_: str, ch: Channel, mid: str = "", pre: str = "") -> None:
        recips = self._recips(ch)
        if recips:
            self._emit(type_, recips, f'{mid}, "channel": {ch.snap()}', pre)

    def setvar(self, ch: Channel, name: str, value: str) -> None:
        ch.vars[name] = value
        recips = self._recips(ch)
        if recips:
            self._emit(
                "ChannelVarset",
                recips,
                f', "channel": {ch.snap()}',
                f'"variable": {jstr(name)}, "value": {jstr(value)}, ',
            )

    def _ev_dial(self, ch: Channel, status: str, dialstring: str) -> None:
        recips = self._recips(ch)
        if recips:
            self._emit(
                "Dial",
                recips,
                f', "dialstatus": "{status}", "forward": "", "dialstring": {jstr(dialstring)}, '
                f'"peer": {ch.snap()}',
            )

    def _ev_bridge_chan(self, type_: str, bridge: Bridge, ch: Channel) -> None:
        recips = self._recips(ch, bridge)
        if recips:
            self._emit(type_, recips, f', "bridge": {bridge.snap()}, "channel": {ch.snap()}')

    def _bridge_recips(self, bridge: Bridge) -> Iterable[App]:
        if not self.apps.all_apps:
            return bridge.subs
        return set(bridge.subs) | set(self.apps.all_apps)

    def _endpoint_recips(self, ep: Endpoint) -> Iterable[App]:
        techsubs = self.tech_subs.get(ep.tech)
        if not techsubs and not self.apps.all_apps:
            return ep.subs
        return set(ep.subs) | set(techsubs or ()) | set(self.apps.all_apps)

    def _ev_endpoint(self, type_: str, ep: Endpoint, extra: str = "") -> None:
        recips = self._endpoint_recips(ep)
        if recips:
            self._emit(type_, recips, f', "endpoint": {ep.snap()}{extra}')

    # ------------------------------------------------------------------------------------------
    # endpoints
    # ------------------------------------------------------------------------------------------
    def endpoint(self, tech: str, resource: str, state: str = "offline") -> Endpoint:
        key = f"{tech}/{resource}"
        ep = self.endpoints.get(key)
        if ep is None:
            ep = self.endpoints[key] = Endpoint(tech, resource, state)
        return ep

    def endpoint_registered(self, ep: Endpoint) -> None:
        """REGISTER: EndpointStateChange(online), PeerStatusChange(Reachable), ContactStatusChange."""
        if ep.state == "online":
            return
        ep.state = "online"
        ep.touch()
        self._ev_endpoint("EndpointStateChange", ep)
        self._ev_endpoint("PeerStatusChange", ep, ', "peer": {"peer_status": "Reachable"}')
        self._ev_endpoint("ContactStatusChange", ep, self._contact(ep, "NonQualified"))
        self._changed()

    def endpoint_unregistered(self, ep: Endpoint) -> None:
        if ep.state == "offline":
            return
        ep.state = "offline"
        ep.touch()
        self._ev_endpoint("EndpointStateChange", ep)
        self._ev_endpoint("PeerStatusChange", ep, ', "peer": {"peer_status": "Unreachable"}')
        self._ev_endpoint("ContactStatusChange", ep, self._contact(ep, "Removed"))
        self._changed()

    @staticmethod
    def _contact(ep: Endpoint, status: str) -> str:
        return (
            f', "contact_info": {{"uri": {jstr(ep.contact_uri)}, "contact_status": "{status}", '
            f'"aor": {jstr(ep.resource)}, "roundtrip_usec": "0"}}'
        )

    @staticmethod
    def _endpoint_channels_changed(ep: Endpoint) -> None:
        """channel_ids changed: new snapshot, but no EndpointStateChange (the subscribeAll trace has none)."""
        ep.touch()

    # ------------------------------------------------------------------------------------------
    # channel creation and destruction
    # ------------------------------------------------------------------------------------------
    def _new_channel(
        self,
        ep: Endpoint,
        kind: str,
        state: str,
        protocol_id: str,
        context: str,
        exten: str,
        priority: int,
        channel_id: str | None = None,
    ) -> Channel:
        wall = self.ts.wall()
        cid = channel_id or self.ids.uniqueid(wall)
        ch = Channel(
            cid,
            self.ids.chan_name(ep.tech, ep.resource),
            ep.tech,
            ep.resource,
            kind,
            state,
            protocol_id,
            context,
            exten,
            priority,
            self.ts.fmt(wall),
        )
        ch.endpoint = ep
        self.channels[cid] = ch
        ep.channel_ids[cid] = None
        return ch

    def _announce_new(self, ch: Channel) -> None:
        """ChannelCreated and the endpoint update: only endpoint / subscribeAll subscribers see them."""
        self.ev_chan("ChannelCreated", ch)
        if ch.endpoint is not None:
            self._endpoint_channels_changed(ch.endpoint)

    def _destroy(self, ch: Channel) -> None:
        self.channels.pop(ch.id, None)
        if ch.after_playback:
            self._playbacks_done(ch)
        for app in list(ch.subs):
            app.channels.pop(ch.id, None)
            self.apps.cleanup(app)
        ch.subs.clear()
        ep = ch.endpoint
        if ep is not None and ch.id in ep.channel_ids:
            del ep.channel_ids[ch.id]
            self._endpoint_channels_changed(ep)
        for timer in ch.timers:
            timer.cancel()
        ch.timers.clear()
        if ch.party is not None:
            ch.party.channel_gone()
        self._changed()

    def _cancel_dial_timer(self, ch: Channel) -> None:
        if ch.dial_timer is not None:
            ch.dial_timer.cancel()
            ch.dial_timer = None

    def _rtp_qos(self, ch: Channel) -> None:
        """The five RTPAUDIOQOS varsets a channel that carried media emits before hanging up; a peer
        it was talking to gets each one as ``...BRIDGED`` right after it."""
        seconds = max(0.0, self.clock.now() - (ch.answered_at or 0.0))
        count = int(seconds * 50)
        peer = ch.media_peer
        them = peer.ssrc if peer is not None and peer.ssrc else (ch.ssrc * 7 + 13) % 2147483647
        zero = "000.000000"
        stats = (
            (
                "RTPAUDIOQOS",
                f"ssrc={ch.ssrc};themssrc={them};lp=0;rxjitter=0.000000;rxcount={count};"
                f"txjitter=0.000250;txcount={count};rlp=0;rtt=0.000000;rxmes=88.087887;txmes=0.000000",
            ),
            (
                "RTPAUDIOQOSJITTER",
                f"minrxjitter={zero};maxrxjitter=000.000375;avgrxjitter=000.000228;stdevrxjitter=000.000094;"
                f"mintxjitter={zero};maxtxjitter={zero};avgtxjitter={zero};stdevtxjitter={zero};",
            ),
            (
                "RTPAUDIOQOSLOSS",
                "".join(
                    f"  {k}={zero};"
                    for k in (
                        "minrxlost",
                        "maxrxlost",
                        "avgrxlost",
                        "stdevrxlost",
                        "mintxlost",
                        "maxtxlost",
                        "avgtxlost",
                        "stdevtxlost",
                    )
                ),
            ),
            (
                "RTPAUDIOQOSRTT",
                "".join(f"     {k}={zero};" for k in ("minrtt", "maxrtt", "avgrtt", "stdevrtt")),
            ),
            (
                "RTPAUDIOQOSMES",
                f"   minrxmes={zero};   maxrxmes={zero};   avgrxmes={zero};   stdevrxmes={zero};"
                f"   mintxmes=088.087887;   maxtxmes=088.087887;   avgtxmes=088.087887;   stdevtxmes={zero};",
            ),
        )
        for name, value in stats:
            self.setvar(ch, name, value)
            if peer is not None and not peer.hung:
                self.setvar(peer, f"{name}BRIDGED", value)

    def _ev_hangup_request(self, ch: Channel, cause: int | None, tech_cause: int | None, soft: bool) -> None:
        pre = ""
        if cause is not None:
            pre += f'"cause": {cause}, '
        if tech_cause is not None:
            pre += f'"tech_cause": {tech_cause}, '
        if soft:
            pre += '"soft": true, '
        self.ev_chan("ChannelHangupRequest", ch, pre=pre)

    def _hangup(
        self,
        ch: Channel,
        *,
        request: tuple[int | None, int | None, bool] | None,
        cause: int,
        tech_cause: int | None = None,
        dial_final: str | None = None,
        second_request: tuple[int | None, int | None, bool] | None = None,
    ) -> None:
        """The common tail of every hangup, in Asterisk's order:
        RTPAUDIOQOS x5 (if media) -> ChannelHangupRequest -> [Dial final] -> [BRIDGEPEER clear,
        ChannelLeftBridge] -> StasisEnd -> STASISSTATUS=SUCCESS -> ChannelDestroyed (only apps still
        subscribed see it: ARI-created channels, explicit subscriptions)."""
        if ch.hung:
            return
        ch.hung = True
        ch.dialing = False
        self._cancel_dial_timer(ch)
        if ch.answered_at is not None and ch.tech == "PJSIP":
            self._rtp_qos(ch)
        if request is not None:
            self._ev_hangup_request(ch, *request)
        if dial_final:
            self._ev_dial(ch, dial_final, ch.dialstring)
        self._stop_channel_playbacks(ch)
        if ch.bridge is not None:
            self._leave_bridge(ch, unsubscribe=False)
        if ch.stasis_app is not None:
            self._leave_stasis(ch)
        if second_request is not None:
            self._ev_hangup_request(ch, *second_request)
        if ch.kind == "originated":
            ch.app_name, ch.app_data = "AppDial2", "(Outgoing Line)"
        else:
            ch.app_name, ch.app_data = "", ""
        ch.touch()
        mid = f', "cause": {cause}, "cause_txt": {jstr(cause_txt(cause))}'
        if tech_cause is not None:
            mid += f', "tech_cause": {tech_cause}'
        self.ev_chan("ChannelDestroyed", ch, mid)
        self._destroy(ch)

    def _enter_stasis(self, ch: Channel, app: App, args: list[str]) -> None:
        ch.stasis_app = app
        ch.stasis_args = args
        ch.stasis_entered = True
        self.sub_channel(app, ch)
        # StasisStart/StasisEnd go to the application's own topic: observers never see them.
        self._emit("StasisStart", (app,), f', "args": {jstr(args)}, "channel": {ch.snap()}')
        self._changed()

    def _leave_stasis(self, ch: Channel) -> None:
        app = ch.stasis_app
        assert app is not None
        self._emit("StasisEnd", (app,), f', "channel": {ch.snap()}')
        ch.stasis_app = None
        self.unsub_channel(app, ch)
        self.setvar(ch, "STASISSTATUS", "SUCCESS")

    # ------------------------------------------------------------------------------------------
    # inbound calls (customers dialing an extension)
    # ------------------------------------------------------------------------------------------
    def inbound(self, caller: Any) -> Channel | None:
        """A caller's INVITE reached the dialplan. Returns the channel (None when no route)."""
        ep = self.endpoint("PJSIP", caller.endpoint_name, "online")
        context = "from-customer"
        entry = self.dialplan.find(context, caller.exten)
        if entry is None:
            entry = self.dialplan.get(caller.exten)
            if entry is None:
                caller.remote_final(404, [], 1, outcome="no_route")
                return None
            context = entry.context
        ch = self._new_channel(ep, "inbound", "Ring", "", context, caller.exten, 1)
        ch.caller = Party(caller.caller_name, caller.caller_number)
        ch.inbound_headers = {k.lower(): (k, v) for k, v in caller.headers.items()}
        ch.party = caller
        caller.attach(ch)
        self._announce_new(ch)
        ch.protocol_id = self.ids.callid()
        ch.touch()
        self.setvar(ch, "SIPDOMAIN", self.sip_host)
        if caller.via_local:
            ch.app_name, ch.app_data = "Dial", f"Local/{caller.exten}@{context}"
            ch.touch()
            self.ev_chan("ChannelDialplan", ch, self._dialplan_mid(ch))
            self._dial_local(ch, ch.app_data)
            return ch
        self.run_dialplan(ch, context, caller.exten, 1)
        return ch

    @staticmethod
    def _dialplan_mid(ch: Channel) -> str:
        return f', "dialplan_app": {jstr(ch.app_name)}, "dialplan_app_data": {jstr(ch.app_data)}'

    def remote_cancel(self, ch: Channel) -> None:
        """The caller CANCELs before answer: cause 127, tech_cause 487."""
        if ch.hung:
            return
        if ch.local_peer is not None:
            self._local_half_gone(ch)
        self._hangup(ch, request=(127, 487, False), cause=127, tech_cause=487)

    def remote_bye(self, ch: Channel) -> None:
        """A UA sends BYE: cause 16 when talking to a peer in a mixing bridge, else no cause (0)."""
        if ch.hung:
            return
        if ch.local_peer is not None:
            # through a Local pair the app's ;2 channel sees ChannelHangupRequest cause 16
            self._local_half_gone(ch)
            self._hangup(ch, request=(16, None, False), cause=16)
            return
        bridge = ch.bridge
        if bridge is not None and bridge.type == "mixing" and len(bridge.channels) > 1:
            self._hangup(ch, request=(16, None, False), cause=16)
        else:
            self._hangup(ch, request=(None, None, False), cause=0)

    def remote_dtmf(self, ch: Channel, digit: str, duration_ms: int) -> None:
        if ch.hung:
            return
        self.ev_chan("ChannelDtmfReceived", ch, f', "digit": {jstr(digit)}, "duration_ms": {duration_ms}')

    # ------------------------------------------------------------------------------------------
    # channel operations (REST)
    # ------------------------------------------------------------------------------------------
    def get_channel(self, channel_id: str) -> Channel:
        ch = self.channels.get(channel_id)
        if ch is None:
            raise AriError(404, "Channel not found")
        return ch

    def control(self, channel_id: str, *, check_state: bool = False) -> Channel:
        """res/ari find_control(): 404 when unknown, 409 when not in Stasis; 412 on Down/Ringing."""
        ch = self.channels.get(channel_id)
        if ch is None:
            raise AriError(404, "Channel not found")
        if ch.stasis_app is None:
            raise AriError(409, "Channel not in Stasis application")
        if check_state and ch.state in ("Down", "Ringing", "Reserved"):
            raise AriError(412, "Channel in invalid state")
        return ch

    def hangup(self, channel_id: str, reason: str | None, reason_code: str | None) -> None:
        """DELETE /channels/{id}: 204, ChannelHangupRequest cause 32 soft whatever the reason."""
        ch = self.get_channel(channel_id)
        if reason and reason_code:
            raise AriError(400, "The reason and reason_code can't both be specified")
        if reason_code:
            try:
                cause = int(reason_code)
            except ValueError:
                raise AriError(400, "Invalid reason for hangup provided") from None
        elif reason:
            if reason not in HANGUP_REASONS:
                raise AriError(400, "Invalid reason for hangup provided")
            cause = HANGUP_REASONS[reason]
        else:
            cause = 16
        if ch.hung:
            return
        if cause == 26:
            reasons = ['SIP;cause=200;text="Call completed elsewhere"', "Q.850;cause=26"]
        else:
            reasons = [f"Q.850;cause={cause}"]
        party = ch.party
        if party is not None:
            if ch.state == "Up":
                party.remote_bye(reasons, cause)
            elif ch.kind == "inbound":
                party.remote_final(cause_to_sip(cause), reasons, cause, outcome="disconnected")
            elif ch.dialing:
                party.cancelled(reasons)
        if ch.local_peer is not None or ch.local_outer is not None:
            self._local_half_gone(ch)
        if ch.kind == "created" and party is None:
            # Never dialled: chan_pjsip has no session to end, the core hangs it up again (603).
            if ch.stasis_pending is not None:
                ch.stasis_pending.cancel()
                ch.stasis_pending = None
            self._hangup(
                ch, request=(32, None, True), cause=16, tech_cause=603, second_request=(16, 603, False)
            )
            return
        if ch.kind == "originated" and ch.stasis_app is None and ch.dialing:
            # Not answered yet: ast_dial's monitor thread reads the hangup and publishes a final
            # Dial (main/dial.c monitor_dial, ast_hangup_cause_to_dial_status) before destroying it.
            self._hangup(ch, request=(32, None, True), cause=cause, dial_final=dial_status(cause))
            return
        self._hangup(ch, request=(32, None, True), cause=cause)

    def answer(self, ch: Channel) -> None:
        if ch.state == "Up":
            return
        ch.state = "Up"
        ch.ringing = False
        ch.answered_at = self.clock.now()
        ch.ssrc = self.ids.ssrc()
        ch.touch()
        self.ev_chan("ChannelStateChange", ch)
        if ch.local_peer is not None:
            self.local_answered(ch)
        if ch.party is not None:
            ch.party.on_answered()
        if ch.bridge is not None:
            self._retech(ch.bridge)
            self._update_media(ch.bridge)
        self._update_audio(ch)
        self._changed()

    def ring(self, ch: Channel, on: bool) -> None:
        ch.ringing = on
        self._update_audio(ch)

    def channel_moh(self, ch: Channel, moh_class: str | None) -> None:
        ch.moh = moh_class
        self._update_audio(ch)

    def send_dtmf(self, ch: Channel, digits: str) -> None:
        if ch.party is not None:
            for digit in digits:
                if digit not in ",":
                    ch.party.dtmf(digit)

    def continue_in_dialplan(
        self, ch: Channel, context: str | None, extension: str | None, priority: int | None, label: str | None
    ) -> None:
        """POST /continue: 204 first, then (ChannelLeftBridge,) StasisEnd and the dialplan runs."""
        if not context:
            target_ctx, target_exten = ch.context, extension or ch.exten
        else:
            target_ctx, target_exten = context, extension or "s"
        if label:
            try:
                target_prio = int(label)
            except ValueError:
                raise AriError(404, "Requested label can not be found") from None
            if target_prio == 0:
                raise AriError(400, "Requested priority is illegal")
        elif priority:
            target_prio = priority
        elif not context and not extension:
            target_prio = ch.priority + 1
        else:
            target_prio = 1
        self.later(0.0, self._continue_now, ch, ch.stasis_app, target_ctx, target_exten, target_prio)

    def _continue_now(self, ch: Channel, app: Any, context: str, exten: str, priority: int) -> None:
        if ch.hung or ch.stasis_app is None or ch.stasis_app is not app:
            return
        if ch.bridge is not None:
            # leaving through continue keeps the app subscribed to the bridge (BridgeDestroyed later)
            self._leave_bridge(ch, unsubscribe=False)
        self._stop_channel_playbacks(ch)
        self._leave_stasis(ch)
        if ch.kind in ("inbound", "local"):
            if ch.party is not None:
                ch.party.continued((context, exten, priority))
            self.run_dialplan(ch, context, exten, priority)
            self._changed()
            return
        # An ARI-created channel runs no dialplan: its Stasis() thread ends and hangs it up.
        ch.context, ch.exten, ch.priority = context, exten, priority
        ch.app_name = ch.app_data = ""
        ch.touch()
        self.dialplan_log.append((self.clock.now(), ch.id, context, exten, priority))
        if ch.party is not None:
            if ch.state == "Up":
                ch.party.remote_bye(["Q.850;cause=16"], 16)
            elif ch.dialing:
                ch.party.cancelled(["Q.850;cause=16"])
        self._hangup(ch, request=None, cause=0)


__all__ = ["Engine", "auto_answer_headers"]
