"""What the engine is told. The shell turns ARI events, timers and panel clicks into these.

Every event is a small frozen value; ``Engine.handle(event, now)`` consumes it with the
current clock time. Ids are opaque strings chosen by the shell (calls) or by the engine
(offers, timers), so the same event can be replayed in tests without any I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.acd.setup import AcdSetup


@dataclass(frozen=True, slots=True)
class CallArrived:
    """A customer entered the Stasis app asking for ``queue``.

    ``arrived_at`` is set when a call is re-queued after a resync, so it keeps its place
    in line (its original arrival time); otherwise the event's ``now`` is the arrival.
    ``info`` carries extra details the phone and panel show (e.g. SIP headers passed in).
    """

    call_id: str
    queue: str
    caller_number: str = ""
    caller_name: str = ""
    priority: int = 0
    info: Mapping[str, str] = field(default_factory=dict)
    arrived_at: float | None = None


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The customer's channel is gone (hung up, cancelled, or lost during a gap)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class AgentLegAnswered:
    """The agent's phone answered the offer's channel."""

    offer_id: str


@dataclass(frozen=True, slots=True)
class AgentLegEnded:
    """The agent's channel for an offer is gone.

    ``cause``/``tech_cause`` come from the leg's ``ChannelHangupRequest`` (when it carries
    them) or ``ChannelDestroyed`` (Q.850 and SIP code).
    ``dial_timeout`` is true when Asterisk's own dial timeout ended the leg: cause 19 with no
    hangup request carrying a cause before it (a phone's 480 has one).
    ``allocation_failed`` is true when the channel could not even be created (HTTP 500
    "Allocation failed": endpoint unregistered or unknown).
    ``lost`` is true when the leg's end was never seen (its events were lost while the events
    websocket was down; reconciliation found the channel gone): the cause is unknown, so the
    offer ends as canceled and counts against nobody (no delay, no miss).
    ``not_stored`` is true when the phone was never rung because the database did not confirm
    the offer's row in time (hot standby's write-ahead): canceled, nobody's fault, next agent.
    """

    offer_id: str
    cause: int | None = None
    tech_cause: int | None = None
    dial_timeout: bool = False
    allocation_failed: bool = False
    lost: bool = False
    not_stored: bool = False


@dataclass(frozen=True, slots=True)
class OfferAccepted:
    """The agent pressed Accept on the panel (used by acceptance modes that need it)."""

    offer_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class OfferRejected:
    """The agent pressed Reject on the panel: stop ringing at once, next agent."""

    offer_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class ConfirmDigit:
    """A DTMF digit from the agent's phone while the call details are played (confirm mode)."""

    offer_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer started by a ``StartTimer`` command reached its deadline."""

    timer_id: str


@dataclass(frozen=True, slots=True)
class AgentLogin:
    agent_id: str
    by: str = ""  # who asked, when not the agent's phone: "admin", "agent:ID", "supervisor:ID"


@dataclass(frozen=True, slots=True)
class AgentLogout:
    agent_id: str
    by: str = ""


@dataclass(frozen=True, slots=True)
class AgentPause:
    agent_id: str
    reason: str = ""
    by: str = ""


@dataclass(frozen=True, slots=True)
class AgentReady:
    """Agent is ready again: ends a pause or ``not_responding``, resets the miss count."""

    agent_id: str
    by: str = ""


@dataclass(frozen=True, slots=True)
class EndpointState:
    """Reachability of a device (``EndpointStateChange``: online/offline)."""

    endpoint: str
    reachable: bool


@dataclass(frozen=True, slots=True)
class CallRestored:
    """After a controller restart: a customer and the agent leg answered for them.

    ``bridged``: they already talk in a mixing bridge (the engine only takes the call back);
    otherwise the agent had answered but the customer was still waiting, and the engine
    connects them now. Refused (nothing happens) if the agent is busy or unknown; the shell
    then re-queues the customer and hangs the leg up.
    """

    call_id: str
    queue: str
    agent_id: str
    caller_number: str = ""
    caller_name: str = ""
    arrived_at: float | None = None
    bridged: bool = True


@dataclass(frozen=True, slots=True)
class AgentStateRestored:
    """At start, before any call: what the store kept of an agent across a restart.

    ``presence`` is a ``Presence`` value; ``wrapup_until`` an engine time (the shell converts
    the stored wall time), ignored when already past. An agent the store never saw gets no
    such event and keeps the queue file's ``state``.
    """

    agent_id: str
    presence: str
    pause_reason: str = ""
    misses: int = 0
    wrapup_until: float | None = None


@dataclass(frozen=True, slots=True)
class SetupReloaded:
    """The queue file was reloaded and validated: route with this setup from now on."""

    setup: AcdSetup


Event = (
    CallArrived
    | CallerHungUp
    | AgentLegAnswered
    | AgentLegEnded
    | OfferAccepted
    | OfferRejected
    | ConfirmDigit
    | TimerFired
    | AgentLogin
    | AgentLogout
    | AgentPause
    | AgentReady
    | EndpointState
    | CallRestored
    | AgentStateRestored
    | SetupReloaded
)
