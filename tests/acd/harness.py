"""A deterministic driver for the engine: a fake clock and the shell's timer table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TypeVar

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import Engine
from controller.acd.setup import AcdSetup, AgentConfig, AgentStartState, Membership, QueueConfig

C = TypeVar("C")


def make_setup(
    agents: Iterable[str] = ("alice", "bob", "carol"),
    queue: QueueConfig | None = None,
    queues: Iterable[QueueConfig] = (),
    penalties: dict[str, int] | None = None,
    memberships: dict[str, tuple[str, ...]] | None = None,
    logged_out: Iterable[str] = (),
) -> AcdSetup:
    qs = list(queues) or [queue or QueueConfig("support")]
    penalties = penalties or {}
    memberships = memberships or {}
    logged_out = set(logged_out)
    agent_confs = {}
    for i, name in enumerate(agents, start=1):
        names = memberships.get(name, tuple(q.name for q in qs))
        agent_confs[name] = AgentConfig(
            id=name,
            name=name.title(),
            endpoint=f"PJSIP/agent{i}",
            queues=tuple(Membership(q, penalties.get(name, 0)) for q in names),
            state=AgentStartState.LOGGED_OUT if name in logged_out else AgentStartState.AVAILABLE,
        )
    return AcdSetup(queues={q.name: q for q in qs}, agents=agent_confs)


def queue(**kw) -> QueueConfig:
    return replace(QueueConfig("support"), **kw)


class Harness:
    """Feeds events, keeps the timers the engine asked for, fires them when time advances."""

    def __init__(self, setup: AcdSetup, seed: int = 0, auto_legs: bool = True) -> None:
        """``auto_legs``: behave like the shell and Asterisk, reporting the end of every agent
        leg the engine hangs up right after the command (cause 26 answered elsewhere, else 16)."""
        self.engine = Engine(setup, seed=seed)
        self.auto_legs = auto_legs
        self.now = 0.0
        self.timers: dict[str, float] = {}
        self.log: list[cmd.Command] = []

    def do(self, event: ev.Event) -> list[cmd.Command]:
        out = self.engine.handle(event, self.now)
        for c in out:
            if isinstance(c, cmd.StartTimer):
                self.timers[c.timer_id] = c.at
            elif isinstance(c, cmd.CancelTimer):
                self.timers.pop(c.timer_id, None)
        self.log.extend(out)
        if self.auto_legs:
            for c in list(out):
                if isinstance(c, cmd.CancelOffer | cmd.HangupAgent):
                    answered_elsewhere = getattr(c, "reason", None) == cmd.CancelReason.ANSWERED_ELSEWHERE
                    out = out + self.do(ev.AgentLegEnded(c.offer_id, 26 if answered_elsewhere else 16))
        return out

    def advance(self, seconds: float) -> list[cmd.Command]:
        """Move time forward, firing due timers in deadline order."""
        target = self.now + seconds
        out: list[cmd.Command] = []
        while True:
            due = [(at, tid) for tid, at in self.timers.items() if at <= target]
            if not due:
                break
            at, tid = min(due)
            self.now = max(self.now, at)
            del self.timers[tid]
            out += self.do(ev.TimerFired(tid))
        self.now = target
        return out

    # --- convenience -------------------------------------------------------

    def arrive(self, call_id: str = "c1", queue: str = "support", **kw) -> list[cmd.Command]:
        kw.setdefault("caller_number", "5551234")
        kw.setdefault("caller_name", "Maria")
        return self.do(ev.CallArrived(call_id, queue, **kw))

    def rang(self, out: list[cmd.Command]) -> list[str]:
        """Agents rung by these commands."""
        return [c.agent_id for c in out if isinstance(c, cmd.RingAgent)]

    def offer_of(self, agent_id: str) -> str:
        """The live offer of an agent (fails the test if none)."""
        offer_id = self.engine.agents[agent_id].live_offer
        assert offer_id is not None, f"{agent_id} has no live offer"
        return offer_id

    def answer(self, agent_id: str) -> list[cmd.Command]:
        return self.do(ev.AgentLegAnswered(self.offer_of(agent_id)))

    def leg_end(
        self, offer_id: str, cause: int | None = 16, tech: int | None = None, **kw
    ) -> list[cmd.Command]:
        return self.do(ev.AgentLegEnded(offer_id, cause, tech, **kw))

    def decline(self, agent_id: str, cause: int = 21, tech: int = 603) -> list[cmd.Command]:
        return self.leg_end(self.offer_of(agent_id), cause, tech)


def started(commands: Iterable[cmd.Command]) -> list[tuple[str, float]]:
    """(timer key, deadline) of every StartTimer, the per-start suffix removed."""
    return [(c.timer_id.rpartition("#")[0], c.at) for c in commands if isinstance(c, cmd.StartTimer)]


def cancelled(commands: Iterable[cmd.Command]) -> list[str]:
    return [c.timer_id.rpartition("#")[0] for c in commands if isinstance(c, cmd.CancelTimer)]


def of(commands: Iterable[cmd.Command], kind: type[C]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]
