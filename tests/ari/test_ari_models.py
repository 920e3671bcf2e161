"""Event parsing against the real Asterisk 22 events recorded in ari-api-docs/traces."""

from __future__ import annotations

import json

import pytest
from ari_fake import TRACES, require_traces, trace_events
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.ari import (
    ApplicationReplacedEvent,
    BridgeDestroyed,
    ChannelCallerId,
    ChannelConnectedLine,
    ChannelCreated,
    ChannelDestroyed,
    ChannelDialplan,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    ChannelVarset,
    Dial,
    EndpointStateChange,
    Event,
    MalformedEvent,
    PlaybackContinuing,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
    decode_event,
    is_known,
    parse_event,
)

EXPECTED: dict[str, type[Event]] = {
    "StasisStart": StasisStart,
    "StasisEnd": StasisEnd,
    "ChannelCreated": ChannelCreated,
    "ChannelStateChange": ChannelStateChange,
    "ChannelHangupRequest": ChannelHangupRequest,
    "ChannelDestroyed": ChannelDestroyed,
    "ChannelEnteredBridge": ChannelEnteredBridge,
    "ChannelLeftBridge": ChannelLeftBridge,
    "BridgeDestroyed": BridgeDestroyed,
    "Dial": Dial,
    "ChannelDtmfReceived": ChannelDtmfReceived,
    "EndpointStateChange": EndpointStateChange,
    "PlaybackStarted": PlaybackStarted,
    "PlaybackContinuing": PlaybackContinuing,
    "PlaybackFinished": PlaybackFinished,
    "ApplicationReplaced": ApplicationReplacedEvent,
    "ChannelVarset": ChannelVarset,
    "ChannelConnectedLine": ChannelConnectedLine,
    "ChannelCallerId": ChannelCallerId,
    "ChannelDialplan": ChannelDialplan,
}


def all_trace_events() -> list[dict]:
    require_traces()
    events = []
    for path in sorted(TRACES.glob("*.json")):
        for step in json.loads(path.read_text())["steps"]:
            if step["kind"] == "event":
                events.append(step["event"])
    return events


def test_every_recorded_event_parses_into_its_class() -> None:
    events = all_trace_events()
    assert len(events) > 400
    seen: set[str] = set()
    unknown: set[str] = set()
    for data in events:
        event = parse_event(data)
        seen.add(data["type"])
        assert event.type == data["type"]
        assert event.raw is data
        assert event.application in ("acd", "observer")
        assert event.timestamp and event.asterisk_id == "02:fc:00:00:00:01"
        if data["type"] in EXPECTED:
            assert type(event) is EXPECTED[data["type"]], data["type"]
            assert is_known(event)
        else:
            assert type(event) is Event
            assert not is_known(event)
            unknown.add(data["type"])
    assert set(EXPECTED) <= seen  # the traces exercise every typed event
    assert unknown == {"PeerStatusChange", "ContactStatusChange"}


def first(name: str, kind: str, **match) -> Event:
    for data in trace_events(name):
        if data["type"] == kind and all(data.get(k) == v for k, v in match.items()):
            return parse_event(data)
    raise LookupError(f"{kind} {match} not in {name}")


def test_hangup_request_variants() -> None:
    decline = first("agent_decline_603.json", "ChannelHangupRequest", cause=21)
    assert isinstance(decline, ChannelHangupRequest)
    assert (decline.cause, decline.tech_cause, decline.soft) == (21, 603, None)
    assert decline.channel.name.startswith("PJSIP/agent1-")

    timeout = first("agent_no_answer_timeout.json", "ChannelHangupRequest", cause=32)
    assert (timeout.cause, timeout.soft, timeout.tech_cause) == (32, True, None)

    bye = first("inbound_caller_hangs_up_waiting.json", "ChannelHangupRequest")
    assert (bye.cause, bye.soft, bye.tech_cause) == (None, None, None)

    cancel = first("inbound_ring_then_cancel.json", "ChannelHangupRequest")
    assert (cancel.cause, cancel.tech_cause, cancel.channel.state) == (127, 487, "Ring")


def test_destroyed_dial_stasis_fields() -> None:
    destroyed = first("agent_busy_486.json", "ChannelDestroyed")
    assert (destroyed.cause, destroyed.cause_txt, destroyed.tech_cause) == (17, "User busy", 486)
    elsewhere = first("controller_cancels_ringing_agent.json", "ChannelDestroyed")
    assert (elsewhere.cause, elsewhere.tech_cause) == (26, None)

    dialing = first("agent_decline_603.json", "Dial", dialstatus="")
    assert isinstance(dialing, Dial)
    assert dialing.caller is None and dialing.dialstring == "agent1" and dialing.forward == ""
    ringing = first("agent_decline_603.json", "Dial", dialstatus="RINGING")
    assert ringing.dialstring == ""  # create+dial: only the first Dial names the dialstring; use peer.id
    assert ringing.peer.connected.name == "Maria"

    start = first("agent_decline_603.json", "StasisStart", args=["support"])
    assert start.channel.state == "Ring"
    assert start.channel.caller.number == "5551234"
    assert start.channel.dialplan.app_data == "acd,support" and start.channel.dialplan.priority == 2
    offer = first("agent_decline_603.json", "StasisStart", args=["offer", "1"])
    assert offer.channel.state == "Down" and offer.replace_channel is None

    varset = first("agent_decline_603.json", "ChannelVarset", variable="STASISSTATUS", value="SUCCESS")
    assert varset.channel is not None

    dtmf = first("dtmf_confirm.json", "ChannelDtmfReceived")
    assert (dtmf.digit, dtmf.duration_ms) == ("1", 200)
    done = first("dtmf_confirm.json", "PlaybackFinished")
    assert done.playback.state == "done" and done.playback.media_uri == "sound:hello-world"

    online = first("endpoint_state.json", "EndpointStateChange")
    assert (online.endpoint.technology, online.endpoint.resource, online.endpoint.state) == (
        "PJSIP",
        "agent4",
        "online",
    )

    entered = first("agent_answer_then_bridge.json", "ChannelEnteredBridge")
    assert entered.bridge.bridge_type == "holding" and entered.channel is not None
    gone = first("agent_answer_then_bridge.json", "BridgeDestroyed")
    assert gone.bridge.technology == "simple_bridge"

    dialplan = first("agent_decline_603.json", "ChannelDialplan")
    assert (dialplan.dialplan_app, dialplan.dialplan_app_data) == ("Stasis", "acd,offer,1")


def test_unknown_fields_and_unknown_types_are_tolerated() -> None:
    data = dict(trace_events("agent_decline_603.json")[0])
    data["brand_new_field"] = {"x": 1}
    data["channel"] = {**data["channel"], "tenantid": "t1", "another": [1, 2]}
    assert isinstance(parse_event(data), StasisStart)

    event = parse_event({"type": "ChannelTalkingStarted", "application": "acd", "channel": {"id": "c1"}})
    assert type(event) is Event and event.raw["channel"]["id"] == "c1"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([1, 2], "JSON object"),
        ("StasisStart", "JSON object"),
        ({"application": "acd"}, "no 'type'"),
        ({"type": 5}, "no 'type'"),
        ({"type": ""}, "no 'type'"),
        ({"type": "ChannelDestroyed", "cause": "not a number", "channel": {"id": "c1"}}, "cause"),
        ({"type": "StasisStart", "args": "support", "channel": {"id": "c1"}}, "args"),
        ({"type": "StasisEnd"}, "channel"),
        ({"type": "ChannelHangupRequest", "channel": {"name": "no id"}}, r"channel\.id"),
    ],
)
def test_malformed_events_raise_clearly(data, match) -> None:
    with pytest.raises(MalformedEvent, match=match):
        parse_event(data)


def test_decode_event() -> None:
    assert isinstance(decode_event('{"type": "StasisEnd", "channel": {"id": "c1"}}'), StasisEnd)
    with pytest.raises(MalformedEvent, match="not valid JSON"):
        decode_event("{not json")
    with pytest.raises(MalformedEvent):
        decode_event(b"\xff\xfe")
    assert issubclass(MalformedEvent, ValueError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([*EXPECTED, "Unknown", ""]) | st.integers(),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "channel",
                "bridge",
                "cause",
                "soft",
                "args",
                "peer",
                "playback",
                "endpoint",
                "digit",
                "variable",
                "value",
                "application",
                "timestamp",
            ]
        ),
        json_values,
        max_size=5,
    ),
)
def test_parse_event_only_ever_raises_malformed_event(kind, fields) -> None:
    try:
        event = parse_event({**fields, "type": kind})
    except MalformedEvent:
        return
    assert isinstance(event, Event)


def test_media_list_playback_events() -> None:
    """A media list is one playback: Continuing (old media) between items, next_media_uri while more."""
    started = first("confirm_dtmf_during_prompt.json", "PlaybackStarted")
    assert isinstance(started, PlaybackStarted)
    playback = started.playback
    assert (playback.media_uri, playback.next_media_uri) == ("sound:queue-thereare", "digits:3")
    cont = first("confirm_dtmf_during_prompt.json", "PlaybackContinuing")
    assert isinstance(cont, PlaybackContinuing) and is_known(cont)
    assert (cont.playback.state, cont.playback.media_uri) == ("continuing", "sound:queue-thereare")
    done = first("confirm_dtmf_during_prompt.json", "PlaybackFinished")
    assert (done.playback.state, done.playback.next_media_uri) == ("done", "")
