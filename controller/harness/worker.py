"""One pjsua2 process: SIP agents and callers driven by JSON lines on stdin, events on stdout.

Why a subprocess: pjsua2 allows one Endpoint per process and wants every call into it from
the thread that created it (``mainThreadOnly``, no worker threads). So this process owns
pjsua2 on its main thread and polls it; a reader thread only moves stdin lines into a queue.
The asyncio side (:mod:`controller.harness.ua`) never imports pjsua2.

Commands (one JSON object per line, ``cmd`` says which):
  agent      name, user, password, registrar ("host:port" or null = no registration), behaviour{}
  caller     name, user, password, display
  register / unregister   name
  call       ua, id, to (SIP URI), headers{}, hangup_after, cancel_after, dtmf, dtmf_after
  behaviour  name, behaviour{}    (for the next offers)
  respond    id, code           (answer 200 / refuse 4xx-6xx an offer by hand)
  hangup     id (a call id: ours for outgoing calls, the "incoming" event's for incoming ones)
  dtmf       id, digits
  ping       id                 (answered by "pong": every event before it has been written)
  quit
Events carry ``ev`` and ``t`` (unix time when it happened, so two processes' events compare).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

# X-Acd-* headers the controller adds, and the two auto-answer headers of desktop mode.
_HEADER_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s*(.*?)\r?$", re.M)
_NAME_NUM_RE = re.compile(r'^\s*(?:"([^"]*)"|([^<]*?))\s*<sip:([^@>;]*)@', re.I)
AUTO_ANSWER_HEADERS = ("Alert-Info", "Call-Info")
MAX_ACCOUNTS = 8  # PJSUA_MAX_ACC of the pjsua2-python 2.15.1 wheel
MAX_CALLS = 4  # concurrent calls per process the wheel allows (PJ_ETOOMANY beyond), whatever maxCalls says


def is_auto_answer(headers: dict[str, str]) -> bool:
    """True when the INVITE asks the phone to answer by itself (what desktop phones obey)."""
    alert = headers.get("Alert-Info", "").lower()
    call_info = headers.get("Call-Info", "").lower()
    return "autoanswer" in alert.replace("-", "") or "answer-after" in call_info


def parse_party(value: str | None) -> tuple[str, str]:
    """``"Name" <sip:num@host>`` -> (name, num); what the phone's display would show."""
    if not value:
        return "", ""
    m = _NAME_NUM_RE.match(value)
    if not m:
        return "", ""
    return (m.group(1) if m.group(1) is not None else (m.group(2) or "")).strip(), m.group(3)


def parse_headers(msg: str) -> dict[str, str]:
    """First occurrence of each header of a SIP message (head only, compact names kept)."""
    head = msg.split("\r\n\r\n", 1)[0]
    out: dict[str, str] = {}
    for name, value in _HEADER_RE.findall(head):
        out.setdefault(name, value)
    return out


class Worker:
    def __init__(self, out: Any, port: int, max_calls: int, media_port: int, bind: str = "127.0.0.1") -> None:
        self.out = out
        self.bind = bind
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.accounts: dict[str, Account] = {}
        self.calls: dict[str, Call] = {}
        self.keep: list[Call] = []  # a collected pj.Call may touch a reused call slot: keep all
        self.incoming_n = itertools.count(1)
        self.commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stop = False

        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = max_calls
        cfg.uaConfig.userAgent = "acd-harness"
        cfg.logConfig.level = 1
        cfg.logConfig.consoleLevel = 1
        cfg.medConfig.noVad = True
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        self.ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = bind
        tcfg.publicAddress = bind
        udp = pj.PJSIP_TRANSPORT_UDP6 if ":" in bind else pj.PJSIP_TRANSPORT_UDP
        tid = self.ep.transportCreate(udp, tcfg)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        self.port = int(self.ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
        self.media_port = media_port or 0

    # ------------------------------------------------------------ plumbing

    def emit(self, ev: str, t: float | None = None, **kw: Any) -> None:
        self.out.write(json.dumps({"ev": ev, "t": t if t is not None else time.time(), **kw}) + "\n")
        self.out.flush()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (time.monotonic() + max(0.0, delay), next(self.seq), fn))

    def run(self) -> None:
        threading.Thread(target=self._read_stdin, daemon=True).start()
        self.emit("ready", port=self.port, pid=os.getpid())
        while not self.stop:
            self.ep.libHandleEvents(5)
            while True:
                try:
                    command = self.commands.get_nowait()
                except queue.Empty:
                    break
                if command is None:
                    self.stop = True
                    break
                self._safe(
                    lambda c=command: self.handle(c), where=str(command.get("cmd")), call=command.get("id")
                )
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                self._safe(fn, where="timer")
        self.shutdown()

    def _safe(self, fn: Callable[[], None], where: str, call: Any = None) -> None:
        extra = {"call": call} if call is not None else {}
        try:
            fn()
        except pj.Error as exc:
            self.emit("error", where=where, error=exc.info(), **extra)
        except Exception as exc:  # a bad command must not kill every UA of the process
            self.emit("error", where=where, error=f"{type(exc).__name__}: {exc}", **extra)

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                command = json.loads(line)
                if not isinstance(command, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                self.emit("error", where="stdin", error=f"bad command line: {exc}")
                continue
            self.commands.put(command)
        self.commands.put(None)  # stdin closed: the parent is gone, stop

    def shutdown(self) -> None:
        for call in list(self.calls.values()):
            call.end()
        deadline = time.monotonic() + 2.0
        while any(not c.done for c in self.calls.values()) and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
        for acc in self.accounts.values():
            if acc.agent and acc.registrar:
                with contextlib.suppress(pj.Error):
                    acc.setRegistration(False)
        deadline = time.monotonic() + (
            1.0 if any(a.agent and a.registrar for a in self.accounts.values()) else 0
        )
        while time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
        self.emit("stopped")
        self.out.flush()
        # Calls are over and agents unregistered: skip pjsua's own teardown (it waits ~1 s on
        # timers, and pj.Call destructors after it can crash). The OS frees sockets and ports.
        os._exit(0)

    # ------------------------------------------------------------ commands

    def handle(self, c: dict[str, Any]) -> None:
        kind = c.get("cmd")
        if kind in ("agent", "caller"):
            self.add_account(c, agent=kind == "agent")
        elif kind == "register":
            self.accounts[c["name"]].setRegistration(True)
        elif kind == "unregister":
            self.accounts[c["name"]].setRegistration(False)
        elif kind == "call":
            self.place_call(c)
        elif kind == "hangup":
            call = self.calls.get(c["id"])
            if call:
                call.end()
        elif kind == "behaviour":
            self.accounts[c["name"]].behaviour = c.get("behaviour") or {}
        elif kind == "respond":
            self.calls[c["id"]].respond(int(c["code"]))
        elif kind == "dtmf":
            self.calls[c["id"]].send_dtmf(str(c["digits"]))
        elif kind == "ping":
            self.emit("pong", id=c.get("id"))
        elif kind == "quit":
            self.stop = True
        else:
            self.emit("error", where="command", error=f"unknown cmd {kind!r}")

    def add_account(self, c: dict[str, Any], agent: bool) -> None:
        name = c["name"]
        if name in self.accounts:
            raise ValueError(f"account {name} exists")
        if len(self.accounts) >= MAX_ACCOUNTS:  # pjsua would abort the whole process
            raise ValueError(f"at most {MAX_ACCOUNTS} phones per worker process (pjsua's PJSUA_MAX_ACC)")
        user = c.get("user", name)
        registrar = c.get("registrar")
        host = registrar or (f"[{self.bind}]:{self.port}" if ":" in self.bind else f"{self.bind}:{self.port}")
        acfg = pj.AccountConfig()
        display = c.get("display")
        uri = f"sip:{user}@{host}"
        acfg.idUri = f'"{display}" <{uri}>' if display else uri
        if registrar and agent:
            acfg.regConfig.registrarUri = f"sip:{registrar}"
            acfg.regConfig.timeoutSec = int(c.get("expires", 120))
            acfg.regConfig.registerOnAdd = True
        else:
            acfg.regConfig.registerOnAdd = False
        if c.get("password"):
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, c["password"]))
        acfg.mediaConfig.transportConfig.boundAddress = self.bind
        if self.media_port:
            acfg.mediaConfig.transportConfig.port = self.media_port
            acfg.mediaConfig.transportConfig.portRange = 1000
        acc = Account(self, name, agent, c.get("behaviour") or {}, registrar)
        acc.create(acfg)
        self.accounts[name] = acc
        self.emit("account", ua=name, uri=uri, port=self.port)

    def place_call(self, c: dict[str, Any]) -> None:
        acc = self.accounts[c["ua"]]
        call = Call(self, acc, c["id"], outgoing=True)
        call.plan = c
        prm = pj.CallOpParam(True)
        for hname, hvalue in (c.get("headers") or {}).items():
            h = pj.SipHeader()
            h.hName = hname
            h.hValue = str(hvalue)
            prm.txOption.headers.append(h)
        self.emit("invite_sent", ua=acc.name, call=call.id, to=c["to"])
        call.makeCall(c["to"], prm)
        if c.get("cancel_after") is not None:
            self.later(float(c["cancel_after"]), lambda: call.confirmed_at is None and call.end("cancel"))


class Account(pj.Account):
    def __init__(self, w: Worker, name: str, agent: bool, behaviour: dict[str, Any], registrar: str | None):
        super().__init__()
        self.w = w
        self.name = name
        self.agent = agent
        self.behaviour = behaviour
        self.registrar = registrar

    def onRegState(self, prm: Any) -> None:
        info = self.getInfo()
        self.w.emit("reg", ua=self.name, code=prm.code, reason=prm.reason, active=info.regIsActive)

    def onIncomingCall(self, prm: Any) -> None:
        t = time.time()
        w = self.w
        call_id = f"{self.name}#{next(w.incoming_n)}"
        call = Call(w, self, call_id, outgoing=False, pj_id=prm.callId)
        msg = prm.rdata.wholeMsg
        headers = parse_headers(msg)
        pai = headers.get("P-Asserted-Identity")
        frm = headers.get("From") or headers.get("f")
        name, num = parse_party(pai or frm)
        auto = {k: headers[k] for k in AUTO_ANSWER_HEADERS if k in headers}
        w.emit(
            "incoming",
            t=t,
            ua=self.name,
            call=call_id,
            sip_call_id=headers.get("Call-ID") or headers.get("i"),
            display_name=name,
            number=num,
            from_=frm,
            pai=pai,
            x_acd={k: v for k, v in headers.items() if k.lower().startswith("x-acd-")},
            auto_answer=auto,
            headers=headers,
        )
        call.react(headers)


class Call(pj.Call):
    def __init__(
        self, w: Worker, acc: Account, call_id: str, outgoing: bool, pj_id: int = pj.PJSUA_INVALID_ID
    ):
        super().__init__(acc, pj_id)
        self.w = w
        self.acc = acc
        self.id = call_id
        self.outgoing = outgoing
        self.plan: dict[str, Any] = {}
        self.sip_id: str | None = None
        self.confirmed_at: float | None = None
        self.done = False
        self.ending_by_us: str | None = None
        self.last_state: str | None = None
        w.calls[call_id] = self
        w.keep.append(self)

    # --- agent side: what the behaviour says to do with an offer
    def react(self, headers: dict[str, str]) -> None:
        b = self.acc.behaviour
        mode = b.get("mode", "answer")
        ring = float(b.get("ring", 0.0))
        if b.get("auto_answer") and is_auto_answer(headers):
            m = re.search(r"answer-after=(\d+(?:\.\d+)?)", headers.get("Call-Info", ""))
            self.respond(180)
            self.w.later(float(m.group(1)) if m else 0.0, lambda: self.respond(200))
            return
        if mode == "busy":
            self.respond(486)
            return
        if mode == "dnd":
            self.respond(480, "Do Not Disturb")
            return
        self.respond(180)
        if mode in ("answer", "confirm"):
            self.w.later(ring, lambda: self.respond(200))
        elif mode == "decline":
            self.w.later(ring, lambda: self.respond(603))
        # noanswer / desktop without auto-answer headers: ring until cancelled

    def respond(self, code: int, reason: str | None = None) -> None:
        if self.done:
            return
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        if reason:
            prm.reason = reason
        # reported first: pjsua sends (and runs state callbacks) inside answer()/hangup()
        self.w.emit("sent", ua=self.acc.name, call=self.id, code=code)
        if code >= 300:
            self.ending_by_us = "reject"
            self.hangup(prm)
        else:
            self.answer(prm)

    def end(self, how: str = "hangup") -> None:
        """BYE when up, CANCEL while ringing out, 603 for an offer not yet answered."""
        if self.done:
            return
        try:
            if not self.isActive() or (self.sip_id and self.getInfo().callIdString != self.sip_id):
                return
        except pj.Error:
            return
        if not self.outgoing and self.confirmed_at is None:
            self.respond(603)
            return
        self.ending_by_us = how
        prm = pj.CallOpParam(True)
        self.w.emit(how, ua=self.acc.name, call=self.id)
        self.hangup(prm)

    def send_dtmf(self, digits: str) -> None:
        if self.done:
            return
        self.dialDtmf(digits)
        self.w.emit("dtmf_sent", ua=self.acc.name, call=self.id, digits=digits)

    # --- pjsua2 callbacks (on the worker's main thread)
    def onCallState(self, prm: Any) -> None:
        t = time.time()
        ci = self.getInfo()
        if self.sip_id is None:
            self.sip_id = ci.callIdString
        elif ci.callIdString != self.sip_id:
            return  # a reused pjsua call slot reports for a newer call: not ours
        state = "DISCONNECTED" if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED else ci.stateText
        if state == self.last_state:
            return
        self.last_state = state
        ev: dict[str, Any] = {"ua": self.acc.name, "call": self.id, "state": state}
        ev["code"] = ci.lastStatusCode
        ev["reason"] = ci.lastReason
        ev["sip_call_id"] = ci.callIdString
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed_at = t
            self._after_answer()
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.done = True
            ev["by"] = "us" if self.ending_by_us else "far end"
            ev["answered"] = self.confirmed_at is not None
        self.w.emit("state", t=t, **ev)
        if self.done:
            self.w.calls.pop(self.id, None)

    def _after_answer(self) -> None:
        if self.outgoing:
            plan = self.plan
            if plan.get("dtmf"):
                self.w.later(float(plan.get("dtmf_after", 0.3)), lambda: self.send_dtmf(plan["dtmf"]))
            if plan.get("hangup_after") is not None:
                self.w.later(float(plan["hangup_after"]), self.end)
            return
        b = self.acc.behaviour
        if b.get("press"):
            self.w.later(float(b.get("press_after", 0.3)), lambda: self.send_dtmf(str(b["press"])))
        if b.get("talk"):
            self.w.later(float(b["talk"]), self.end)

    def onDtmfDigit(self, prm: Any) -> None:
        self.w.emit("dtmf", ua=self.acc.name, call=self.id, digit=prm.digit)

    def onCallMediaState(self, prm: Any) -> None:
        """Connect the call to the (null) sound device like a real phone, so RTP flows both
        ways from the start: Asterisk's strictrtp learns the source from that stream, and a
        key press (RFC 4733) sent on a silent stream can be dropped while it learns."""
        try:
            aud = self.getAudioMedia(-1)
            dev = pj.Endpoint.instance().audDevManager()
            dev.getCaptureDevMedia().startTransmit(aud)
            aud.startTransmit(dev.getPlaybackDevMedia())
        except pj.Error:
            pass  # no active audio (yet): nothing to connect


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="SIP UDP port (0 = any free one)")
    ap.add_argument(
        "--bind", default="127.0.0.1", help="this machine's address the PBX reaches (SIP and RTP)"
    )
    ap.add_argument("--max-calls", type=int, default=128)
    ap.add_argument("--media-port", type=int, default=0, help="first RTP port (0 = any)")
    args = ap.parse_args(argv)
    # pjlib prints to fd 1 before any config applies: keep fd 1 for our JSON, pjlib gets stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    Worker(out, args.port, args.max_calls, args.media_port, args.bind).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
