"""What the shell knows of the channels and bridges it drives (no I/O here).

Channel naming: a customer's first Stasis session uses its channel id as the call id; a channel that
comes back into the app (``continue`` into dialplan that runs ``Stasis(acd,…)`` again) starts a new
call ``<channel id>-r<n>`` with its new args. An agent leg is created with
``appArgs = offer,<offer id>,<call id>`` (originate) and ``channelId = <offer id>.<run token>`` (unique across
controller restarts), so after a reconnect or a restart every channel in the app tells what it is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from controller.acd.commands import Overflow
from controller.acd.setup import HoldMode

OFFER_ARG = "offer"  # first Stasis arg of agent legs; a queue may not be called this


@dataclass(slots=True, eq=False)
class Leg:
    """What the shell knows of one agent channel.

    ``created`` becomes true when the originate's 200 arrived (the channel surely exists) and
    ``epoch`` says which reconciliation listing could already have seen it. An originated leg
    enters Stasis only once answered: ``in_stasis`` (its StasisStart) is when play/addChannel work.
    """

    offer_id: str
    channel_id: str
    call_id: str
    agent_id: str
    hangup_requested: bool = False
    cause_seen: bool = False  # a ChannelHangupRequest with a cause (the phone's answer) arrived
    ended: bool = False
    created: bool = False
    in_stasis: bool = False  # its StasisStart arrived (answered): play/addChannel are allowed now
    answered: bool = False  # AgentLegAnswered was fed
    epoch: int = -1
    playback_id: str | None = None  # the confirm prompt, stopped before bridging
    prompt_sent: asyncio.Future[None] | None = None  # done once the play request returned


@dataclass(slots=True, eq=False)
class CallChannels:
    """One Stasis session of a customer's channel and the bridges made for it."""

    call_id: str
    channel_id: str = ""
    hold: HoldMode | None = None
    holding_bridge: str | None = None
    mixing_bridge: str | None = None
    released: bool = False  # we sent it on (continue/hangup): its StasisEnd is expected
    release_failed: bool = False  # that continue/hangup failed: reconciliation retries it
    gone: bool = False  # its StasisEnd arrived (or it was found gone)
    legs: set[str] = field(default_factory=set)  # offer ids of agent legs not yet destroyed
    parked: bool = False  # already parked (found so after a restart)
    answered: bool = False
    identity_set: bool = False  # what the customer sees when bridged was set (if configured)
    overflow: Overflow | None = None  # the continue we sent, retried if it failed
    epoch: int = -1

    def __post_init__(self) -> None:
        if not self.channel_id:
            self.channel_id = self.call_id
