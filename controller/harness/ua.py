"""The asyncio side of the SIP phones: a :class:`UaGroup` is one pjsua2 worker subprocess.

Commands go down as JSON lines, events come back as JSON lines and are kept in order in
``events``; tests and scenarios wait on the event that proves something (:meth:`UaGroup.wait`),
never on the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("controller.harness.ua")

Event = dict[str, Any]

MODES = ("answer", "decline", "busy", "dnd", "noanswer", "confirm", "desktop")


class HarnessError(RuntimeError):
    """A UA process failed, or an awaited SIP event never came."""


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What a simulated agent's phone does with an offer.

    mode: answer | decline (603) | busy (486) | dnd (480) | noanswer | confirm (answer, then
    press ``press``) | desktop (ring until an INVITE with auto-answer headers, answer that).
    ring: seconds of ringing before answering/declining; talk: seconds after answering
    before the agent hangs up (0 = until the far end does).
    """

    mode: str = "answer"
    ring: float = 0.0
    talk: float = 0.0
    press: str | None = None
    press_after: float = 0.3
    auto_answer: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown agent behaviour {self.mode!r}; one of {', '.join(MODES)}")
        if self.ring < 0 or self.talk < 0:
            raise ValueError("ring and talk must be >= 0 seconds")

    @classmethod
    def parse(cls, text: str) -> Behaviour:
        """``answer``, ``answer:2`` (ring 2 s), ``answer:1:5`` (talk 5 s), ``confirm:1:0:2`` (press 2)."""
        mode, *rest = text.split(":")
        nums = [float(x) for x in rest[:2]]
        press = rest[2] if len(rest) > 2 else ("1" if mode == "confirm" else None)
        return cls(
            mode=mode,
            ring=nums[0] if nums else 0.0,
            talk=nums[1] if len(nums) > 1 else 0.0,
            press=press,
            auto_answer=mode == "desktop",
        )

    def wire(self) -> dict[str, Any]:
        mode = "noanswer" if self.mode == "desktop" else self.mode
        press = self.press if self.press else ("1" if self.mode == "confirm" else None)
        return {
            "mode": mode,
            "ring": self.ring,
            "talk": self.talk,
            "press": press,
            "press_after": self.press_after,
            "auto_answer": self.auto_answer or self.mode == "desktop",
        }


@dataclass(slots=True)
class CallRecord:
    """Everything one call leg saw, in time order (built from a group's events)."""

    id: str
    ua: str
    events: list[Event] = field(default_factory=list)

    def first(self, ev: str, **match: Any) -> Event | None:
        for e in self.events:
            if e["ev"] == ev and all(e.get(k) == v for k, v in match.items()):
                return e
        return None

    @property
    def sent_codes(self) -> list[int]:
        return [e["code"] for e in self.events if e["ev"] == "sent"]

    @property
    def ended(self) -> Event | None:
        return self.first("state", state="DISCONNECTED")


def split_pbx(pbx: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` -> (host without brackets, port; 5060 by default)."""
    host, port = pbx, ""
    if pbx.startswith("["):
        host, _, rest = pbx[1:].partition("]")
        port = rest.removeprefix(":")
    elif pbx.count(":") == 1:
        host, _, port = pbx.partition(":")
    if not host or (port and not port.isdigit()):
        raise HarnessError(f"--pbx wants host:port (e.g. 127.0.0.1:5060), got {pbx!r}")
    return host, int(port or 5060)


def local_address_towards(pbx: str) -> str:
    """This machine's address that packets to ``pbx`` ("host:port") leave from: what the phones
    bind and put in Contact/SDP, so a PBX on another machine can reach them (no packet is sent)."""
    host, port = split_pbx(pbx)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise HarnessError(f"no route from this machine to the PBX {pbx}: {exc}") from None


# The pjsua2-python 2.15.1 wheel allows 8 accounts and only 4 concurrent calls per process.
CALLS_PER_WORKER = 4
PHONES_PER_WORKER = 2  # a leg ending while the next rings needs 2 call slots per phone


class _Worker:
    """One pjsua2 subprocess of a group."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.phones = 0
        self.stderr_tail: list[str] = []

    def send(self, command: dict[str, Any]) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.stdin.is_closing():
            raise HarnessError("UA worker is not running")
        self.proc.stdin.write((json.dumps(command) + "\n").encode())


class UaGroup:
    """Agent and caller phones in pjsua2 worker subprocesses, as one stream of events.

    The pjsua2 wheel allows 8 accounts and 4 concurrent calls per process, so a group starts
    another worker every ``phones_per_worker`` phones; commands go to the worker that owns the
    phone or call, and all workers' events land in ``events`` in the order they arrive.
    """

    def __init__(
        self,
        name: str = "ua",
        python: str | None = None,
        phones_per_worker: int = PHONES_PER_WORKER,
        nice: int = 0,
        bind: str = "127.0.0.1",
    ):
        self.name = name
        self.bind = bind  # this machine's address toward the PBX (``local_address_towards``)
        self.nice = nice  # the workers' nice level (a load test keeps the phones behind the PBX)
        self.python = python or sys.executable
        self.phones_per_worker = phones_per_worker
        self.events: list[Event] = []
        self.port = 0  # the first worker's SIP port
        self._workers: list[_Worker] = []
        self._owner: dict[str, _Worker] = {}  # phone name or call id -> worker
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        self._start_args: dict[str, Any] = {}
        self.closed = False
        self.outstanding: set[str] = set()  # calls placed here and not yet ended (or failed)
        self._errors_logged = 0

    @property
    def stderr_tail(self) -> list[str]:
        return [line for w in self._workers for line in w.stderr_tail]

    # ------------------------------------------------------------ lifecycle

    async def start(
        self, port: int = 0, max_calls: int = CALLS_PER_WORKER, media_port: int = 0, timeout: float = 10
    ):
        """Start the first worker (more start as phones are added)."""
        self._start_args = {"max_calls": max_calls, "media_port": media_port, "timeout": timeout}
        worker = await self._spawn(port)
        self.port = worker.port

    async def _spawn(self, port: int = 0) -> _Worker:
        args = self._start_args or {"max_calls": CALLS_PER_WORKER, "media_port": 0, "timeout": 10}
        worker = _Worker(len(self._workers))
        worker.proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "controller.harness.worker",
            "--port",
            str(port),
            "--max-calls",
            str(args["max_calls"]),
            "--media-port",
            str(args["media_port"]),
            "--bind",
            self.bind,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 22,
            preexec_fn=(lambda: os.nice(self.nice)) if self.nice else None,
        )
        self._workers.append(worker)
        mark = self.mark()
        worker.tasks = [
            asyncio.create_task(self._read(worker)),
            asyncio.create_task(self._read_stderr(worker)),
        ]
        ready = await self.wait(
            lambda e: e["ev"] == "ready" and e.get("worker") == worker.index,
            timeout=args["timeout"],
            what="worker ready",
            start=mark,
        )
        worker.port = ready["port"]
        return worker

    async def _worker_for_new_phone(self) -> _Worker:
        for worker in self._workers:
            if worker.phones < self.phones_per_worker:
                return worker
        return await self._spawn()

    async def close(self, timeout: float = 5) -> None:
        if self.closed:
            return
        self.closed = True
        for worker in self._workers:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, HarnessError):
                worker.send({"cmd": "quit"})
                if worker.proc and worker.proc.stdin:
                    worker.proc.stdin.close()
        for worker in self._workers:
            proc = worker.proc
            assert proc is not None
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.warning(
                    "harness UA worker %s/%d did not stop; killing pid %s", self.name, worker.index, proc.pid
                )
                proc.kill()
                await proc.wait()
            for task in worker.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def __aenter__(self) -> UaGroup:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self, worker: _Worker) -> None:
        assert worker.proc and worker.proc.stdout
        while True:
            line = await worker.proc.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours (pjlib chatter is sent to stderr, but be safe)
            event["worker"] = worker.index
            self.events.append(event)
            kind = event.get("ev")
            if kind == "incoming":
                self._owner[event["call"]] = worker
            if kind == "error" or (kind == "state" and event.get("state") == "DISCONNECTED"):
                self.outstanding.discard(event.get("call", ""))
            if kind == "error" and self._errors_logged < 5:
                self._errors_logged += 1
                log.warning("harness UA %s: %s", self.name, event.get("error"))
            self._changed.set()
        self.events.append({"ev": "exited", "t": 0, "worker": worker.index})
        self._changed.set()

    async def _read_stderr(self, worker: _Worker) -> None:
        assert worker.proc and worker.proc.stderr
        while True:
            line = await worker.proc.stderr.readline()
            if not line:
                break
            worker.stderr_tail = [*worker.stderr_tail[-30:], line.decode(errors="replace").rstrip()]

    def _send(self, command: dict[str, Any], to: str | None = None) -> None:
        """Send to the worker owning ``to`` (a phone or call), else the first worker."""
        if not self._workers:
            raise HarnessError(f"UA group {self.name} is not started")
        worker = self._owner.get(to, self._workers[0]) if to else self._workers[0]
        try:
            worker.send(command)
        except HarnessError as exc:
            raise HarnessError(f"UA worker {self.name}/{worker.index} is not running") from exc

    # ------------------------------------------------------------ waiting

    async def wait(
        self,
        pred: Callable[[Event], bool],
        timeout: float = 10,
        what: str = "SIP event",
        start: int = 0,
    ) -> Event:
        """The first event (from index ``start``) matching ``pred``; HarnessError after ``timeout``."""
        seen = start
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while seen < len(self.events):
                e = self.events[seen]
                seen += 1
                if pred(e):
                    return e
                if e["ev"] == "exited":
                    tail = "\n".join(self.stderr_tail[-10:])
                    raise HarnessError(f"UA worker {self.name} exited while waiting for {what}\n{tail}")
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise HarnessError(f"{self.name}: no {what} within {timeout:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def sync(self, timeout: float = 10) -> None:
        """Return once every event the workers wrote so far has been read (a ping barrier)."""
        token = next(self._ids)
        mark = self.mark()
        for worker in self._workers:
            worker.send({"cmd": "ping", "id": token})
        for worker in self._workers:
            await self.wait(
                lambda e, i=worker.index: e["ev"] == "pong" and e["id"] == token and e["worker"] == i,
                timeout,
                what="pong",
                start=mark,
            )

    async def settle(self, timeout: float = 10) -> None:
        """Wait until every call this worker knows of has ended (or ``timeout``)."""
        await self.sync(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for call in sorted(self.live_calls()):
            with contextlib.suppress(HarnessError):
                await self.ended(call, timeout=max(0.01, deadline - loop.time()))

    def mark(self) -> int:
        """Index to pass as ``start=`` to wait only for what happens from now on."""
        return len(self.events)

    # ------------------------------------------------------------ accounts and calls

    async def add_agent(
        self,
        name: str,
        behaviour: Behaviour,
        *,
        user: str | None = None,
        password: str | None = None,
        registrar: str | None = None,
        expires: int = 120,
        timeout: float = 10,
    ) -> None:
        """An agent phone; with ``registrar`` it registers and this returns once it is."""
        await self._place_phone(name)
        mark = self.mark()
        self._send(
            {
                "cmd": "agent",
                "name": name,
                "user": user or name,
                "password": password,
                "registrar": registrar,
                "expires": expires,
                "behaviour": behaviour.wire(),
            },
            to=name,
        )
        ev = await self.wait(
            lambda e: e["ev"] in ("account", "error") and e.get("ua", name) == name, timeout, start=mark
        )
        if ev["ev"] == "error":
            raise HarnessError(f"agent {name}: {ev['error']}")
        if registrar:
            await self.wait_registered(name, True, timeout=timeout, start=mark)

    async def add_caller(
        self,
        name: str,
        *,
        user: str | None = None,
        password: str | None = None,
        host: str | None = None,
        display: str | None = None,
    ) -> None:
        await self._place_phone(name)
        mark = self.mark()
        self._send(
            {
                "cmd": "caller",
                "name": name,
                "user": user or name,
                "password": password,
                "registrar": host,
                "display": display,
            },
            to=name,
        )
        ev = await self.wait(
            lambda e: e["ev"] in ("account", "error") and e.get("ua", name) == name,
            start=mark,
            what=f"caller {name}",
        )
        if ev["ev"] == "error":
            raise HarnessError(f"caller {name}: {ev['error']}")

    def port_of(self, name: str) -> int:
        """SIP port of the worker holding phone ``name`` (to call it directly, without a PBX)."""
        return self._owner[name].port

    async def _place_phone(self, name: str) -> None:
        if name in self._owner:
            raise HarnessError(f"phone {name} exists")
        worker = await self._worker_for_new_phone()
        worker.phones += 1
        self._owner[name] = worker

    async def wait_registered(self, name: str, active: bool, timeout: float = 10, start: int = 0) -> Event:
        ev = await self.wait(
            lambda e: e["ev"] == "reg" and e["ua"] == name and (e["code"] // 100 == 2 or not active),
            timeout,
            what=f"{name} {'registration' if active else 'unregistration'}",
            start=start,
        )
        if active and ev["code"] // 100 != 2:
            raise HarnessError(f"{name} registration failed: {ev['code']} {ev['reason']}")
        return ev

    async def register(self, name: str) -> None:
        mark = self.mark()
        self._send({"cmd": "register", "name": name}, to=name)
        await self.wait_registered(name, True, start=mark)

    async def unregister(self, name: str) -> None:
        mark = self.mark()
        self._send({"cmd": "unregister", "name": name}, to=name)
        await self.wait(
            lambda e: e["ev"] == "reg" and e["ua"] == name, start=mark, what=f"{name} unregistered"
        )

    def call(
        self,
        ua: str,
        to: str,
        *,
        headers: dict[str, str] | None = None,
        hangup_after: float | None = None,
        cancel_after: float | None = None,
        dtmf: str | None = None,
        dtmf_after: float = 0.3,
    ) -> str:
        """Place a call; returns its id. ``hangup_after`` counts from the answer, ``cancel_after``
        from the INVITE (only if not answered by then)."""
        call_id = f"{self.name}-{ua}-{next(self._ids)}"
        self.outstanding.add(call_id)
        if ua in self._owner:
            self._owner[call_id] = self._owner[ua]
        self._send(
            {
                "cmd": "call",
                "ua": ua,
                "id": call_id,
                "to": to,
                "headers": headers or {},
                "hangup_after": hangup_after,
                "cancel_after": cancel_after,
                "dtmf": dtmf,
                "dtmf_after": dtmf_after,
            },
            to=call_id,
        )
        return call_id

    def set_behaviour(self, name: str, behaviour: Behaviour) -> None:
        self._send({"cmd": "behaviour", "name": name, "behaviour": behaviour.wire()}, to=name)

    def respond(self, call_id: str, code: int) -> None:
        """Answer (200) or refuse (486, 603, ...) a ringing offer by hand."""
        self._send({"cmd": "respond", "id": call_id, "code": code}, to=call_id)

    def hangup(self, call_id: str) -> None:
        self._send({"cmd": "hangup", "id": call_id}, to=call_id)

    def dtmf(self, call_id: str, digits: str) -> None:
        self._send({"cmd": "dtmf", "id": call_id, "digits": digits}, to=call_id)

    def record(self, call_id: str) -> CallRecord:
        evs = [e for e in self.events if e.get("call") == call_id]
        return CallRecord(call_id, evs[0]["ua"] if evs else "", evs)

    async def ended(self, call_id: str, timeout: float = 15) -> Event:
        return await self.wait(
            lambda e: e["ev"] == "state" and e["call"] == call_id and e["state"] == "DISCONNECTED",
            timeout,
            what=f"end of call {call_id}",
        )

    async def answered(self, call_id: str, timeout: float = 15) -> Event:
        return await self.wait(
            lambda e: (
                e["ev"] == "state" and e["call"] == call_id and e["state"] in ("CONFIRMED", "DISCONNECTED")
            ),
            timeout,
            what=f"answer of call {call_id}",
        )

    async def incoming(self, ua: str | None = None, timeout: float = 15, start: int = 0) -> Event:
        return await self.wait(
            lambda e: e["ev"] == "incoming" and (ua is None or e["ua"] == ua),
            timeout,
            what=f"INVITE at {ua or 'any agent'}",
            start=start,
        )

    def live_calls(self) -> set[str]:
        """Calls that started and haven't ended (as far as the events say)."""
        started: set[str] = set()
        for e in self.events:
            if e["ev"] in ("invite_sent", "incoming"):
                started.add(e["call"])
            elif e["ev"] == "state" and e["state"] == "DISCONNECTED":
                started.discard(e["call"])
        return started
