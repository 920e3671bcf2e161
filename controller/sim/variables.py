"""Channel variables and dialplan functions as ARI reads and writes them.

``CALLERID()`` gives ChannelCallerId, ``CONNECTEDLINE()`` ChannelConnectedLine, ``PJSIP_HEADER(add,...)``
goes on the next INVITE, ``CHANNEL(language|accountcode)`` changes the snapshot, anything else is a
plain variable (ChannelVarset).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from controller.sim.errors import AriError
from controller.sim.model import Party, parse_callerid

if TYPE_CHECKING:
    from controller.sim.engine import Engine
    from controller.sim.model import Channel

_FUNC_RE = re.compile(r"^([A-Za-z_]+)\((.*)\)$")
PRESENTATION = ', "caller_presentation": 0, "caller_presentation_txt": "Presentation Allowed, Not Screened"'


class VariableOps:
    """GET/POST /channels/{id}/variable (mixed into Engine)."""

    def get_var(self: Engine, ch: Channel, name: str) -> str:
        m = _FUNC_RE.match(name)
        if m is None:
            if name in ch.vars:
                return ch.vars[name]
            builtin = {
                "UNIQUEID": ch.id,
                "CHANNEL": ch.name,
                "EXTEN": ch.exten,
                "CONTEXT": ch.context,
                "PRIORITY": str(ch.priority),
            }
            if name in builtin:
                return builtin[name]
            raise AriError(404, "Provided variable was not found")
        func, arg = m.group(1).upper(), m.group(2)
        field = arg.strip().lower()
        if func in ("CALLERID", "CONNECTEDLINE"):
            party = ch.caller if func == "CALLERID" else ch.connected
            if field == "name":
                return party.name
            if field in ("num", "number"):
                return party.number
            if field == "all":
                return f'"{party.name}" <{party.number}>'
        elif func == "PJSIP_HEADER":
            action, _, header = arg.partition(",")
            header = header.split(",", 1)[0].strip()
            if action.strip() == "read" and header.lower() in ch.inbound_headers:
                return ch.inbound_headers[header.lower()][1]
        elif func == "CHANNEL":
            values = {
                "name": ch.name,
                "uniqueid": ch.id,
                "state": ch.state,
                "language": ch.language,
                "linkedid": ch.id,
                "channeltype": ch.tech,
                "accountcode": ch.accountcode,
            }
            if field in values:
                return values[field]
        raise AriError(500, "Unable to read provided function")

    def set_var(self: Engine, ch: Channel, name: str, value: str, *, emit: bool = True) -> None:
        """Set a variable or dialplan function the way the app sees it: CALLERID -> ChannelCallerId,
        CONNECTEDLINE -> ChannelConnectedLine, PJSIP_HEADER(add,...) -> next INVITE, else ChannelVarset."""
        m = _FUNC_RE.match(name)
        if m is None:
            if emit:
                self.setvar(ch, name, value)
            else:
                ch.vars[name] = value
            return
        func, arg = m.group(1).upper(), m.group(2)
        field = arg.strip().lower()
        if func in ("CALLERID", "CONNECTEDLINE"):
            old = ch.caller if func == "CALLERID" else ch.connected
            new = Party(old.name, old.number)
            if field == "name":
                new.name = value
            elif field in ("num", "number"):
                new.number = value
            elif field == "all":
                new = parse_callerid(value)
            else:
                raise AriError(400, "Failed to execute function")
            if func == "CALLERID":
                if new != ch.caller:
                    ch.caller = new
                    ch.touch()
                    if emit:
                        self.ev_chan("ChannelCallerId", ch, PRESENTATION)
            elif emit:
                self._set_connected(ch, new)
            else:
                ch.connected = new
                ch.touch()
        elif func == "PJSIP_HEADER":
            action, _, header = arg.partition(",")
            action, header = action.strip().lower(), header.strip()
            if action in ("add", "update"):
                ch.add_headers[header] = value
            elif action == "remove":
                if header == "*":
                    ch.add_headers.clear()
                else:
                    ch.add_headers.pop(header, None)
            else:
                raise AriError(400, "Failed to execute function")
        elif func == "CHANNEL" and field == "language":
            ch.language = value
            ch.touch()
        elif func == "CHANNEL" and field == "accountcode":
            ch.accountcode = value
            ch.touch()
        else:
            ch.vars[name] = value

    def _set_connected(self: Engine, ch: Channel, new: Party) -> None:
        if new == ch.connected:
            return
        ch.connected = Party(new.name, new.number)
        ch.touch()
        self.ev_chan("ChannelConnectedLine", ch)
