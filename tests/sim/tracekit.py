"""Replay a golden Asterisk trace against the simulator and compare what comes back.

The replay issues the trace's REST requests (ids substituted), opens/closes websockets like the
recorder did, places the traced callers (to the extension of their INVITE), and fires per-scenario
hooks on the trace's notes. Each action waits until its trace time (on the sim clock, so a sped-up
clock shortens the run) and until the sim has produced as many events as the trace had before it.

What is compared (values verbatim modulo volatile ones: timestamps, Call-IDs, RTP stats, channel
name suffixes, ports, the hidden MOH announcer in bridge snapshots):

- events (``event_diffs``): per socket, the full sequence -- types, order, snapshots, causes. The
  only reordering allowed is the pair ``ChannelStateChange(Ringing)``/``Dial RINGING`` of one
  channel, which Asterisk races. Per-object mode (for scenarios whose cross-channel timing the sim
  does not reproduce to the millisecond) compares each channel's/bridge's/playback's own sequence,
  the count, and the order across objects of every two events more than ``SLACK`` apart in the trace.
- REST (``rest_diffs``): status and body of every response, in request order.
- REST answers against events (``order_diffs``): for every response, the number of events of each
  app the sim had produced before it (server side, ``sim.rest_log``) must lie between the number the
  trace had ``SLACK`` before and ``SLACK`` after that response. Closer than ``SLACK`` the real order
  is a race (e.g. a create's 200 and its StasisStart), so it is not compared; farther apart it is
  fixed (an addChannel 204 only after a PlaybackFinished seconds later, a continue's 204 before
  its StasisEnd).
- SIP (``sip_diffs``): per phone/caller dialog: From/PAI/RPID and X- headers of INVITEs to phones,
  CANCEL/BYE Reason headers, final responses, who sent BYE/CANCEL, 180/200 seen by callers, and the
  UPDATEs each side received (count, and the identity in their P-Asserted-Identity); a re-INVITE
  received by a phone or caller is reported (the sim never sends one, Asterisk did not either).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp

from controller.sim import Caller, SimAsterisk
from tests.sim.shared import TRACES, require_traces

ID_RE = re.compile(r"\d{10}\.\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")

Hook = Callable[["Replay", dict[str, Any]], Awaitable[None] | None]
SLACK = 0.005  # trace seconds within which Asterisk's own order is a race


def load(name: str) -> dict[str, Any]:
    require_traces()
    return json.loads((TRACES / f"{name}.json").read_text())


@dataclass
class Socket:
    tag: str
    ws: aiohttp.ClientWebSocketResponse
    sink: list[dict[str, Any]]
    task: asyncio.Task[None] | None = None


@dataclass
class Exchange:
    method: str
    path: str
    expected_status: int
    expected_body: Any
    status: int = 0
    body: Any = None
    trace_t: float = 0.0
    sim_before: dict[str, int] = field(default_factory=dict)  # app -> events produced before the answer


@dataclass
class Replay:
    """One trace replayed against one sim. ``callers``: per SIP ua (``customer``...) kwargs for place_call;
    ``hooks``: note text prefix -> hook."""

    trace: dict[str, Any]
    sim: SimAsterisk
    session: aiohttp.ClientSession
    callers: dict[str, dict[str, Any]] = field(default_factory=dict)
    hooks: dict[str, Hook] = field(default_factory=dict)
    idmap: dict[str, str] = field(default_factory=dict)
    expected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    expected_t: dict[str, list[float]] = field(default_factory=dict)
    actual: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sockets: dict[str, Socket] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)
    placed: dict[str, list[Caller]] = field(default_factory=dict)
    _learned: dict[str, int] = field(default_factory=dict)
    _t0: float = 0.0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    # -- running --------------------------------------------------------------------------------------
    async def run(self) -> None:
        steps = self.trace["steps"]
        responses = {s["seq"]: s for s in steps if s["kind"] == "response"}
        self._t0 = self.sim.clock.now()
        seen_invite: set[str] = set()
        for step in steps:
            kind = step["kind"]
            if kind == "event":
                tag = step.get("ws") or step["app"]
                self.expected.setdefault(tag, []).append(step["event"])
                self.expected_t.setdefault(tag, []).append(step["t"])
                continue
            if kind == "sip":
                ua = step["ua"]
                if not (
                    ua in self.callers
                    and step["dir"] == "tx"
                    and step["start_line"].startswith("INVITE")
                    and ua not in seen_invite
                ):
                    continue
                seen_invite.add(ua)
            elif kind == "note":
                hook = next((h for prefix, h in self.hooks.items() if step["text"].startswith(prefix)), None)
                if hook is None:
                    continue
            elif kind not in ("request", "ws"):
                continue
            await self._pace(step["t"])
            await self._sync()
            if kind == "sip":
                exten = step["start_line"].split()[1].split(":", 1)[1].split("@", 1)[0]
                kwargs = {"exten": exten, "caller_number": "5551234", "caller_name": "Maria"}
                kwargs.update(self.callers[step["ua"]])
                self.placed.setdefault(step["ua"], []).append(self.sim.place_call(**kwargs))
            elif kind == "note":
                result = hook(self, step)  # type: ignore[misc]
                if asyncio.iscoroutine(result):
                    await result
            elif kind == "ws":
                await self._ws_step(step)
            else:
                await self._request(step, responses[step["seq"]])
        await self._pace(steps[-1]["t"] + 0.3)
        await self._sync()

    async def close(self) -> None:
        for sock in self.sockets.values():
            await sock.ws.close()
            if sock.task is not None:
                sock.task.cancel()

    async def _pace(self, t: float) -> None:
        clock = self.sim.clock
        delay = self._t0 + t - clock.now()
        if delay > 0:
            await clock.sleep(delay)

    async def _sync(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (clock seconds)
        """Wait until every socket has delivered as many events as the trace had so far."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sim.clock.wall_delay(timeout)
        while True:
            missing = {
                tag: (len(self.actual.get(tag, [])), len(exp))
                for tag, exp in self.expected.items()
                if len(self.actual.get(tag, [])) < len(exp)
            }
            self._learn_from_events()
            if not missing:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.trace['scenario']}: events missing (got, want): {missing}\n" + self.diff_text()
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def _ws_step(self, step: dict[str, Any]) -> None:
        tag = step.get("ws") or step["app"]
        if step["action"] == "connect":
            query = parse_qs(urlparse(step["url"]).query)
            app = query["app"][0]
            sub_all = query.get("subscribeAll", ["false"])[0] == "true"
            before = set(self.sim.http.connections)
            ws = await self.session.ws_connect(self.sim.ws_url(app, sub_all))
            sink = self.actual.setdefault(tag, [])
            sock = Socket(tag, ws, sink)
            sock.task = asyncio.create_task(self._reader(sock))
            self.sockets[tag] = sock
            await self.sim.wait_for(
                lambda: set(self.sim.http.connections) - before, what="websocket registered"
            )
        else:
            sock = self.sockets.pop(tag)
            conns = set(self.sim.http.connections)
            await sock.ws.close()
            await self.sim.wait_for(
                lambda: len(self.sim.http.connections) < len(conns), what="websocket closed"
            )

    async def _reader(self, sock: Socket) -> None:
        async for msg in sock.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                sock.sink.append(json.loads(msg.data))
                self._arrived.set()

    async def _request(self, step: dict[str, Any], resp: dict[str, Any]) -> None:
        path = self.subst(step["path"])
        query = {k: self.subst(str(v)) for k, v in (step.get("query") or {}).items()}
        body = self.subst_obj(step.get("body"))
        async with self.session.request(
            step["method"], self.sim.ari_url + path, params=query, json=body if body is not None else None
        ) as r:
            text = await r.text()
            got = json.loads(text) if text else None
            ex = Exchange(
                step["method"], step["path"], resp["status"], resp["body"], r.status, got, resp["t"]
            )
        record = self.sim.rest_log[-1]
        assert (record.method, record.status) == (ex.method, ex.status), (record, ex)
        ex.sim_before = self._produced_before(record.events_before)
        self.exchanges.append(ex)
        self._learn(ex.expected_body, ex.body)

    def _produced_before(self, count: int) -> dict[str, int]:
        """Delivered events per app among the first ``count`` events the sim produced."""
        log = list(self.sim.apps.log)
        first = self.sim.apps.count - len(log)
        assert first == 0, "event log overflowed during a replay"
        out: dict[str, int] = {}
        for rec in log[:count]:
            if rec.delivered:
                out[rec.app] = out.get(rec.app, 0) + 1
        return out

    # -- ids -------------------------------------------------------------------------------------------
    def subst(self, text: str) -> str:
        return ID_RE.sub(lambda m: self.idmap.get(m.group(0), m.group(0)), text)

    def subst_obj(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.subst(obj)
        if isinstance(obj, list):
            return [self.subst_obj(v) for v in obj]
        if isinstance(obj, dict):
            return {self.subst(k): self.subst_obj(v) for k, v in obj.items()}
        return obj

    def _learn(self, exp: Any, got: Any) -> None:
        if isinstance(exp, dict) and isinstance(got, dict):
            for key, value in exp.items():
                if key == "id" and isinstance(value, str) and isinstance(got.get("id"), str):
                    self.idmap.setdefault(value, got["id"])
                elif key in got:
                    self._learn(value, got[key])
        elif isinstance(exp, list) and isinstance(got, list):
            for e, g in zip(exp, got, strict=False):
                self._learn(e, g)

    def _learn_from_events(self) -> None:
        for tag, exp in self.expected.items():
            got = self.actual.get(tag, [])
            start = self._learned.get(tag, 0)
            n = min(len(exp), len(got))
            for i in range(start, n):
                if exp[i]["type"] == got[i]["type"]:
                    self._learn(exp[i], got[i])
            self._learned[tag] = n

    # -- comparison ------------------------------------------------------------------------------------
    def canon(self, obj: Any, expected: bool, key: str = "") -> Any:
        """Mask volatile values; on the expected side also map recorded ids to the sim's ids."""
        if isinstance(obj, dict):
            out: dict[str, Any] = {}
            is_snapshot = "protocol_id" in obj
            for k, v in obj.items():
                if k in ("timestamp", "creationtime", "startup_time", "last_reload_time"):
                    assert isinstance(v, str) and TS_RE.match(v), f"bad timestamp {k}={v!r}"
                    out[k] = "<ts>"
                elif k == "protocol_id":
                    out[k] = "<callid>" if v else ""
                elif k == "name" and is_snapshot:
                    out[k] = v.rsplit("-", 1)[0]
                elif k == "uri" and isinstance(v, str):
                    out[k] = re.sub(r":\d+;", ":<port>;", v)
                elif k == "channels" and isinstance(v, list) and expected:
                    out[k] = [self.subst(x) for x in v if x in self.idmap]  # drops the hidden MOH announcer
                else:
                    out[k] = self.canon(v, expected, k)
            if obj.get("type") == "ChannelVarset":
                var, value = obj.get("variable", ""), obj.get("value", "")
                if var.startswith("RTPAUDIOQOS") or (var == "BRIDGEPVTCALLID" and value):
                    out["value"] = "<masked>"
                elif var == "BRIDGEPEER":
                    out["value"] = ",".join(p.rsplit("-", 1)[0] for p in value.split(",")) if value else ""
            return out
        if isinstance(obj, list):
            return [self.canon(v, expected, key) for v in obj]
        if isinstance(obj, str) and expected:
            return self.subst(obj)
        return obj

    def ordered(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Put "either order" pairs in one canonical order: ChannelStateChange/Dial RINGING of one
        channel, and a bridging ChannelConnectedLine that Asterisk races with the BRIDGEPEER/
        BRIDGEPVTCALLID varsets (moved after them; the varsets it passes keep the old connected line)."""
        out = list(events)
        for i in range(len(out) - 2, -1, -1):
            if out[i]["type"] != "ChannelConnectedLine":
                continue
            cl = out[i]
            cid = cl["channel"]["id"]
            old = None
            for prev in reversed(out[:i]):
                if (prev.get("channel") or {}).get("id") == cid:
                    old = prev["channel"]["connected"]
                    break
            j = i
            while (
                j + 1 < len(out)
                and out[j + 1]["type"] == "ChannelVarset"
                and out[j + 1].get("variable") in ("BRIDGEPEER", "BRIDGEPVTCALLID")
            ):
                nxt = out[j + 1]
                if nxt["channel"]["id"] == cid and old is not None:
                    nxt = {**nxt, "channel": {**nxt["channel"], "connected": old}}
                out[j] = nxt
                out[j + 1] = cl
                j += 1
        for i in range(len(out) - 1):
            a, b = out[i], out[i + 1]
            if (
                a["type"] == "Dial"
                and b["type"] == "ChannelStateChange"
                and a.get("dialstatus") == "RINGING"
                and _obj_id(a) == _obj_id(b)
            ):
                # Dial first: its peer snapshot predates the state change (still Down)
                a = {**a, "peer": {**a["peer"], "state": b["channel"]["state"]}}
                out[i], out[i + 1] = b, a
        return out

    def event_diffs(self, per_object: bool = False) -> list[str]:
        problems = []
        for tag in sorted(set(self.expected) | set(self.actual)):
            exp = [json.dumps(self.canon(e, True)) for e in self.ordered(self.expected.get(tag, []))]
            got = [json.dumps(self.canon(e, False)) for e in self.ordered(self.actual.get(tag, []))]
            if per_object:
                exp_groups = _group(
                    self.ordered(self.expected.get(tag, [])), lambda e: self.subst(_obj_id(e))
                )
                got_groups = _group(self.ordered(self.actual.get(tag, [])), _obj_id)
                for obj_id in sorted(set(exp_groups) | set(got_groups)):
                    e = [json.dumps(self.canon(x, True)) for x in exp_groups.get(obj_id, [])]
                    g = [json.dumps(self.canon(x, False)) for x in got_groups.get(obj_id, [])]
                    if e != g:
                        problems.append(_first_diff(f"{tag}/{obj_id}", e, g))
                if len(exp) != len(got):
                    problems.append(f"{tag}: {len(got)} events, trace has {len(exp)}")
                else:
                    problems.extend(self._cross_object_order(tag))
            elif exp != got:
                problems.append(_first_diff(tag, exp, got))
        return problems

    def _cross_object_order(self, tag: str) -> list[str]:
        """Events more than SLACK apart in the trace must keep their order in the sim (the k-th
        event of an object in the trace is matched with the k-th event of that object in the sim)."""
        exp = self.expected.get(tag, [])
        times = self.expected_t.get(tag, [])
        got = self.actual.get(tag, [])
        sim_pos: dict[str, list[int]] = {}
        for i, ev in enumerate(got):
            sim_pos.setdefault(_obj_id(ev), []).append(i)
        seen: dict[str, int] = {}
        pos = []
        for ev in exp:
            key = self.subst(_obj_id(ev))
            k = seen.get(key, 0)
            seen[key] = k + 1
            pos.append(sim_pos[key][k] if k < len(sim_pos.get(key, [])) else -1)
        order = sorted(range(len(exp)), key=lambda i: times[i])
        problems = []
        j = 0
        latest = -1  # the latest sim position among trace events more than SLACK earlier
        latest_i = -1
        for i in order:
            while times[order[j]] < times[i] - SLACK:
                if pos[order[j]] > latest:
                    latest, latest_i = pos[order[j]], order[j]
                j += 1
            if pos[i] < latest:
                problems.append(
                    f"{tag}: trace has {exp[latest_i]['type']} (t={times[latest_i]:.4f}) before "
                    f"{exp[i]['type']} (t={times[i]:.4f}); the sim has them the other way round"
                )
                break
        return problems

    def order_diffs(self) -> list[str]:
        """Each REST answer against the events around it (see the module docstring)."""
        steps = self.trace["steps"]
        events = [(s["t"], s["app"]) for s in steps if s["kind"] == "event"]
        problems = []
        for ex in self.exchanges:
            for app in {a for _, a in events}:
                lo = sum(1 for t, a in events if a == app and t < ex.trace_t - SLACK)
                hi = sum(1 for t, a in events if a == app and t <= ex.trace_t + SLACK)
                got = ex.sim_before.get(app, 0)
                if not lo <= got <= hi:
                    problems.append(
                        f"{ex.method} {ex.path} -> {ex.status}: the sim answered after {got} {app} events, "
                        f"the trace after {lo}..{hi}"
                    )
        return problems

    def rest_diffs(self) -> list[str]:
        problems = []
        for ex in self.exchanges:
            want = json.dumps(self.canon(ex.expected_body, True))
            got = json.dumps(self.canon(ex.body, False))
            if ex.status != ex.expected_status or want != got:
                problems.append(
                    f"{ex.method} {ex.path}: got {ex.status} {got}\n   trace {ex.expected_status} {want}"
                )
        return problems

    def diff_text(self) -> str:
        lines = []
        for tag in sorted(set(self.expected) | set(self.actual)):
            exp = [e["type"] for e in self.expected.get(tag, [])]
            got = [e["type"] for e in self.actual.get(tag, [])]
            lines.append(f"[{tag}] trace: {exp}\n[{tag}]   sim: {got}")
        return "\n".join(lines)


def _obj_id(ev: dict[str, Any]) -> str:
    for key in ("channel", "peer", "bridge", "playback", "endpoint"):
        obj = ev.get(key)
        if isinstance(obj, dict):
            return str(obj.get("id") or obj.get("resource") or "")
    return ev.get("type", "")


def _group(
    events: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        out.setdefault(key(ev), []).append(ev)
    return out


def _first_diff(tag: str, exp: list[str], got: list[str]) -> str:
    for i, (e, g) in enumerate(zip(exp, got, strict=False)):
        if e != g:
            return f"{tag}: event #{i} differs\n   trace: {e}\n     sim: {g}"
    return (
        f"{tag}: trace has {len(exp)} events, sim {len(got)}; extra/missing: "
        f"{[json.loads(x)['type'] for x in (exp[len(got) :] or got[len(exp) :])]}"
    )


# -- SIP side --------------------------------------------------------------------------------------------
_ADDR_RE = re.compile(r'^\s*(?:"([^"]*)"\s*)?<sip:([^@>]+)@[^>]*>')


def parse_addr(value: str) -> tuple[str, str]:
    """``"Maria" <sip:5551234@host>;tag=x`` -> ("Maria", "5551234")."""
    m = _ADDR_RE.match(value)
    assert m, value
    return (m.group(1) or "", m.group(2))


def headers_of(step: dict[str, Any], name: str) -> list[str]:
    prefix = name.lower() + ":"
    return [h.split(":", 1)[1].strip() for h in step["headers"] if h.lower().startswith(prefix)]


def dialogs(trace: dict[str, Any], ua: str) -> list[list[dict[str, Any]]]:
    """The SIP messages of one ua grouped by Call-ID, in order of first appearance."""
    out: dict[str, list[dict[str, Any]]] = {}
    for step in trace["steps"]:
        if step["kind"] == "sip" and step["ua"] == ua:
            out.setdefault(headers_of(step, "Call-ID")[0], []).append(step)
    return list(out.values())


def sip_diffs(replay: Replay) -> list[str]:
    """Compare what each simulated phone/caller saw with the SIP messages the real softphones saw."""
    problems: list[str] = []
    trace = replay.trace
    uas = {s["ua"] for s in trace["steps"] if s["kind"] == "sip"}
    for ua in sorted(uas):
        convs = dialogs(trace, ua)
        if ua in replay.callers:
            records: list[Any] = replay.placed.get(ua, [])
            check = _check_caller
        elif ua in replay.sim.phones:
            records = [inv for inv in replay.sim.phones[ua].invites]
            check = _check_phone
        else:
            continue
        if len(records) != len(convs):
            problems.append(f"{ua}: {len(records)} calls in the sim, {len(convs)} dialogs in the trace")
            continue
        for rec, conv in zip(records, convs, strict=True):
            problems.extend(f"{ua} {rec.channel_id}: {p}" for p in check(rec, conv))
    return problems


def _code(step: dict[str, Any]) -> int | None:
    parts = step["start_line"].split()
    return int(parts[1]) if parts[0] == "SIP/2.0" else None


def _cseq(step: dict[str, Any]) -> str:
    return headers_of(step, "CSeq")[0].split()[1]


def _check_phone(inv: Any, conv: list[dict[str, Any]]) -> list[str]:
    problems = []
    for step in conv:
        line = step["start_line"]
        if step["dir"] == "rx" and line.startswith("INVITE"):
            shown = parse_addr(headers_of(step, "From")[0])
            if inv.display != shown:
                problems.append(f"From shows {inv.display}, trace {shown}")
            pai = headers_of(step, "P-Asserted-Identity")
            got_pai = parse_addr(inv.p_asserted_identity) if inv.p_asserted_identity else None
            if (parse_addr(pai[0]) if pai else None) != got_pai:
                problems.append(f"PAI {inv.p_asserted_identity!r}, trace {pai}")
            if bool(headers_of(step, "Remote-Party-ID")) != (inv.remote_party_id is not None):
                problems.append(
                    f"RPID {inv.remote_party_id!r} vs trace {headers_of(step, 'Remote-Party-ID')}"
                )
            for h in step["headers"]:
                if h.lower().startswith("x-"):
                    name, value = (p.strip() for p in h.split(":", 1))
                    if inv.headers.get(name) != value:
                        problems.append(f"header {name}: {inv.headers.get(name)!r}, trace {value!r}")
        elif step["dir"] == "rx" and line.startswith("CANCEL"):
            if inv.cancel_reasons != headers_of(step, "Reason"):
                problems.append(f"CANCEL reasons {inv.cancel_reasons}, trace {headers_of(step, 'Reason')}")
        elif step["dir"] == "rx" and line.startswith("BYE"):
            if inv.bye_reasons != headers_of(step, "Reason"):
                problems.append(f"BYE reasons {inv.bye_reasons}, trace {headers_of(step, 'Reason')}")
        elif (
            step["dir"] == "tx" and _code(step) is not None and _cseq(step) == "INVITE" and _code(step) >= 200
        ):
            if inv.final_code != _code(step):
                problems.append(f"final response {inv.final_code}, trace {_code(step)}")
        elif step["dir"] == "tx" and line.startswith("BYE") and inv.ended_by != "phone":
            problems.append(f"trace: phone sent BYE; sim ended_by={inv.ended_by}")
    return problems + _check_updates(inv, conv)


def _check_updates(rec: Any, conv: list[dict[str, Any]]) -> list[str]:
    """The UPDATEs (connected line) a phone or caller received: how many, and whom they showed."""
    problems = []
    updates = [
        s
        for s in conv
        if s["dir"] == "rx" and s["start_line"].startswith("UPDATE") and headers_of(s, "P-Asserted-Identity")
    ]
    invites = [s for s in conv if s["dir"] == "rx" and s["start_line"].startswith("INVITE")]
    if len(invites) > (1 if rec.__class__.__name__ == "Invite" else 0):
        problems.append(f"trace: {len(invites)} INVITEs received (re-INVITE); the sim never sends one")
    shown = [parse_addr(headers_of(s, "P-Asserted-Identity")[0]) for s in updates]
    if shown != rec.identities_shown:
        problems.append(f"UPDATEs showed {rec.identities_shown}, trace {shown}")
    return problems


def _check_caller(call: Caller, conv: list[dict[str, Any]]) -> list[str]:
    problems = []
    for step in conv:
        code = _code(step)
        if step["dir"] == "rx" and code is not None and _cseq(step) == "INVITE":
            if code == 180 and not call.ringback:
                problems.append("trace: 180 Ringing; the sim caller heard no ringback")
            elif code == 200 and not call.answered:
                problems.append("trace: answered (200); sim caller not answered")
            elif (
                code >= 300
                and code != 401
                and (call.sip_final != code or call.final_reasons != headers_of(step, "Reason"))
            ):
                problems.append(
                    f"final {call.sip_final} {call.final_reasons}, trace {code} {headers_of(step, 'Reason')}"
                )
        elif step["dir"] == "rx" and step["start_line"].startswith("BYE"):
            if call.bye_reasons != headers_of(step, "Reason"):
                problems.append(f"BYE reasons {call.bye_reasons}, trace {headers_of(step, 'Reason')}")
        elif step["dir"] == "tx" and step["start_line"].startswith("CANCEL") and call.outcome != "abandoned":
            problems.append(f"trace: caller cancelled; sim outcome {call.outcome}")
        elif step["dir"] == "tx" and step["start_line"].startswith("BYE") and call.outcome != "hung_up":
            problems.append(f"trace: caller sent BYE; sim outcome {call.outcome}")
    return problems + _check_updates(call, conv)
