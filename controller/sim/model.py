"""State objects of the simulated Asterisk: channels, bridges, endpoints, playbacks.

Each object caches its ARI JSON snapshot as a string and invalidates it on change, so an event
costs one string concatenation however many times the snapshot is sent (hot path at 300 calls/s).
Field order and formats copy Asterisk 22.10.1 as recorded in the golden traces.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.clock import Clock
    from controller.sim.apps import App

_dumps = json.JSONEncoder(ensure_ascii=False).encode


def jstr(value: Any) -> str:
    """JSON-encode one value (strings keep UTF-8 as Asterisk's jansson does)."""
    return _dumps(value)


# Q.850 cause texts as Asterisk's ast_cause2str() prints them.
CAUSE_TXT: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    2: "No route to specified transmit network",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    22: "Number changed",
    26: "Answered elsewhere",
    27: "Destination out of order",
    28: "Invalid number format",
    29: "Facility rejected",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    58: "Bearer capability not available",
    127: "Interworking, unspecified",
}


def cause_txt(cause: int) -> str:
    return CAUSE_TXT.get(cause, "Unknown")


# DELETE /channels/{id}?reason=... -> Q.850 cause (res/ari/resource_channels.c, Asterisk 22).
HANGUP_REASONS: dict[str, int] = {
    "normal": 16,
    "busy": 17,
    "congestion": 34,
    "no_answer": 19,
    "timeout": 18,
    "rejected": 21,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": 38,
    "answered_elsewhere": 26,
}

# SIP final response of a phone -> Q.850 cause on the Asterisk channel (chan_pjsip).
SIP_TO_CAUSE: dict[int, int] = {
    403: 21,
    404: 1,
    408: 18,
    480: 19,
    484: 28,
    486: 17,
    487: 127,
    488: 58,
    500: 38,
    503: 34,
    600: 17,
    603: 21,
    604: 1,
}


def cause_to_sip(cause: int) -> int:
    """Final response chan_pjsip sends on an unanswered inbound channel (hangup_cause2sip)."""
    table = {
        1: 404,
        2: 404,
        3: 404,
        34: 503,
        42: 503,
        18: 408,
        19: 480,
        20: 480,
        21: 403,
        22: 410,
        31: 480,
        28: 484,
        17: 486,
        38: 500,
        29: 501,
        27: 502,
        58: 488,
        127: 500,
    }
    return table.get(cause, 603)


KNOWN_FORMATS = frozenset(
    [
        "ulaw",
        "alaw",
        "gsm",
        "g722",
        "g726",
        "g729",
        "ilbc",
        "opus",
        "slin",
        "slin12",
        "slin16",
        "slin24",
        "slin32",
        "slin44",
        "slin48",
        "slin96",
        "slin192",
        "speex",
        "speex16",
        "speex32",
        "siren7",
        "siren14",
        "testlaw",
        "h261",
        "h263",
        "h263p",
        "h264",
        "h265",
        "vp8",
        "vp9",
        "t140",
        "jpeg",
        "png",
    ]
)


class Timestamps:
    """Asterisk-style timestamps (``2026-11-25T16:31:24.933+0000``) that follow the sim clock."""

    def __init__(self, clock: Clock, epoch: float) -> None:
        self.clock = clock
        self.epoch = epoch - clock.now()
        self._sec = -1
        self._prefix = ""

    def wall(self) -> float:
        return self.epoch + self.clock.now()

    def fmt(self, wall: float | None = None) -> str:
        ms = int((self.wall() if wall is None else wall) * 1000)
        sec, milli = divmod(ms, 1000)
        if sec != self._sec:
            tm = time.gmtime(sec)
            date = f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}"
            self._prefix = f"{date}T{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
            self._sec = sec
        return f"{self._prefix}.{milli:03d}+0000"


class Ids:
    """Seeded id sources: uniqueids, channel name suffixes, Call-IDs, UUIDs, RTP SSRCs."""

    _CALLID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"ids:{seed}")
        self.unique = 0
        self.name_seq = 0

    def uniqueid(self, wall: float) -> str:
        uid = f"{int(wall)}.{self.unique}"
        self.unique += 1
        return uid

    def skip_uniqueids(self, n: int) -> None:
        """Announcer/Local channels take ids too (bridge MOH uses two)."""
        self.unique += n

    def chan_name(self, tech: str, resource: str) -> str:
        name = f"{tech}/{resource}-{self.name_seq:08x}"
        self.name_seq += 1
        return name

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def callid(self) -> str:
        alphabet = self._CALLID_ALPHABET
        return "".join(alphabet[self.rng.getrandbits(6)] for _ in range(32))

    def ssrc(self) -> int:
        return self.rng.getrandbits(31)

    def port(self) -> int:
        return 20000 + self.rng.randrange(40000)


@dataclass(slots=True)
class Party:
    """An ARI CallerID (caller or connected line)."""

    name: str = ""
    number: str = ""

    def as_tuple(self) -> tuple[str, str]:
        return (self.name, self.number)


def _strip_quoted(text: str) -> str:
    """ast_strip_quoted(s, "\"", "\""): strip blanks, then one pair of enclosing quotes."""
    text = text.strip()
    if text[:1] == '"' and text[-1:] == '"':
        return text[1:-1]  # a lone quote is its own first and last character: ""
    return text


def _unescape_quoted(text: str) -> str:
    """ast_unescape_quoted: a backslash takes the next character as is (a trailing one is dropped)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 1
            if i >= len(text):
                break
        out.append(text[i])
        i += 1
    return "".join(out)


def shrink_phone_number(number: str) -> str:
    """ast_shrink_phone_number: drop ``( )``, blanks, ``-`` outside brackets, ``.`` except last."""
    out = []
    bracketed = 0
    for i, c in enumerate(number):
        if c == "[":
            bracketed += 1
        elif c == "]":
            bracketed -= 1
        elif c == "-":
            if not bracketed:
                continue
        elif c == ".":
            if i + 1 < len(number):
                continue
        elif c in "( )":
            continue
        out.append(c)
    return "".join(out)


def is_shrinkable_phone_number(number: str) -> bool:
    return bool(number) and all(c in "0123456789*#+()-." for c in number)


def parse_callerid(text: str) -> Party:
    """main/callerid.c ast_callerid_parse: ``"Name" <num>``, ``Name <num>``, ``num`` or ``Name``."""
    stripped = text.strip()
    instr = _strip_quoted(stripped)
    quotes_stripped = instr != stripped
    ls = instr.rfind("<")
    if ls >= 0:
        location = instr[ls + 1 :]
        le = location.rfind(">")
        if le >= 0:
            location = location[:le]
        name = _strip_quoted(instr[:ls])
    else:
        tmp = shrink_phone_number(instr[:255])
        if not quotes_stripped and tmp and all(c in "0123456789*#+" for c in tmp):
            return Party("", tmp)
        location, name = "", _strip_quoted(instr)
    return Party(_unescape_quoted(name), location)


class Endpoint:
    """A PJSIP endpoint (one per simulated phone, plus the customers' trunk endpoint)."""

    __slots__ = ("tech", "resource", "key", "state", "channel_ids", "subs", "phone", "contact_uri", "_snap")

    def __init__(self, tech: str, resource: str, state: str = "offline") -> None:
        self.tech = tech
        self.resource = resource
        self.key = f"{tech}/{resource}"
        self.state = state
        self.channel_ids: dict[str, None] = {}
        self.subs: dict[App, int] = {}  # app -> subscribe count (Asterisk's forwards->interested)
        self.phone: Any = None
        self.contact_uri = ""
        self._snap: str | None = None

    def snap(self) -> str:
        if self._snap is None:
            self._snap = (
                f'{{"technology": {jstr(self.tech)}, "resource": {jstr(self.resource)}, '
                f'"state": "{self.state}", "channel_ids": {jstr(list(self.channel_ids))}}}'
            )
        return self._snap

    def touch(self) -> None:
        self._snap = None


class Channel:
    """One Asterisk channel. ``kind``: ``inbound`` (dialplan), ``created`` (/channels/create),
    ``originated`` (POST /channels), ``local`` (a half of a Local pair)."""

    __slots__ = (
        "id",
        "name",
        "tech",
        "resource",
        "endpoint",
        "kind",
        "state",
        "protocol_id",
        "caller",
        "connected",
        "accountcode",
        "context",
        "exten",
        "priority",
        "app_name",
        "app_data",
        "creationtime",
        "language",
        "vars",
        "add_headers",
        "inbound_headers",
        "stasis_app",
        "stasis_args",
        "subs",
        "bridge",
        "answered_at",
        "moh",
        "ringing",
        "held",
        "muted",
        "dialing",
        "dial_timer",
        "dialstring",
        "originate",
        "hung",
        "party",
        "media_peer",
        "playbacks",
        "timers",
        "ssrc",
        "stasis_entered",
        "stasis_pending",
        "local_peer",
        "local_outer",
        "after_playback",
        "inhibit_connected",
        "_snap",
    )

    def __init__(
        self,
        cid: str,
        name: str,
        tech: str,
        resource: str,
        kind: str,
        state: str,
        protocol_id: str,
        context: str,
        exten: str,
        priority: int,
        creationtime: str,
    ) -> None:
        self.id = cid
        self.name = name
        self.tech = tech
        self.resource = resource
        self.endpoint: Endpoint | None = None
        self.kind = kind
        self.state = state
        self.protocol_id = protocol_id
        self.caller = Party()
        self.connected = Party()
        self.accountcode = ""
        self.context = context
        self.exten = exten
        self.priority = priority
        self.app_name = ""
        self.app_data = ""
        self.creationtime = creationtime
        self.language = "en"
        self.vars: dict[str, str] = {}
        self.add_headers: dict[str, str] = {}
        self.inbound_headers: dict[str, tuple[str, str]] = {}
        self.stasis_app: App | None = None
        self.stasis_args: list[str] = []
        self.stasis_entered = False
        self.subs: dict[App, int] = {}
        self.bridge: Bridge | None = None
        self.answered_at: float | None = None
        self.moh: str | None = None
        self.ringing = False
        self.held = False
        self.muted = ""
        self.dialing = False
        self.dial_timer: Any = None
        self.dialstring = resource
        self.originate: dict[str, Any] | None = None
        self.hung = False
        self.party: Any = None
        self.media_peer: Channel | None = None
        self.playbacks: list[Playback] = []
        self.timers: list[Any] = []
        self.ssrc = 0
        self.stasis_pending: Any = None  # timer until a created channel enters Stasis
        self.local_peer: Channel | None = None  # the other half of a Local pair
        self.local_outer: Channel | None = None  # the channel whose Dial() made the Local pair
        self.after_playback: list[Any] = []  # addChannel requests waiting for its playback to end
        self.inhibit_connected = False  # joined its bridge with inhibitConnectedLineUpdates
        self._snap: str | None = None

    def snap(self) -> str:
        if self._snap is None:
            self._snap = (
                f'{{"id": "{self.id}", "name": {jstr(self.name)}, "state": "{self.state}", '
                f'"protocol_id": {jstr(self.protocol_id)}, '
                f'"caller": {{"name": {jstr(self.caller.name)}, "number": {jstr(self.caller.number)}}}, '
                f'"connected": {{"name": {jstr(self.connected.name)}, '
                f'"number": {jstr(self.connected.number)}}}, '
                f'"accountcode": {jstr(self.accountcode)}, '
                f'"dialplan": {{"context": {jstr(self.context)}, "exten": {jstr(self.exten)}, '
                f'"priority": {self.priority}, "app_name": {jstr(self.app_name)}, '
                f'"app_data": {jstr(self.app_data)}}}, '
                f'"creationtime": "{self.creationtime}", "language": {jstr(self.language)}}}'
            )
        return self._snap

    def touch(self) -> None:
        self._snap = None

    @property
    def up(self) -> bool:
        return self.state == "Up"

    def __repr__(self) -> str:
        return f"<Channel {self.id} {self.name} {self.state}>"


class Bridge:
    """A REST-created bridge (``holding`` or ``mixing``)."""

    __slots__ = (
        "id",
        "name",
        "type",
        "technology",
        "creationtime",
        "channels",
        "moh",
        "moh_announcer",
        "subs",
        "playbacks",
        "_snap",
    )

    def __init__(self, bid: str, name: str, btype: str, creationtime: str) -> None:
        self.id = bid
        self.name = name
        self.type = btype
        self.technology = "holding_bridge" if btype == "holding" else "simple_bridge"
        self.creationtime = creationtime
        self.channels: dict[str, Channel] = {}  # ordered: join order
        self.moh: str | None = None
        self.moh_announcer = False
        self.subs: dict[App, int] = {}
        self.playbacks: list[Playback] = []
        self._snap: str | None = None

    def snap(self) -> str:
        if self._snap is None:
            ids = ", ".join(f'"{cid}"' for cid in self.channels)
            self._snap = (
                f'{{"id": {jstr(self.id)}, "technology": "{self.technology}", "bridge_type": "{self.type}", '
                f'"bridge_class": "stasis", "creator": "Stasis", "name": {jstr(self.name)}, '
                f'"channels": [{ids}], "creationtime": "{self.creationtime}", "video_mode": "talker"}}'
            )
        return self._snap

    def touch(self) -> None:
        self._snap = None


class Playback:
    """A queued or playing media playback on a channel or bridge."""

    __slots__ = ("id", "medias", "index", "target_uri", "language", "state", "channel", "bridge", "timer")

    def __init__(
        self,
        pid: str,
        medias: list[str],
        target_uri: str,
        language: str,
        channel: Channel | None,
        bridge: Bridge | None,
    ) -> None:
        self.id = pid
        self.medias = medias
        self.index = 0
        self.target_uri = target_uri
        self.language = language
        self.state = "queued"
        self.channel = channel
        self.bridge = bridge
        self.timer: Any = None

    def snap(self) -> str:
        media = self.medias[self.index]
        nxt = ""
        if self.index + 1 < len(self.medias):
            nxt = f'"next_media_uri": {jstr(self.medias[self.index + 1])}, '
        return (
            f'{{"id": {jstr(self.id)}, "media_uri": {jstr(media)}, {nxt}'
            f'"target_uri": {jstr(self.target_uri)}, '
            f'"language": {jstr(self.language)}, "state": "{self.state}"}}'
        )
