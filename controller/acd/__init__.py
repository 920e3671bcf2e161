"""The routing engine: pure, deterministic ACD policy (sans-I/O, like h11).

``Engine.handle(event, now) -> list[Command]``: events in (``events``), commands out
(``commands``); queue/agent setup in ``setup``. No asyncio, no ARI, no database here.
"""

from controller.acd import commands, events
from controller.acd.engine import (
    Agent,
    Call,
    CallOutcome,
    CallState,
    Engine,
    Offer,
    OfferState,
    Presence,
)
from controller.acd.outcome import Outcome, classify_leg_end
from controller.acd.setup import (
    Acceptance,
    AcdSetup,
    AgentConfig,
    AgentStartState,
    DialplanTarget,
    HoldMode,
    Membership,
    QueueConfig,
    Strategy,
)

__all__ = [
    "AcdSetup",
    "Acceptance",
    "Agent",
    "AgentConfig",
    "AgentStartState",
    "Call",
    "CallOutcome",
    "CallState",
    "DialplanTarget",
    "Engine",
    "HoldMode",
    "Membership",
    "Offer",
    "OfferState",
    "Outcome",
    "Presence",
    "QueueConfig",
    "Strategy",
    "classify_leg_end",
    "commands",
    "events",
]
