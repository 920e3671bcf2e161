"""Bridges: holding/mixing membership, moves, MOH, BRIDGEPEER bookkeeping and who hears whom.

A mixin of Engine (it uses the engine's event fan-out and subscriptions). Rules from the traces:
no BridgeCreated for REST bridges; a channel leaving by removeChannel/move unsubscribes the app from
the bridge (no BridgeDestroyed later) while one hanging up inside does not; a bridge's MOH stops when
it empties (DELETE moh -> 409); mixing bridges show ``simple_bridge`` until two answered PJSIP legs
make it ``native_rtp`` (a Local leg never does: no optimisation in Stasis bridges); joining two legs
sets BRIDGEPEER/BRIDGEPVTCALLID and swaps connected lines (SIP UPDATEs); a channel that is playing
joins only when its playback ends (the addChannel answer waits).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.sim.errors import AriError
from controller.sim.model import Bridge, Channel, Party

if TYPE_CHECKING:
    from controller.sim.engine import Engine

_BRIDGE_TYPES = {"mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single", "sdp_label"}


@dataclass
class _PendingAdd:
    """An addChannel request held until the playbacks of ``left`` more channels end."""

    bridge: Bridge
    inhibit_connected: bool
    done: asyncio.Future[None]
    left: int


class BridgeOps:
    """Bridge operations of the simulated Asterisk (mixed into Engine)."""

    def create_bridge(self: Engine, btype: str | None, bridge_id: str | None, name: str | None) -> Bridge:
        types = [t.strip() for t in (btype or "mixing").split(",") if t.strip()] or ["mixing"]
        if any(t not in _BRIDGE_TYPES for t in types):
            raise AriError(500, "Unable to create bridge")
        if bridge_id and bridge_id in self.bridges:
            raise AriError(409, f"Bridge with id '{bridge_id}' already exists")
        kind = "holding" if "holding" in types else "mixing"
        bridge = Bridge(bridge_id or self.ids.uuid(), name or "", kind, self.ts.fmt())
        self.bridges[bridge.id] = bridge
        self._changed()
        return bridge

    def get_bridge(self: Engine, bridge_id: str) -> Bridge:
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            raise AriError(404, "Bridge not found")
        return bridge

    def _bridge_controls(self: Engine, ids: list[str]) -> list[Channel]:
        chans = []
        for cid in ids:
            if not cid:
                continue
            ch = self.channels.get(cid)
            if ch is None:
                raise AriError(400, "Channel not found")
            if ch.stasis_app is None:
                raise AriError(422, "Channel not in Stasis application")
            chans.append(ch)
        if not chans:
            raise AriError(400, "Missing parameter channel")
        return chans

    def add_channels(
        self: Engine, bridge: Bridge, ids: list[str], inhibit_connected: bool = False
    ) -> asyncio.Future[None] | None:
        """addChannel: a channel in another bridge is moved (ChannelLeftBridge then ChannelEnteredBridge).

        A channel that is playing something joins only when its playback ends; the request's answer
        waits for that (the returned future), the other channels are moved at once."""
        chans = self._bridge_controls(ids)
        waiting = []
        for ch in chans:
            if ch.bridge is bridge or ch.hung:
                continue
            if ch.playbacks and self.add_waits_for_playback:
                waiting.append(ch)
                continue
            self._move_into(bridge, ch, inhibit_connected)
        self._changed()
        if not waiting:
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = _PendingAdd(bridge, inhibit_connected, done, len(waiting))
        for ch in waiting:
            ch.after_playback.append(pending)
        return done

    def _move_into(self: Engine, bridge: Bridge, ch: Channel, inhibit_connected: bool) -> None:
        if ch.bridge is not None:
            self._leave_bridge(ch, unsubscribe=True)
        self._enter_bridge(bridge, ch, inhibit_connected)

    def _playbacks_done(self: Engine, ch: Channel) -> None:
        """The channel's last playback ended (or it left): run the addChannel requests waiting for it."""
        pendings, ch.after_playback = ch.after_playback, []
        for pending in pendings:
            bridge = pending.bridge
            if (
                not ch.hung
                and ch.stasis_app is not None
                and bridge.id in self.bridges
                and ch.bridge is not bridge
            ):
                self._move_into(bridge, ch, pending.inhibit_connected)
            pending.left -= 1
            if pending.left <= 0 and not pending.done.done():
                pending.done.set_result(None)
        self._changed()

    def remove_channels(self: Engine, bridge: Bridge, ids: list[str]) -> None:
        chans = self._bridge_controls(ids)
        for ch in chans:
            if ch.bridge is not bridge:
                raise AriError(422, "Channel not in this bridge")
        for ch in chans:
            self._leave_bridge(ch, unsubscribe=True)
        self._changed()

    def destroy_bridge(self: Engine, bridge: Bridge) -> None:
        """DELETE /bridges/{id}: channels are pushed out (they stay in Stasis), then BridgeDestroyed."""
        for ch in list(bridge.channels.values()):
            self._leave_bridge(ch, unsubscribe=False)
        for pb in list(bridge.playbacks):
            self._finish_playback(pb, "done")
        recips = self._bridge_recips(bridge)
        bridge.moh = None
        bridge.touch()
        if recips:
            self._emit("BridgeDestroyed", recips, f', "bridge": {bridge.snap()}')
        for app in list(bridge.subs):
            app.bridges.pop(bridge.id, None)
            self.apps.cleanup(app)
        bridge.subs.clear()
        self.bridges.pop(bridge.id, None)
        self._changed()

    def bridge_moh(self: Engine, bridge: Bridge, moh_class: str | None) -> None:
        if not bridge.moh_announcer:
            self.ids.skip_uniqueids(2)  # the Announcer/ARI_MOH Local pair
            bridge.moh_announcer = True
        bridge.moh = moh_class or "default"
        for ch in bridge.channels.values():
            self._update_audio(ch)

    def bridge_moh_stop(self: Engine, bridge: Bridge) -> None:
        if bridge.moh is None:
            raise AriError(409, "Bridge isn't playing music")
        bridge.moh = None
        bridge.moh_announcer = False
        for ch in bridge.channels.values():
            self._update_audio(ch)

    def _enter_bridge(self: Engine, bridge: Bridge, ch: Channel, inhibit_connected: bool) -> None:
        bridge.channels[ch.id] = ch
        bridge.touch()
        ch.bridge = bridge
        if ch.stasis_app is not None:
            self.sub_bridge(ch.stasis_app, bridge)
        self._ev_bridge_chan("ChannelEnteredBridge", bridge, ch)
        if bridge.type == "mixing" and len(bridge.channels) > 1:
            self._peers_joined(bridge, ch, inhibit_connected)
        self._retech(bridge)
        self._update_media(bridge)
        self._update_audio(ch)

    def _peers_joined(self: Engine, bridge: Bridge, joiner: Channel, inhibit_connected: bool) -> None:
        """BRIDGEPEER/BRIDGEPVTCALLID rounds (three for two PJSIP legs that go native_rtp, else one),
        then the connected-line exchange (Asterisk races it with the last round): each phone gets a
        SIP UPDATE with the other's identity, the channel whose connected line changed a
        ChannelConnectedLine.
        ``inhibitConnectedLineUpdates`` on either join suppresses both directions (traced for the
        joint request and for the second channel's own request)."""
        joiner.inhibit_connected = inhibit_connected
        if len(bridge.channels) == 2:
            other = next(iter(bridge.channels.values()))  # the joiner was added last

            native = all(c.tech == "PJSIP" for c in (joiner, other))
            first, second = (joiner, other) if native else (other, joiner)  # as recorded

            def peer_round() -> None:
                self._set_bridge_var(first, "BRIDGEPEER", second.name)
                self._set_bridge_var(first, "BRIDGEPVTCALLID", second.protocol_id)
                self._set_bridge_var(second, "BRIDGEPEER", first.name)
                self._set_bridge_var(second, "BRIDGEPVTCALLID", first.protocol_id)

            peer_round()
            if native:  # native_rtp re-evaluations
                peer_round()
                peer_round()
            if not (inhibit_connected or other.inhibit_connected):
                self._push_connected(other, joiner.caller)
                self._push_connected(joiner, other.caller)
            return
        for ch in bridge.channels.values():
            others = ",".join(c.name for c in bridge.channels.values() if c is not ch)
            self.setvar(ch, "BRIDGEPEER", others)

    def _set_bridge_var(self: Engine, ch: Channel, name: str, value: str) -> None:
        """Setting an unset variable to "" is no change and no event (a Local leg has no call id)."""
        if value or ch.vars.get(name):
            self.setvar(ch, name, value)

    def _push_connected(self: Engine, target: Channel, source: Party) -> None:
        """Bridging updates a party's connected line to its peer's caller id: the phone always gets
        an UPDATE (PAI/RPID), the app a ChannelConnectedLine only when the connected line changed."""
        self._set_connected(target, source)
        outer = target.local_outer
        if outer is not None and not outer.hung:
            outer.connected = Party(source.name, source.number)
            outer.touch()
        if target.party is not None:
            target.party.connected_update(source.name, source.number, self._pai(source))

    def _pai(self: Engine, party: Party) -> str:
        user = party.number or "anonymous"
        return (
            f'"{party.name}" <sip:{user}@{self.sip_host}>' if party.name else f"<sip:{user}@{self.sip_host}>"
        )

    def _leave_bridge(self: Engine, ch: Channel, *, unsubscribe: bool) -> None:
        bridge = ch.bridge
        assert bridge is not None
        if ch.vars.get("BRIDGEPEER"):
            self.setvar(ch, "BRIDGEPEER", "")
            if ch.vars.get("BRIDGEPVTCALLID"):
                self.setvar(ch, "BRIDGEPVTCALLID", "")
        del bridge.channels[ch.id]
        bridge.touch()
        ch.bridge = None
        self._ev_bridge_chan("ChannelLeftBridge", bridge, ch)
        if unsubscribe and ch.stasis_app is not None:
            self.unsub_bridge(ch.stasis_app, bridge)
        self._retech(bridge)
        if not bridge.channels and bridge.moh is not None:
            bridge.moh = None  # the MOH announcer leaves a bridge that has nobody else
            bridge.moh_announcer = False
        self._set_peer(ch, None)
        self._update_media(bridge)
        self._update_audio(ch)

    @staticmethod
    def _retech(bridge: Bridge) -> None:
        """Mixing bridges show simple_bridge; native_rtp once two answered PJSIP legs are joined."""
        if bridge.type != "mixing":
            return
        n = len(bridge.channels)
        if n == 2 and all(c.state == "Up" and c.tech == "PJSIP" for c in bridge.channels.values()):
            tech = "native_rtp"
        elif n > 2:
            tech = "softmix"
        else:
            tech = "simple_bridge"
        if tech != bridge.technology:
            bridge.technology = tech
            bridge.touch()

    def _update_media(self: Engine, bridge: Bridge) -> None:
        """Two answered legs alone in a mixing bridge talk; nobody talks in a holding bridge."""
        if bridge.type != "mixing" or len(bridge.channels) > 3:
            return  # (peers were cleared when the third channel joined)
        chans = list(bridge.channels.values())
        if len(chans) == 2 and chans[0].state == "Up" and chans[1].state == "Up":
            self._set_peer(chans[0], chans[1])
            self._set_peer(chans[1], chans[0])
        else:
            for ch in chans:
                self._set_peer(ch, None)

    @staticmethod
    def _set_peer(ch: Channel, peer: Channel | None) -> None:
        if ch.media_peer is peer:
            return
        if ch.media_peer is not None and ch.party is not None:
            ch.party.media_end()
        ch.media_peer = peer
        if peer is not None and ch.party is not None:
            label = peer.party.label if peer.party is not None else peer.name
            ch.party.media_start(label, peer.id)

    @staticmethod
    def _update_audio(ch: Channel) -> None:
        party = ch.party
        if party is None:
            return
        up = ch.state == "Up"
        moh = up and (ch.moh is not None or (ch.bridge is not None and ch.bridge.moh is not None))
        party.audio(moh, (not up) and ch.ringing)
