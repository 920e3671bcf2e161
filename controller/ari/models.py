"""Pydantic models for the ARI resources and websocket events the controller uses.

Field names are exactly those of Asterisk's Swagger files (``ari-api-docs/*.json``). The models are
tolerant on purpose: unknown fields are ignored and fields Asterisk may leave out have defaults, so a
newer Asterisk adding a field never breaks the controller. Timestamps stay strings as Asterisk sends
them (``2026-11-25T16:31:24.933+0000``); the engine runs on its own clock.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import MalformedEvent


class AriModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- resources ---------------------------------------------------------------------------------


class CallerId(AriModel):
    name: str = ""
    number: str = ""


class DialplanCEP(AriModel):
    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""


class Channel(AriModel):
    id: str
    name: str = ""
    state: str = ""
    caller: CallerId = Field(default_factory=CallerId)
    connected: CallerId = Field(default_factory=CallerId)
    dialplan: DialplanCEP = Field(default_factory=DialplanCEP)
    creationtime: str = ""
    language: str = ""
    protocol_id: str = ""
    accountcode: str = ""
    channelvars: dict[str, Any] | None = None


class Bridge(AriModel):
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    creator: str = ""
    name: str = ""
    channels: list[str] = Field(default_factory=list)
    creationtime: str = ""


class Endpoint(AriModel):
    technology: str
    resource: str
    state: str = "unknown"
    channel_ids: list[str] = Field(default_factory=list)


class Application(AriModel):
    name: str
    channel_ids: list[str] = Field(default_factory=list)
    bridge_ids: list[str] = Field(default_factory=list)
    endpoint_ids: list[str] = Field(default_factory=list)
    device_names: list[str] = Field(default_factory=list)
    events_allowed: list[dict[str, Any]] = Field(default_factory=list)  # eventFilter, [] = not set
    events_disallowed: list[dict[str, Any]] = Field(default_factory=list)


class Playback(AriModel):
    id: str
    media_uri: str = ""
    next_media_uri: str = ""  # set while a media list has more items
    target_uri: str = ""
    language: str = ""
    state: str = ""


# --- events ------------------------------------------------------------------------------------


class Event(AriModel):
    """Any ARI message. Unknown event types arrive as a plain ``Event`` with the message in ``raw``."""

    type: str
    application: str = ""
    timestamp: str = ""
    asterisk_id: str = ""
    raw: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)


class StasisStart(Event):
    args: list[str] = Field(default_factory=list)
    channel: Channel
    replace_channel: Channel | None = None


class StasisEnd(Event):
    channel: Channel


class ChannelCreated(Event):
    channel: Channel


class ChannelStateChange(Event):
    channel: Channel


class ChannelHangupRequest(Event):
    """``cause``/``soft``/``tech_cause`` are each absent in some real cases (a plain BYE has none)."""

    cause: int | None = None
    soft: bool | None = None
    tech_cause: int | None = None
    channel: Channel


class ChannelDestroyed(Event):
    cause: int = 0
    cause_txt: str = ""
    tech_cause: int | None = None
    channel: Channel


class ChannelEnteredBridge(Event):
    bridge: Bridge
    channel: Channel | None = None


class ChannelLeftBridge(Event):
    bridge: Bridge
    channel: Channel


class BridgeCreated(Event):
    bridge: Bridge


class BridgeDestroyed(Event):
    bridge: Bridge


class Dial(Event):
    """Never carries a final failure status for create+dial; use the hangup events for that."""

    peer: Channel
    dialstatus: str = ""
    dialstring: str = ""
    forward: str = ""
    caller: Channel | None = None
    forwarded: Channel | None = None


class ChannelDtmfReceived(Event):
    digit: str
    duration_ms: int = 0
    channel: Channel


class EndpointStateChange(Event):
    endpoint: Endpoint


class PlaybackStarted(Event):
    playback: Playback


class PlaybackContinuing(Event):
    """A media list moves on to its next item (state ``continuing``, the old media)."""

    playback: Playback


class PlaybackFinished(Event):
    playback: Playback


class ApplicationReplacedEvent(Event):
    """Wire type ``ApplicationReplaced``; renamed so it does not clash with the exception."""


class ChannelVarset(Event):
    variable: str
    value: str = ""
    channel: Channel | None = None


class ChannelConnectedLine(Event):
    channel: Channel


class ChannelCallerId(Event):
    caller_presentation: int = 0
    caller_presentation_txt: str = ""
    channel: Channel


class ChannelDialplan(Event):
    dialplan_app: str = ""
    dialplan_app_data: str = ""
    channel: Channel


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        StasisStart,
        StasisEnd,
        ChannelCreated,
        ChannelStateChange,
        ChannelHangupRequest,
        ChannelDestroyed,
        ChannelEnteredBridge,
        ChannelLeftBridge,
        BridgeCreated,
        BridgeDestroyed,
        Dial,
        ChannelDtmfReceived,
        EndpointStateChange,
        PlaybackStarted,
        PlaybackContinuing,
        PlaybackFinished,
        ChannelVarset,
        ChannelConnectedLine,
        ChannelCallerId,
        ChannelDialplan,
    )
}
EVENT_TYPES["ApplicationReplaced"] = ApplicationReplacedEvent


def parse_event(data: Any) -> Event:
    """Turn one decoded websocket message into its typed event (plain ``Event`` for unknown types).

    Raises MalformedEvent (a ValueError) when ``data`` is not an object, has no string ``type``, or
    a known event has fields of the wrong type.
    """
    if not isinstance(data, dict):
        raise MalformedEvent(f"ARI event must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedEvent("ARI event has no 'type' string")
    cls = EVENT_TYPES.get(kind, Event)
    try:
        event = cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise MalformedEvent(f"ARI event {kind!r} is malformed: {problems}") from None
    event.raw = data
    return event


def decode_event(text: str | bytes) -> Event:
    """Decode one websocket text frame; invalid JSON is a MalformedEvent too."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"ARI event is not valid JSON: {exc}") from None
    return parse_event(data)


def is_known(event: Event) -> bool:
    """True if ``event`` was parsed into one of the typed classes above."""
    return type(event) is not Event
