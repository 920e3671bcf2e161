"""Asterisk-format ``queue_log`` file, so existing queue-statistics tools keep working.

One line per fact, ``epoch|callid|queue|agent|EVENT|data1|data2|...`` as ``app_queue`` writes them:

- ``ENTERQUEUE|url|callerid|position``; ``CONNECT|holdtime|bridged channel|ringtime``;
  ``COMPLETECALLER`` / ``COMPLETEAGENT|holdtime|calltime|origposition``;
  ``ABANDON|position|origposition|waittime``; ``EXITWITHTIMEOUT`` (max_wait) and ``EXITEMPTY``
  (join_empty = false) ``|position|origposition|waittime``;
- ``RINGNOANSWER|ringtime ms`` for every offer that ended without the agent (rejected, busy,
  unreachable, rang out), ``RINGCANCELED|ringtime ms`` when the controller stopped the ring
  (caller left, colleague answered, overflow, agent paused);
- ``AGENTLOGIN|endpoint`` / ``AGENTLOGOFF|endpoint|logintime``, ``PAUSE|reason`` / ``UNPAUSE|`` per
  queue of the agent (``not_responding`` is a PAUSE with its reason).

The call id is the customer's channel id (Asterisk's uniqueid when the call comes from Asterisk),
the agent is the agent id. The listener only formats lines into a list; a task appends them to
the file every ``flush_interval`` seconds in a worker thread, so no call waits for the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.acd import commands as cmd

if TYPE_CHECKING:
    from controller.acd.engine import Engine

__all__ = ["QueueLog"]

log = logging.getLogger("controller.store")

_PAUSED = ("paused", "not_responding")


class QueueLog:
    def __init__(
        self,
        path: str | Path,
        engine: Engine,
        *,
        epoch: float | None = None,
        clock_now: Any = None,
        flush_interval: float = 0.2,
    ) -> None:
        self.path = Path(path)
        self.engine = engine
        self.epoch = epoch if epoch is not None else time.time() - (clock_now() if clock_now else 0.0)
        self.flush_interval = flush_interval
        self.lines: list[str] = []
        self.presence = {a.id: a.presence.value for a in engine.agents.values()}
        self.login_at: dict[str, float] = {a: 0.0 for a, p in self.presence.items() if p != "logged_out"}
        self.waiting: dict[str, dict[str, None]] = {q: {} for q in engine.setup.queues}
        self.entered: dict[str, tuple[str, int]] = {}  # call -> (queue, original position)
        self.ring_time: dict[str, float] = {}  # call -> ring time of the accepted offer
        self.stats = {"lines": 0, "write_errors": 0}
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # ------------------------------------------------------------------ hot path

    def _line(self, at: float, call: str, queue: str, agent: str, event: str, *data: Any) -> None:
        fields = [str(int(self.epoch + at)), call, queue, agent, event, *(str(d) for d in data)]
        self.lines.append("|".join(fields))

    def listener(self, c: cmd.Notify | cmd.Record) -> None:
        if type(c) is not cmd.Record:
            return
        d = c.data
        kind = c.kind
        if kind == "call.queued":
            queue = d["queue"]
            if queue not in self.engine.setup.queues:
                return  # not a queue of ours: the dialplan's fallback takes the call
            line = self.waiting.setdefault(queue, {})  # a queue added by a reload starts empty
            line[d["call"]] = None
            pos = len(line)
            self.entered[d["call"]] = (queue, pos)
            call = self.engine.calls.get(d["call"])
            self._line(
                d["at"], d["call"], queue, "NONE", "ENTERQUEUE", "", call.caller_number if call else "", pos
            )
        elif kind == "offer.ended":
            outcome = d["outcome"]
            if outcome == "accepted":
                self.ring_time[d["call"]] = d["ring_time"]
                return
            event = "RINGCANCELED" if outcome == "canceled" else "RINGNOANSWER"
            self._line(d["at"], d["call"], d["queue"], d["agent"], event, int(round(d["ring_time"] * 1000)))
        elif kind == "call.connected":
            entered = self.entered.get(d["call"])
            if entered is not None:
                self.waiting[entered[0]].pop(d["call"], None)
            ring = self.ring_time.pop(d["call"], 0.0)
            self._line(
                d["at"],
                d["call"],
                d["queue"],
                d["agent"],
                "CONNECT",
                round(d["wait"]),
                d["offer"],
                round(ring),
            )
        elif kind == "call.ended":
            self._call_ended(d)
        elif kind == "agent.state":
            self._agent_state(d)

    def _call_ended(self, d: Any) -> None:
        call = d["call"]
        entered = self.entered.pop(call, None)
        self.ring_time.pop(call, None)
        if entered is None:
            return
        queue, orig = entered
        line = self.waiting[queue]
        position = orig
        if call in line:
            position = 1 + next(i for i, c in enumerate(line) if c == call)
            del line[call]
        outcome, wait = d["outcome"], round(d["wait"])
        if outcome == "completed":
            event = "COMPLETEAGENT" if d["hung_up_by"] == "agent" else "COMPLETECALLER"
            self._line(d["at"], call, queue, d["agent"] or "NONE", event, wait, round(d["talk"]), orig)
        elif outcome == "abandoned":
            self._line(d["at"], call, queue, "NONE", "ABANDON", position, orig, wait)
        elif d["detail"] == "max_wait":
            self._line(d["at"], call, queue, "NONE", "EXITWITHTIMEOUT", position, orig, wait)
        elif d["detail"] == "empty":
            self._line(d["at"], call, queue, "NONE", "EXITEMPTY", position, orig, wait)

    def _agent_state(self, d: Any) -> None:
        agent_id = d["agent"]
        new = d["presence"]
        old = self.presence.get(agent_id, "logged_out")
        self.presence[agent_id] = new
        agent = self.engine.agents.get(agent_id)
        if agent is None or new == old and new not in _PAUSED:
            return
        at = d["at"]
        queues = list(agent.penalties)
        events: list[tuple[str, ...]] = []
        if old == "logged_out" and new != "logged_out":
            self.login_at[agent_id] = at
            events.append(("AGENTLOGIN", agent.endpoint))
        if new == "logged_out" and old != "logged_out":
            since = self.login_at.pop(agent_id, at)
            events.append(("AGENTLOGOFF", agent.endpoint, str(round(at - since))))
        elif new in _PAUSED:
            events.append(("PAUSE", d["reason"] or new))
        elif old in _PAUSED and new == "available":
            events.append(("UNPAUSE", ""))
        for event in events:
            for queue in queues:
                self._line(at, "NONE", queue, agent_id, *event)

    # ------------------------------------------------------------------ file

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="queue-log")

    async def _run(self) -> None:
        # Stopped by an event, not cancelled: a cancel during a write would let close() return
        # while the worker thread still appends the lines it took.
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_interval)
            await self.flush()

    async def flush(self) -> None:
        if not self.lines:
            return
        lines, self.lines = self.lines, []
        try:
            await asyncio.to_thread(self._append, lines)
            self.stats["lines"] += len(lines)
        except OSError as exc:
            self.stats["write_errors"] += 1
            self.lines[:0] = lines  # keep them for the next try
            log.warning("cannot write queue_log: %s", exc, extra={"path": str(self.path)})

    def _append(self, lines: list[str]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    async def close(self) -> None:
        """Write every line (including a write already in flight) before returning."""
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None
        await self.flush()
