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


# The pjsua2-python 2.15.1 wheel allows 8 accounts and only 4 concurrent calls per process.
CALLS_PER_WORKER = 4
PHONES_PER_WORKER = 2  # agents per process under load: a leg ending while the next rings needs 2 slots each


class UaGroup:
    """A pjsua2 worker process holding any number of agent and caller accounts."""

    def __init__(self, name: str = "ua", python: str | None = None) -> None:
        self.name = name
        self.python = python or sys.executable
        self.events: list[Event] = []
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        self.stderr_tail: list[str] = []
        self._stderr_task: asyncio.Task[None] | None = None
        self.closed = False
        self.outstanding: set[str] = set()  # calls placed here and not yet ended (or failed)
        self._errors_logged = 0

    # ------------------------------------------------------------ lifecycle

    async def start(
        self, port: int = 0, max_calls: int = 128, media_port: int = 0, timeout: float = 10
    ) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "controller.harness.worker",
            "--port",
            str(port),
            "--max-calls",
            str(max_calls),
            "--media-port",
            str(media_port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        self._reader = asyncio.create_task(self._read())
        self._stderr_task = asyncio.create_task(self._read_stderr())
        ready = await self.wait(lambda e: e["ev"] == "ready", timeout=timeout, what="worker ready")
        self.port = ready["port"]

    async def close(self, timeout: float = 5) -> None:
        if self.closed or self._proc is None:
            return
        self.closed = True
        proc = self._proc
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send({"cmd": "quit"})
            if proc.stdin:
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            log.warning("harness UA worker %s did not stop; killing pid %s", self.name, proc.pid)
            proc.kill()
            await proc.wait()
        for task in (self._reader, self._stderr_task):
            if task:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def __aenter__(self) -> UaGroup:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        assert self._proc and self._proc.stdout
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours (pjlib chatter is sent to stderr, but be safe)
            self.events.append(event)
            kind = event.get("ev")
            if kind == "error" or (kind == "state" and event.get("state") == "DISCONNECTED"):
                self.outstanding.discard(event.get("call", ""))
            if kind == "error" and self._errors_logged < 5:
                self._errors_logged += 1
                log.warning("harness UA %s: %s", self.name, event.get("error"))
            self._changed.set()
        self.events.append({"ev": "exited", "t": 0})
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self._proc and self._proc.stderr
        while True:
            line = await self._proc.stderr.readline()
            if not line:
                break
            self.stderr_tail = [*self.stderr_tail[-30:], line.decode(errors="replace").rstrip()]

    def _send(self, command: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise HarnessError(f"UA worker {self.name} is not running")
        self._proc.stdin.write((json.dumps(command) + "\n").encode())

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
        """Return once every event the worker wrote so far has been read (a ping barrier)."""
        token = next(self._ids)
        mark = self.mark()
        self._send({"cmd": "ping", "id": token})
        await self.wait(lambda e: e["ev"] == "pong" and e["id"] == token, timeout, what="pong", start=mark)

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
            }
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
        mark = self.mark()
        self._send(
            {
                "cmd": "caller",
                "name": name,
                "user": user or name,
                "password": password,
                "registrar": host,
                "display": display,
            }
        )
        ev = await self.wait(lambda e: e["ev"] in ("account", "error"), start=mark, what=f"caller {name}")
        if ev["ev"] == "error":
            raise HarnessError(f"caller {name}: {ev['error']}")

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
        self._send({"cmd": "register", "name": name})
        await self.wait_registered(name, True, start=mark)

    async def unregister(self, name: str) -> None:
        mark = self.mark()
        self._send({"cmd": "unregister", "name": name})
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
            }
        )
        return call_id

    def set_behaviour(self, name: str, behaviour: Behaviour) -> None:
        self._send({"cmd": "behaviour", "name": name, "behaviour": behaviour.wire()})

    def respond(self, call_id: str, code: int) -> None:
        """Answer (200) or refuse (486, 603, ...) a ringing offer by hand."""
        self._send({"cmd": "respond", "id": call_id, "code": code})

    def hangup(self, call_id: str) -> None:
        self._send({"cmd": "hangup", "id": call_id})

    def dtmf(self, call_id: str, digits: str) -> None:
        self._send({"cmd": "dtmf", "id": call_id, "digits": digits})

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
