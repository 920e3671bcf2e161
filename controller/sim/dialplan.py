"""The simulated dialplan: what a channel runs outside Stasis, and the Local channels it dials.

A test describes extensions the way extensions.conf does, one application per priority::

    sim.dialplan["101"] = ("acd", ["support"])                       # NoOp, Stasis(acd,support), Hangup
    sim.dialplan["acd-overflow,102"] = "NoOp, Stasis(acd,support,10)"  # priorities 1, 2; nothing after
    sim.dialplan["from-customer,103"] = "Dial(Local/101@from-customer)"

Keys are ``exten`` (context from the entry, ``from-customer`` by default) or ``context,exten``.
Applications the sim runs: ``NoOp`` (``{name}``/``{number}``/``{exten}`` of the caller are
substituted), ``Answer``, ``Stasis(app,args...)`` (STASISSTATUS ""; an app without a websocket
sets FAILED and the dialplan goes on), ``Hangup`` and ``Dial(Local/EXTEN@CONTEXT)``; any other
application is a NoOp. Running off the end (a missing priority or extension) hangs the channel up
with cause 16 (the phone gets BYE / 603 with ``Reason: Q.850;cause=16``), as Asterisk does.
While a channel runs dialplan its app is not subscribed to it: the app sees nothing until the
next ``StasisStart`` (continue_back_into_stasis.json).

Local channels (local_channel_optimization.json): ``Dial(Local/101@from-customer)`` creates the pair
``Local/101@from-customer-XXXXXXXX;1`` (``AppDial (Outgoing Line)``, caller number = the dialled
exten) and ``;2``, which runs ``from-customer,101``: the app sees only ``;2`` (``protocol_id`` "",
``caller`` = the real caller, ``connected.number`` = the dialled exten). Answering ``;2`` answers
the real caller; the pair is never optimised away inside Stasis bridges; the caller's BYE reaches
``;2`` as ChannelHangupRequest cause 16 (no RTPAUDIOQOS, no ChannelDestroyed).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from controller.sim.model import Channel, Party

if TYPE_CHECKING:
    from controller.sim.engine import Engine

Step = tuple[str, str]
_APP_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class DialplanEntry:
    """One extension. Short form ``DialplanEntry(app, args)``: priority 1 NoOp (``noop`` text), then
    ``Stasis(app,args)`` at ``priority``, then ``Hangup`` (the lab PBX's ``101``). ``steps``: the
    explicit program ``(("NoOp", ""), ("Stasis", "acd,support,10"))``, priorities 1..n."""

    app: str = ""
    args: tuple[str, ...] = ()
    context: str = "from-customer"
    priority: int = 2
    noop: str | None = None
    steps: tuple[Step, ...] = ()

    def program(self) -> tuple[Step, ...]:
        if self.steps:
            return self.steps
        head = tuple(("NoOp", self.noop or "") for _ in range(max(0, self.priority - 1)))
        return (*head, ("Stasis", ",".join((self.app, *self.args))), ("Hangup", ""))


def parse_steps(text: str) -> tuple[Step, ...]:
    """``"NoOp, Stasis(acd,support,10)"`` -> (("NoOp", ""), ("Stasis", "acd,support,10"))."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    steps = []
    for part in parts:
        m = _APP_RE.match(part)
        if m is None:
            raise ValueError(f"cannot parse dialplan application {part!r} in {text!r}")
        steps.append((m.group(1), m.group(2) or ""))
    return tuple(steps)


def make_entry(value: Any) -> DialplanEntry:
    """A DialplanEntry from an entry, ``("acd", ["support"])``, ``"acd"``, ``"Stasis(acd,x)"`` or an
    application list ``"NoOp, Stasis(acd,support,10)"``."""
    if isinstance(value, DialplanEntry):
        return value
    if isinstance(value, str):
        text = value.strip()
        steps = parse_steps(text) if "(" in text or "," in text else ()
        if len(steps) == 1 and steps[0][0] == "Stasis":
            parts = steps[0][1].split(",")
            return DialplanEntry(parts[0], tuple(parts[1:]))
        if steps:
            return DialplanEntry(steps[0][1].split(",")[0] if steps[0][0] == "Stasis" else "", steps=steps)
        return DialplanEntry(text)
    if isinstance(value, tuple | list):
        app = value[0]
        args = value[1] if len(value) > 1 else ()
        if isinstance(args, str):
            args = (args,)
        return DialplanEntry(app, tuple(args))
    raise TypeError(f"cannot make a dialplan entry from {value!r}")


class Dialplan(dict[str, DialplanEntry]):
    """``exten`` or ``context,exten`` -> DialplanEntry; values are normalized on assignment."""

    def __init__(self, entries: dict[str, Any] | None = None) -> None:
        super().__init__()
        for key, value in (entries or {}).items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        entry = make_entry(value)
        if "," in key:
            context = key.split(",", 1)[0].strip()
            entry = replace(entry, context=context)
        super().__setitem__(key, entry)

    def find(self, context: str, exten: str) -> DialplanEntry | None:
        entry = self.get(f"{context},{exten}")
        if entry is not None:
            return entry
        entry = self.get(exten)
        if entry is not None and entry.context == context:
            return entry
        return None


class DialplanOps:
    """Running dialplan on a channel (mixed into Engine)."""

    def run_dialplan(self: Engine, ch: Channel, context: str, exten: str, priority: int) -> None:
        """Run ``context,exten`` from ``priority`` until Stasis() takes the channel or it hangs up."""
        entry = self.dialplan.find(context, exten)
        program = entry.program() if entry is not None else ()
        ch.context, ch.exten = context, exten
        stasis_failed = False
        while not ch.hung:
            if priority < 1 or priority > len(program):
                self._dialplan_ended(ch, context, exten, priority, stasis_failed)
                return
            app, data = program[priority - 1]
            if app == "NoOp" and data:
                with contextlib.suppress(KeyError, IndexError, ValueError):
                    data = data.format(name=ch.caller.name, number=ch.caller.number, exten=exten)
            ch.priority = priority
            ch.app_name, ch.app_data = app, data
            ch.touch()
            self.dialplan_log.append((self.clock.now(), ch.id, context, exten, priority))
            self.ev_chan("ChannelDialplan", ch, self._dialplan_mid(ch))
            if app == "Stasis":
                name, *args = data.split(",")
                self.setvar(ch, "STASISSTATUS", "")
                stasis_app = self.apps.get(name)
                if stasis_app is not None and stasis_app.active:
                    self._enter_stasis(ch, stasis_app, list(args))
                    return
                self.setvar(ch, "STASISSTATUS", "FAILED")
                stasis_failed = True
            elif app == "Hangup":
                self._dialplan_hangup(ch, (context, exten, priority), stasis_failed, request=True)
                return
            elif app == "Answer":
                self.answer(ch)
            elif app == "Dial" and data.startswith("Local/"):
                self._dial_local(ch, data)
                return
            priority += 1

    def _dialplan_ended(
        self: Engine, ch: Channel, context: str, exten: str, priority: int, stasis_failed: bool
    ) -> None:
        """Nothing at this priority: the PBX thread ends and hangs the channel up (cause 16)."""
        ch.priority = priority
        ch.touch()
        self._dialplan_hangup(ch, (context, exten, priority), stasis_failed, request=False)

    def _dialplan_hangup(
        self: Engine, ch: Channel, where: tuple[str, str, int], stasis_failed: bool, *, request: bool
    ) -> None:
        party = ch.party
        if party is not None:
            if ch.state == "Up":
                party.remote_bye(["Q.850;cause=16"], 16)
            elif stasis_failed and hasattr(party, "refused"):
                party.refused(where)
            else:
                party.remote_final(603, ["Q.850;cause=16"], 16)
        if ch.local_peer is not None:
            self._local_half_gone(ch)
        self._hangup(ch, request=(16, None, True) if request else None, cause=16)

    # -- Local channels -----------------------------------------------------------------------------
    def _dial_local(self: Engine, outer: Channel, data: str) -> None:
        """``Dial(Local/EXTEN@CONTEXT)``: the ;1/;2 pair; ;2 runs the target extension."""
        target = data[len("Local/") :].split(",", 1)[0].split("/", 1)[0]
        exten, _, context = target.partition("@")
        context = context or outer.context
        ep = self.endpoint("Local", f"{exten}@{context}", "online")
        suffix = f"{self.ids.name_seq:08x}"
        self.ids.name_seq += 1
        one = self._new_channel(ep, "local", "Down", "", outer.context, "", 1)
        one.name = f"Local/{exten}@{context}-{suffix};1"
        one.caller = Party("", outer.exten)
        one.connected = Party(outer.caller.name, outer.caller.number)
        one.app_name, one.app_data = "AppDial", "(Outgoing Line)"
        two = self._new_channel(ep, "local", "Ring", "", context, exten, 1)
        two.name = f"Local/{exten}@{context}-{suffix};2"
        two.caller = Party(outer.caller.name, outer.caller.number)
        two.connected = Party("", outer.exten)
        for chan in (one, two):
            chan.touch()
            self._announce_new(chan)
        one.local_peer, two.local_peer = two, one
        two.local_outer = outer
        outer.local_peer = one
        one.local_outer = outer
        # the real caller's phone is reached through the pair: answer, audio, UPDATEs, BYE
        two.party = outer.party
        if outer.party is not None and hasattr(outer.party, "app_channel"):
            outer.party.app_channel(two)
        self.run_dialplan(two, context, exten, 1)

    def _local_half_gone(self: Engine, ch: Channel) -> None:
        """One side of a Local chain hung up: the rest of the chain goes too, quietly."""
        chain = {c for c in (ch.local_peer, ch.local_outer) if c is not None}
        if ch.local_peer is not None:
            chain.update(c for c in (ch.local_peer.local_peer, ch.local_peer.local_outer) if c is not None)
        chain.discard(ch)
        for other in chain:
            other.local_peer = other.local_outer = None
        ch.local_peer = ch.local_outer = None
        for other in sorted(chain, key=lambda c: c.kind != "inbound"):
            if not other.hung:
                if other.kind == "inbound" and other.party is not None:
                    if other.state == "Up":
                        other.party.remote_bye(["Q.850;cause=16"], 16)
                    else:
                        other.party.remote_final(603, ["Q.850;cause=16"], 16)
                self._hangup(other, request=(16, None, False), cause=16)

    def local_answered(self: Engine, two: Channel) -> None:
        """Answering ;2 answers ;1, and Dial() answers the real caller."""
        one = two.local_peer
        outer = two.local_outer
        if one is not None and one.state != "Up":
            one.state = "Up"
            one.touch()
            self.ev_chan("ChannelStateChange", one)
        if outer is not None and outer.state != "Up":
            outer.state = "Up"
            outer.answered_at = self.clock.now()
            outer.ssrc = self.ids.ssrc()
            outer.touch()
            self.ev_chan("ChannelStateChange", outer)
