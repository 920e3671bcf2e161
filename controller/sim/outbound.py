"""Outbound calls to agent phones: ``/channels/create`` + ``dial`` and originate (``POST /channels``).

Agent legs are rung with originate; create + dial is kept for the traces and tests of it.

A created channel enters Stasis in its own thread in Asterisk: its StasisStart (with the
ChannelCallerId/ChannelConnectedLine of its variables, ChannelDialplan and ``STASISSTATUS=""``)
comes after the create's 200, ``stasis_entry_delay`` clock seconds later, and until then the channel
has no Stasis control (409 on dial, create_then_dial_race.json). Originated channels enter Stasis
only when answered (originate_variant.json); until then the app (subscribed to the channel by the
originate) gets its Dial/ChannelStateChange/hangup events and ``GET /applications`` lists it, but
play/answer/... get 409 and addChannel 422. Answered while the app has no websocket, the leg's
Stasis() fails and Asterisk hangs it up (res/res_stasis.c stasis_app_exec).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.sim.errors import AriError, allocation_failed
from controller.sim.model import (
    KNOWN_FORMATS,
    SIP_TO_CAUSE,
    Channel,
    Endpoint,
    Party,
    is_shrinkable_phone_number,
    parse_callerid,
    shrink_phone_number,
)
from controller.sim.variables import PRESENTATION

if TYPE_CHECKING:
    from controller.sim.engine import Engine

_AUTO_ANSWER = ("answer-after", "auto answer", "auto-answer", "autoanswer", "intercom", "ring-answer")


def auto_answer_headers(headers: dict[str, str]) -> list[str]:
    """Headers of an INVITE that would make a phone answer by itself."""
    found = []
    for name, value in headers.items():
        low = name.lower()
        val = value.lower()
        if low in ("answer-mode", "p-auto-answer", "intercom", "priv-answer-mode") or (
            low in ("alert-info", "call-info") and any(key in val for key in _AUTO_ANSWER)
        ):
            found.append(f"{name}: {value}")
    return found


class OutboundOps:
    """create, dial, originate and what the dialled phone answers (mixed into Engine)."""

    def _dial_target(self: Engine, endpoint: str) -> tuple[Endpoint, Any]:
        tech, slash, resource = endpoint.partition("/")
        if not slash or not tech or not resource:
            raise AriError(400, "Invalid endpoint specified")
        ep = self.endpoints.get(f"{tech}/{resource}")
        if ep is None and tech.upper() == "PJSIP":
            ep = self.endpoints.get(f"PJSIP/{resource}")
        phone = ep.phone if ep is not None else None
        if phone is None or not phone.registered:
            raise allocation_failed()
        return ep, phone

    @staticmethod
    def _check_formats(originator: str | None, formats: str | None) -> None:
        if originator and formats:
            raise AriError(400, "Originator and formats can't both be specified")
        if formats:
            for fmt in formats.split(","):
                if fmt.strip() not in KNOWN_FORMATS:
                    raise AriError(400, f"Provided format ({fmt.strip()}) was not found")

    def create(
        self: Engine,
        *,
        endpoint: str,
        app: str,
        app_args: str | None,
        channel_id: str | None,
        originator: str | None,
        formats: str | None,
        variables: list[tuple[str, str]],
    ) -> str:
        """POST /channels/create: a Down channel in Stasis, not dialed yet. Returns the 200 body."""
        self._check_formats(originator, formats)
        ep, phone = self._dial_target(endpoint)
        if channel_id and channel_id in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        ch = self._new_channel(ep, "created", "Down", self.ids.uuid(), phone.context, "s", 1, channel_id)
        ch.caller = Party(phone.display_name, phone.number)
        ch.dialstring = ep.resource
        ch.party = None
        self._announce_new(ch)
        stasis_app = self.apps.get(app)
        if stasis_app is not None:
            self.sub_channel(stasis_app, ch)
            orig = self.channels.get(originator) if originator else None
            if orig is not None:
                self.sub_channel(stasis_app, orig)
        # CALLERID()/CONNECTEDLINE() variables: one event each, published with the Stasis entry
        early: list[tuple[str, str]] = []
        for name, value in variables:
            caller, connected = ch.caller, ch.connected
            self.set_var(ch, name, value, emit=False)
            if ch.caller != caller:
                early.append(("ChannelCallerId", f'{PRESENTATION}, "channel": {ch.snap()}'))
            elif ch.connected != connected:
                early.append(("ChannelConnectedLine", f', "channel": {ch.snap()}'))
        body = ch.snap()
        # Asterisk runs Stasis() on the new channel in its own thread: StasisStart (and the events
        # before it) come after the 200 here, and until then the channel has no Stasis control.
        ch.stasis_pending = self.later(
            self.stasis_entry_delay, self._created_enter_stasis, ch, app, app_args, early
        )
        return body

    def _created_enter_stasis(
        self: Engine, ch: Channel, app: str, app_args: str | None, early: list[tuple[str, str]]
    ) -> None:
        ch.stasis_pending = None
        if ch.hung:
            return
        recips = self._recips(ch)
        for type_, mid in early:
            if recips:
                self._emit(type_, recips, mid)
        ch.app_name = "Stasis"
        ch.app_data = app if not app_args else f"{app},{app_args}"
        ch.touch()
        self.ev_chan("ChannelDialplan", ch, self._dialplan_mid(ch))
        self.setvar(ch, "STASISSTATUS", "")
        stasis_app = self.apps.get(app)
        if stasis_app is not None and stasis_app.active:
            self._enter_stasis(ch, stasis_app, _split_args(app_args))
        else:
            self.setvar(ch, "STASISSTATUS", "FAILED")
            self._hangup(ch, request=None, cause=0)

    def dial(self: Engine, ch: Channel, caller_id: str | None, timeout: int) -> None:
        """POST /channels/{id}/dial on a created channel: INVITE the phone."""
        if ch.state != "Down" or ch.dialing:
            raise AriError(409, "Channel is not in the 'Down' state")
        if ch.kind != "created":
            raise AriError(409, "Dialing a channel not created by ARI")
        if caller_id:
            caller = self.channels.get(caller_id)
            if caller is not None:
                self._set_connected(ch, Party(caller.caller.name, caller.caller.number))
        ch.dialing = True
        self._ev_dial(ch, "", ch.dialstring)
        seconds = timeout if timeout > 0 else (None if timeout == -1 else 30)
        if seconds is not None:
            ch.dial_timer = self.later(seconds, self._dial_timeout, ch)
        self._send_invite(ch)

    def originate(
        self: Engine,
        *,
        endpoint: str,
        app: str | None,
        app_args: str | None,
        extension: str | None,
        context: str | None,
        priority: int | None,
        label: str | None,
        caller_id: str | None,
        timeout: int,
        channel_id: str | None,
        originator: str | None,
        formats: str | None,
        variables: list[tuple[str, str]],
    ) -> str:
        """POST /channels: dial now, enter Stasis only on answer. Returns the 200 body."""
        if not endpoint:
            raise AriError(400, "Endpoint must be specified")
        self._check_formats(originator, formats)
        tech, slash, resource = endpoint.partition("/")
        if not slash or not tech or not resource:
            raise AriError(400, "Invalid endpoint specified")
        if not app and not extension:
            raise AriError(400, "Application or extension must be specified")
        if originator and originator not in self.channels:
            raise AriError(400, "Provided originator channel was not found")
        ep, phone = self._dial_target(endpoint)
        if channel_id and channel_id in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        ch = self._new_channel(ep, "originated", "Down", self.ids.uuid(), phone.context, "s", 1, channel_id)
        ch.caller = Party(phone.display_name, phone.number)
        ch.app_name, ch.app_data = "AppDial2", "(Outgoing Line)"
        ch.dialstring = ep.resource
        self._announce_new(ch)
        if caller_id:
            # ast_callerid_parse, then ast_shrink_phone_number on a shrinkable number; both the
            # caller and the connected line (set without an indication), before the variables.
            cid = parse_callerid(caller_id)
            number = shrink_phone_number(cid.number) if is_shrinkable_phone_number(cid.number) else cid.number
            if cid.name or number:
                ch.caller = Party(cid.name, number)
                ch.connected = Party(cid.name, number)
        for name, value in variables:
            self.set_var(ch, name, value, emit=False)
        ch.touch()
        ch.originate = {
            "app": app,
            "args": _split_args(app_args),
            "app_data": app if not app_args else f"{app},{app_args}",
            "context": context or "default",
            "extension": extension,
            "priority": priority or 1,
            "label": label,
        }
        stasis_app = self.apps.get(app) if app else None
        if stasis_app is not None:
            self.sub_channel(stasis_app, ch)
        body = ch.snap()
        ch.dialing = True
        self._ev_dial(ch, "", ch.dialstring)
        seconds = timeout if timeout > 0 else (None if timeout == -1 else 30)
        if seconds is not None:
            ch.dial_timer = self.later(seconds, self._dial_timeout, ch)
        self._send_invite(ch)
        return body

    def _send_invite(self: Engine, ch: Channel) -> None:
        phone = ch.endpoint.phone if ch.endpoint is not None else None
        name, number = ch.connected.name, ch.connected.number
        host = self.sip_host
        pai = rpid = None
        if number:
            uri = f"sip:{number}@{host}"
            shown = f'"{name}" <{uri}>' if name else f"<{uri}>"
            pai = shown
            rpid = f"{shown};party=calling;privacy=off;screen=no"
        elif name:
            uri = f"sip:asterisk@{host}"
            shown = f'"{name}" <{uri}>'
        else:
            name, uri = "Anonymous", "sip:anonymous@anonymous.invalid"
            shown = f'"{name}" <{uri}>'
        invite = {
            "from_name": name,
            "from_number": uri[4:].split("@", 1)[0],
            "from_header": shown,
            "p_asserted_identity": pai,
            "remote_party_id": rpid,
            "headers": dict(ch.add_headers),
        }
        ch.party = phone.receive_invite(ch, invite)

    def remote_ringing(self: Engine, ch: Channel) -> None:
        """The phone sent 180 Ringing."""
        if ch.hung or ch.state != "Down":
            return
        ch.state = "Ringing"
        ch.touch()
        self.ev_chan("ChannelStateChange", ch)
        self._ev_dial(ch, "RINGING", ch.dialstring if ch.kind == "originated" else "")
        self._changed()

    def remote_answer(self: Engine, ch: Channel) -> None:
        """The phone sent 200 OK: Up + Dial ANSWER; an originated channel now enters Stasis."""
        if ch.hung or ch.state == "Up" or not ch.dialing:
            return
        self._cancel_dial_timer(ch)
        ch.dialing = False
        ch.state = "Up"
        ch.answered_at = self.clock.now()
        ch.ssrc = self.ids.ssrc()
        ch.touch()
        self.ev_chan("ChannelStateChange", ch)
        self._ev_dial(ch, "ANSWER", ch.dialstring if ch.kind == "originated" else "")
        if ch.kind == "originated" and ch.originate is not None:
            orig = ch.originate
            if orig["app"]:
                stasis_app = self.apps.get(orig["app"])
                ch.app_name, ch.app_data = "Stasis", orig["app_data"]
                ch.touch()
                self.setvar(ch, "STASISSTATUS", "")
                if stasis_app is not None and stasis_app.active:
                    self._enter_stasis(ch, stasis_app, orig["args"])
                else:
                    # res_stasis.c stasis_app_exec: the app is not registered or has no websocket
                    # (app_is_active) -> -1 before any StasisStart; app_stasis sets FAILED and
                    # ari_originate_dial's ast_dial_destroy hangs the channel up: no hangup request,
                    # no cause ever set (ChannelDestroyed 0, BYE Reason Q.850;cause=0 by
                    # res_pjsip_rfc3326). The app's events of it are dropped while it is inactive.
                    self.setvar(ch, "STASISSTATUS", "FAILED")
                    if ch.party is not None:
                        ch.party.remote_bye(["Q.850;cause=0"], 0)
                    self._hangup(ch, request=None, cause=0)
                    return
            else:
                ch.context, ch.exten, ch.priority = orig["context"], orig["extension"], orig["priority"]
                ch.app_name = ch.app_data = ""
                ch.touch()
                self.dialplan_log.append((self.clock.now(), ch.id, ch.context, ch.exten, ch.priority))
        if ch.bridge is not None:
            self._retech(ch.bridge)
            self._update_media(ch.bridge)
        self._update_audio(ch)
        self._changed()

    def remote_reject(self: Engine, ch: Channel, code: int) -> None:
        """The phone rejected the INVITE (603/486/480...)."""
        if ch.hung:
            return
        cause = SIP_TO_CAUSE.get(code, 21)
        if ch.kind == "originated" and ch.stasis_app is None:
            status = "BUSY" if code in (486, 600) else "NOANSWER"
            self._hangup(ch, request=(cause, code, False), cause=cause, tech_cause=code, dial_final=status)
        else:
            self._hangup(ch, request=(cause, code, False), cause=cause, tech_cause=code)

    def _dial_timeout(self: Engine, ch: Channel) -> None:
        """Asterisk gives up dialing: CANCEL (Q.850 19); ChannelDestroyed 19/480 like a 480 reject."""
        ch.dial_timer = None
        if ch.hung or not ch.dialing:
            return
        if ch.party is not None:
            ch.party.cancelled(["Q.850;cause=19"])
        if ch.kind == "originated" and ch.stasis_app is None:
            self._hangup(ch, request=None, cause=19, tech_cause=480)
        else:
            self._hangup(ch, request=(32, None, True), cause=19, tech_cause=480)


def dial_status(cause: int) -> str:
    """main/dial.c ast_hangup_cause_to_dial_status: the Dial event of a leg that hung up ringing."""
    if cause == 17:
        return "BUSY"
    if cause == 34:
        return "CONGESTION"
    if cause in (3, 20):
        return "CHANUNAVAIL"
    return "NOANSWER"


def _split_args(app_args: str | None) -> list[str]:
    if not app_args:
        return []
    return app_args.split(",")
