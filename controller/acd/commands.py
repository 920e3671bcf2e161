"""What the engine asks the shell to do. Each command is idempotent for the shell:
hanging up a channel that is already gone, or cancelling a timer that already fired,
is a normal outcome there, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.acd.setup import DialplanTarget, HoldMode


class CancelReason(StrEnum):
    """Why an agent leg is hung up before it was connected."""

    ANSWERED_ELSEWHERE = "answered_elsewhere"  # ring_all: a colleague took it
    CALLER_GONE = "caller_gone"  # the customer hung up
    TIMED_OUT = "timed_out"  # ring timer or confirm timer ran out
    REJECTED = "rejected"  # the agent said no (panel button or digit 2)
    OVERFLOW = "overflow"  # the call left the queue (max_wait)
    AGENT_UNAVAILABLE = "agent_unavailable"  # agent logged out / paused / went offline
    STALE = "stale"  # an answer for an offer that had already ended


@dataclass(frozen=True, slots=True)
class ParkCaller:
    """Hold the customer: ``moh`` answers and puts them in a holding bridge with music,
    ``ring`` leaves them unanswered with ringback until an agent accepts."""

    call_id: str
    hold: HoldMode


@dataclass(frozen=True, slots=True)
class RingAgent:
    """Ring the agent's endpoint for an offer, without auto-answer.

    ``display_name``/``display_number`` is what the phone shows (connected line), ``headers``
    go on the INVITE (``X-Acd-…``). ``dial_timeout`` is Asterisk's backstop, longer than the
    engine's own ring timer. ``auto_answer`` is true only in desktop mode, after the agent
    accepted on screen: the phone is asked to pick up by itself.
    """

    offer_id: str
    call_id: str
    agent_id: str
    endpoint: str
    display_name: str
    display_number: str
    headers: Mapping[str, str] = field(default_factory=dict)
    dial_timeout: int = 20
    auto_answer: bool = False


@dataclass(frozen=True, slots=True)
class CancelOffer:
    """Hang up the agent leg of an offer that did not (or must not) connect."""

    offer_id: str
    call_id: str
    agent_id: str
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class PlayConfirmPrompt:
    """Confirm mode: play the call's details to the agent, who presses 1 or 2."""

    offer_id: str
    call_id: str
    queue: str
    caller_number: str
    wait_seconds: int


@dataclass(frozen=True, slots=True)
class Connect:
    """Bridge the customer with the agent who accepted (answer the customer first if needed)."""

    call_id: str
    offer_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class HangupAgent:
    """End a connected agent leg (the customer hung up)."""

    offer_id: str
    call_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class HangupCaller:
    """End the customer's channel (agent hung up a connected call, or overflow without target)."""

    call_id: str
    reason: str = "normal"


@dataclass(frozen=True, slots=True)
class Overflow:
    """Send the customer on in the dialplan (``continue``) after leaving the queue.

    ``target`` None continues at the priority after ``Stasis()``: the dialplan's fallback.
    """

    call_id: str
    target: DialplanTarget | None


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Fire ``TimerFired(timer_id)`` at engine time ``at``; a restart replaces the old one."""

    timer_id: str
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer_id: str


@dataclass(frozen=True, slots=True)
class Notify:
    """An agent-facing event (offer.created, offer.accepted, …) with the call's details."""

    agent_id: str
    kind: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Record:
    """A history fact with all its timings (call.queued, offer.ended, agent.state, …)."""

    kind: str
    data: Mapping[str, Any]


Command = (
    ParkCaller
    | RingAgent
    | CancelOffer
    | PlayConfirmPrompt
    | Connect
    | HangupAgent
    | HangupCaller
    | Overflow
    | StartTimer
    | CancelTimer
    | Notify
    | Record
)
