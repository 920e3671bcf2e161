"""The simulated dialplan: what a channel runs outside Stasis, and the Local channels it dials.

A test describes extensions the way extensions.conf does, one application per priority::

    sim.dialplan["101"] = ("acd", ["support"])                       # NoOp, Stasis(acd,support), Hangup
    sim.dialplan["acd-overflow,102"] = "NoOp, Stasis(acd,support,10)"  # priorities 1, 2; nothing after
    sim.dialplan["from-customer,103"] = "Dial(Local/101@from-customer)"

Keys are ``exten`` (context from the entry, ``from-customer`` by default) or ``context,exten``.
Applications the sim runs: ``NoOp`` (``{name}``/``{number}``/``{exten}`` of the caller are
substituted), ``Answer``, ``Stasis(app,args...)`` (STASISSTATUS ""; an app without a websocket
sets FAILED and the dialplan goes on, app_stasis.c; leaving Stasis sets SUCCESS), ``Hangup``,
``Dial(Local/EXTEN@CONTEXT)``, and what the shipped ``asterisk-config/extensions.conf`` uses
around ``Stasis()``: ``Set(VAR=value)``, ``GotoIf(cond?label[:label])``, ``Goto([[context,]exten,]
label)`` (a priority number or a ``n(label)``), ``Wait(seconds)`` (clock seconds), ``Ringing()``
(ringback to an unanswered caller), ``${VAR}`` (channel variables, then ``[globals]``; unset = "")
and ``$[a OP b]`` with one operator of ``= != < > <= >= + -`` (numbers compare as numbers).
Anything else in an expression is a ``DialplanError`` (the sim refuses what it would get wrong).
Other applications are NoOps. ``Dialplan.load(text)`` reads extensions.conf text (``exten =>``,
``same =>``, labels, ``include =>``, ``[globals]``; an unknown application or line is an error).
Running off the end (a missing priority or extension) hangs the channel up with cause 16 (the
phone gets BYE / 603 with ``Reason: Q.850;cause=16``), as Asterisk does.
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
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_EXPR_RE = re.compile(r"\$\[(.*?)\]")
# operands: "quoted", or words/numbers; parentheses, & | * / % ?: =~ are Asterisk operators the
# sim does not evaluate, so they stop the tokenizer (a DialplanError, not a wrong answer)
_TOKEN_RE = re.compile(r'\s*(?:("[^"]*")|(!=|<=|>=|=|<|>|\+|-)|([A-Za-z0-9_.]+))')
# applications a loaded extensions.conf may use: run by the sim, or NoOps here (no media, no queues)
RUN_APPS = {"noop", "answer", "stasis", "hangup", "dial", "set", "gotoif", "goto", "wait", "ringing"}
INERT_APPS = {"log", "verbose", "queue", "playback", "echo"}
MAX_STEPS = 1000  # priorities run without a Wait or Stasis: a Goto loop is an error, not a hang


class DialplanError(ValueError):
    """Dialplan the sim does not model exactly (unknown syntax, missing label): refused loudly."""


def _operand(token: str) -> str:
    return token[1:-1] if token.startswith('"') else token


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def evaluate(expr: str) -> str:
    """``$[...]`` after ``${VAR}`` substitution: ``a``, or ``a OP b`` with one operator."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = expr.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise DialplanError(f"cannot read expression $[{expr}] at {text[pos:]!r}")
        pos = m.end()
        if m.group(1) is not None:
            tokens.append(("value", m.group(1)))
        elif m.group(2) is not None:
            tokens.append(("op", m.group(2)))
        elif m.group(3) is not None:
            tokens.append(("value", m.group(3)))
    if len(tokens) == 1 and tokens[0][0] == "value":
        return _operand(tokens[0][1])
    if len(tokens) == 2 and tokens[0] == ("op", "-") and tokens[1][0] == "value":
        return _operand("-" + tokens[1][1])
    if len(tokens) != 3 or [k for k, _ in tokens] != ["value", "op", "value"]:
        raise DialplanError(f"unsupported expression $[{expr}]: the sim evaluates `a` or `a OP b`")
    a, op, b = _operand(tokens[0][1]), tokens[1][1], _operand(tokens[2][1])
    na, nb = _number(a), _number(b)
    if op in ("+", "-"):
        if na is None or nb is None:
            raise DialplanError(f"$[{expr}]: {op} needs numbers, got {a!r} and {b!r}")
        result = na + nb if op == "+" else na - nb
        return str(int(result)) if result == int(result) else str(result)
    left: Any = na if na is not None and nb is not None else a
    right: Any = nb if na is not None and nb is not None else b
    outcome = {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        ">": left > right,
        "<=": left <= right,
        ">=": left >= right,
    }[op]
    return "1" if outcome else "0"


def check_expressions(data: str) -> None:
    """At load time: every ``$[...]`` in ``data`` is an expression the sim evaluates."""
    for m in _EXPR_RE.finditer(data):
        evaluate(_VAR_RE.sub("1", m.group(1)))


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
    labels: tuple[tuple[str, int], ...] = ()  # n(label) -> priority

    def label(self, name: str) -> int:
        """A Goto target inside this extension: a priority number or a label."""
        if name.isdigit():
            return int(name)
        for label, priority in self.labels:
            if label == name:
                return priority
        raise DialplanError(f"[{self.context}]: no label {name!r} in this extension")

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
        self.globals: dict[str, str] = {}
        self.includes: dict[str, list[str]] = {}
        for key, value in (entries or {}).items():
            self[key] = value

    def load(self, text: str) -> None:
        """Add the extensions of an extensions.conf (``context,exten`` keys) and its [globals]."""
        context: str | None = None
        programs: dict[tuple[str, str], tuple[list[Step], list[tuple[str, int]]]] = {}
        last: tuple[str, str] | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = re.sub(r"(?<!\\);.*", "", raw).replace("\\;", ";").strip()
            if not line:
                continue
            where = f"extensions.conf:{lineno}"
            section = re.fullmatch(r"\[([^\]]+)\]", line)
            if section:
                context = section.group(1)
                continue
            key, sep, value = (part.strip() for part in line.partition("=>" if "=>" in line else "="))
            if not sep or context is None:
                raise DialplanError(f"{where}: cannot read {raw!r}")
            if context == "general":
                continue
            if context == "globals":
                self.globals[key] = value
                continue
            if key == "include":
                self.includes.setdefault(context, []).append(value)
                continue
            if key == "exten":
                exten, _, rest = value.partition(",")
                last = (context, exten.strip())
            elif key == "same" and last is not None and last[0] == context:
                rest = value
            else:
                raise DialplanError(f"{where}: unexpected {key!r}")
            prio, _, app = rest.partition(",")
            steps, labels = programs.setdefault(last, ([], []))
            m = re.fullmatch(r"\s*(\d+|n)(?:\((\w+)\))?\s*", prio)
            if m is None:
                raise DialplanError(f"{where}: unsupported priority {prio!r}")
            number = len(steps) + 1
            if m.group(1) != "n" and int(m.group(1)) != number:
                raise DialplanError(f"{where}: priority {m.group(1)} out of order (expected {number})")
            if m.group(2):
                labels.append((m.group(2), number))
            (step,) = parse_steps(app)
            if step[0].lower() not in RUN_APPS | INERT_APPS:
                raise DialplanError(f"{where}: the sim does not know application {step[0]!r}")
            check_expressions(step[1])
            steps.append(step)
        for (ctx, exten), (steps, labels) in programs.items():
            self[f"{ctx},{exten}"] = DialplanEntry(
                steps[0][1].split(",")[0] if steps[0][0] == "Stasis" else "",
                context=ctx,
                steps=tuple(steps),
                labels=tuple(labels),
            )

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
        for included in self.includes.get(context, ()):
            entry = self.find(included, exten)
            if entry is not None:
                return entry
        return None


class DialplanOps:
    """Running dialplan on a channel (mixed into Engine)."""

    def run_dialplan(
        self: Engine, ch: Channel, context: str, exten: str, priority: int, stasis_failed: bool = False
    ) -> None:
        """Run ``context,exten`` from ``priority`` until Stasis() takes the channel, a Wait() pauses
        it, or it hangs up."""
        entry = self.dialplan.find(context, exten)
        program = entry.program() if entry is not None else ()
        ch.context, ch.exten = context, exten
        for _ in range(MAX_STEPS):
            if ch.hung:
                return
            if priority < 1 or priority > len(program):
                self._dialplan_ended(ch, context, exten, priority, stasis_failed)
                return
            app, data = program[priority - 1]
            if app == "NoOp" and data:
                with contextlib.suppress(KeyError, IndexError, ValueError):
                    data = data.format(name=ch.caller.name, number=ch.caller.number, exten=exten)
            elif app in ("Set", "GotoIf", "Goto", "Wait"):
                data = self._substitute(ch, data)
            ch.priority = priority
            ch.app_name, ch.app_data = app, data
            ch.touch()
            self.dialplan_log.append((self.clock.now(), ch.id, context, exten, priority))
            self._changed()  # waiters on the dialplan log
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
            elif app == "Set":
                name, sep, value = data.partition("=")
                if not sep or not name.strip():
                    raise DialplanError(f"[{context}] {exten},{priority}: Set({data}) needs VAR=value")
                self.setvar(ch, name.strip(), value)
            elif app == "Ringing":
                if ch.state != "Up":
                    self.ring(ch, True)  # 180 Ringing: the caller hears ringback
            elif app == "Wait":
                seconds = _number(data.strip())
                if seconds is None or seconds < 0:
                    raise DialplanError(f"[{context}] {exten},{priority}: Wait({data}) needs seconds")
                self.later(seconds, self._resume_dialplan, ch, context, exten, priority + 1, stasis_failed)
                return
            elif app in ("Goto", "GotoIf"):
                target = self._goto_target(ch, entry, context, exten, app, data)
                if target is not None:
                    context, exten, priority = target
                    if (context, exten) != (ch.context, ch.exten):
                        self.run_dialplan(ch, context, exten, priority, stasis_failed)
                        return
                    continue
            priority += 1
        raise DialplanError(f"[{context}] {exten}: {MAX_STEPS} priorities without a pause (a Goto loop?)")

    def _resume_dialplan(
        self: Engine, ch: Channel, context: str, exten: str, priority: int, stasis_failed: bool
    ) -> None:
        """The end of a Wait(): the PBX thread goes on (unless the caller hung up meanwhile)."""
        if not ch.hung and ch.stasis_app is None:
            self.run_dialplan(ch, context, exten, priority, stasis_failed)

    def _substitute(self: Engine, ch: Channel, data: str) -> str:
        """``${VAR}`` (channel, then globals, unset = ""), then ``$[...]``, as pbx_substitute does."""

        def var(m: re.Match[str]) -> str:
            name = m.group(1)
            try:
                return self.get_var(ch, name)
            except Exception:  # noqa: BLE001 - not set on the channel
                return self.dialplan.globals.get(name, "")

        if "${" in data and _VAR_RE.sub("", data).count("${"):
            raise DialplanError(f"unsupported variable syntax in {data!r}: only ${{NAME}}")
        return _EXPR_RE.sub(lambda m: evaluate(m.group(1)), _VAR_RE.sub(var, data))

    def _goto_target(
        self: Engine, ch: Channel, entry: DialplanEntry | None, context: str, exten: str, app: str, data: str
    ) -> tuple[str, str, int] | None:
        """Where Goto/GotoIf goes: (context, exten, priority), None for a GotoIf that falls through."""
        if app == "GotoIf":
            cond, sep, branches = data.partition("?")
            if not sep:
                raise DialplanError(f"GotoIf({data}): needs condition?label[:label]")
            true, _, false = branches.partition(":")
            taken = cond.strip() not in ("", "0")
            data = true if taken else false
            if not data.strip():
                return None
        parts = [p.strip() for p in data.split(",")]
        if len(parts) == 1:
            parts = [context, exten, *parts]
        elif len(parts) == 2:
            parts = [context, *parts]
        elif len(parts) != 3:
            raise DialplanError(f"{app}({data}): [[context,]exten,]priority")
        target_ctx, target_exten, label = parts
        target = (
            entry
            if (target_ctx, target_exten) == (context, exten)
            else self.dialplan.find(target_ctx, target_exten)
        )
        if target is None:
            raise DialplanError(f"{app}({data}): no extension {target_exten!r} in [{target_ctx}]")
        return target_ctx, target_exten, target.label(label)

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
