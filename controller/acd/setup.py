"""Queue and agent configuration as the engine sees it.

Plain frozen dataclasses: the TOML/pydantic layer (``controller.config``) validates the
admin's file and builds these, so the engine never depends on pydantic or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Strategy(StrEnum):
    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    LINEAR = "linear"
    FEWEST_CALLS = "fewest_calls"
    RANDOM = "random"
    RING_ALL = "ring_all"


class Acceptance(StrEnum):
    ANSWER = "answer"  # answering the phone is the accept
    CONFIRM = "confirm"  # after answering, the agent presses 1 (accept) or 2 (reject)
    DESKTOP = "desktop"  # the panel shows the offer; Accept calls the phone with auto-answer


class HoldMode(StrEnum):
    MOH = "moh"  # answer the caller, holding bridge with music on hold
    RING = "ring"  # leave the caller unanswered with ringback until an agent accepts


class AgentStartState(StrEnum):
    AVAILABLE = "available"
    LOGGED_OUT = "logged_out"


# invite_headers key -> the SIP header it adds to an offer's INVITE
INVITE_HEADERS = {
    "queue": "X-Acd-Queue",
    "call_id": "X-Acd-Call-Id",
    "offer_id": "X-Acd-Offer-Id",
    "caller": "X-Acd-Caller",
    "wait": "X-Acd-Wait",
}


@dataclass(frozen=True, slots=True)
class DialplanTarget:
    """Where an overflowing caller continues in the dialplan."""

    context: str
    exten: str
    priority: int = 1

    @classmethod
    def parse(cls, text: str) -> DialplanTarget:
        """Parse ``"context,exten,priority"`` (priority optional); ValueError if malformed."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"expected 'context,exten[,priority]', got {text!r}")
        priority = 1
        if len(parts) == 3:
            try:
                priority = int(parts[2])
            except ValueError:
                raise ValueError(f"priority must be a whole number, got {parts[2]!r}") from None
            if priority < 1:
                raise ValueError(f"priority must be >= 1, got {priority}")
        return cls(parts[0], parts[1], priority)

    def __str__(self) -> str:
        return f"{self.context},{self.exten},{self.priority}"


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    strategy: Strategy = Strategy.LONGEST_IDLE
    ring_timeout: float = 15.0
    acceptance: Acceptance = Acceptance.ANSWER
    hold: HoldMode = HoldMode.MOH
    wrapup: float = 5.0
    max_wait: float = 0.0  # 0 = no limit
    overflow: DialplanTarget | None = None  # None = hang up on overflow
    reject_delay: float = 0.0
    busy_delay: float = 10.0
    no_answer_delay: float = 0.0
    unreachable_delay: float = 5.0
    max_no_answer: int = 2  # 0 = never becomes not_responding
    join_empty: bool = True  # false: a caller arriving when nobody could take the call overflows
    leave_when_empty: bool = False  # true: waiting callers overflow when the last such member goes
    retry: float = 5.0  # pause before a call is offered again to agents who already had it
    confirm_timeout: float = 10.0  # seconds the agent has to press 1/2 in confirm mode
    connect_timeout: float = 10.0  # desktop mode: seconds for the auto-answered phone to pick up
    dial_backstop: float = 5.0  # Asterisk's dial timeout = ring_timeout + this (engine's timer wins)
    # What the customer's phone shows once bridged; "" = nothing (never the agent's identity).
    customer_sees_name: str = ""
    customer_sees_number: str = ""
    # X-Acd-* headers on the agent's INVITE (INVITE_HEADERS keys). Each costs Asterisk a synchronous
    # hop to the PJSIP thread before the INVITE leaves (PJSIP_HEADER(add,...)): ~0.085 ms apiece.
    invite_headers: tuple[str, ...] = ("queue", "call_id", "offer_id", "caller", "wait")


@dataclass(frozen=True, slots=True)
class Membership:
    queue: str
    penalty: int = 0


@dataclass(frozen=True, slots=True)
class AgentConfig:
    id: str
    name: str
    endpoint: str  # e.g. "PJSIP/agent1"
    queues: tuple[Membership, ...] = ()
    state: AgentStartState = AgentStartState.AVAILABLE


@dataclass(frozen=True, slots=True)
class AcdSetup:
    """Everything the engine needs to know about queues and agents."""

    queues: dict[str, QueueConfig] = field(default_factory=dict)
    agents: dict[str, AgentConfig] = field(default_factory=dict)
