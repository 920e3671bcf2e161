"""Stasis applications, their websocket connections and the log of every event the sim produced.

Rules copied from Asterisk: one socket serves an app; a second socket for the same app takes over and
the first gets ``ApplicationReplaced`` and nothing more (it is not closed). While no socket is
connected the app keeps its subscriptions (``GET /applications/{app}`` still lists them) but events
are dropped for good. An app without socket and without subscriptions disappears (404).
``PUT /applications/{app}/eventFilter`` (``App.set_event_filter``) drops event types before the
socket, ApplicationReplaced included; the filter lives and dies with the ``App`` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from controller.sim.model import jstr

if TYPE_CHECKING:
    from aiohttp import web

    from controller.sim.model import Bridge, Channel, Endpoint


class WsConn:
    """One events websocket. Events produced in one loop iteration go out in one socket write:
    uncompressed text frames written straight to the connection (the hot path at 300 calls/s)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        apps: list[str],
        subscribe_all: bool,
    ) -> None:
        self.ws = ws
        self.apps = apps
        self.subscribe_all = subscribe_all
        self.closed = False
        self._transport = transport
        self._pending: list[bytes] = []
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    def send(self, msg: str) -> None:
        if self.closed:
            return
        self._pending.append(msg.encode())
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            return
        transport.write(b"".join(_frame(p) for p in pending))

    async def close(self) -> None:
        if self._pending and not self.closed:
            self._flush()
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close()


def _frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (server to client, no extensions)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class App:
    """A Stasis application and what it is subscribed to."""

    __slots__ = (
        "name",
        "conn",
        "channels",
        "bridges",
        "endpoints",
        "tech_endpoints",
        "device_names",
        "subscribe_all",
        "suffix",
        "events_allowed",
        "events_disallowed",
        "_allowed",
        "_disallowed",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn: WsConn | None = None
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.tech_endpoints: set[str] = set()
        self.device_names: list[str] = []
        self.subscribe_all = False
        self.suffix = f', "application": {jstr(name)}}}'
        # PUT /applications/{app}/eventFilter: lists of {"type": ...} objects, None = not set. They live
        # as long as this object (Asterisk clears them only when the app is destroyed).
        self.events_allowed: list[Any] | None = None
        self.events_disallowed: list[Any] | None = None
        self._allowed: frozenset[str] = frozenset()  # their type names, for the per-event check
        self._disallowed: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.conn is not None

    def is_idle(self) -> bool:
        return (
            self.conn is None
            and not self.channels
            and not self.bridges
            and not self.endpoints
            and not self.tech_endpoints
        )

    def to_json(self) -> dict[str, Any]:
        endpoint_ids = list(self.endpoints) + sorted(self.tech_endpoints)
        return {
            "name": self.name,
            "channel_ids": list(self.channels),
            "bridge_ids": list(self.bridges),
            "endpoint_ids": endpoint_ids,
            "device_names": list(self.device_names),
            "events_allowed": list(self.events_allowed or []),
            "events_disallowed": list(self.events_disallowed or []),
        }

    def allows(self, type_: str) -> bool:
        """res/stasis/app.c stasis_app_event_allowed: disallowed wins; an empty allowed list allows all."""
        if type_ in self._disallowed:
            return False
        return not self._allowed or type_ in self._allowed

    def set_event_filter(self, body: Any) -> bool:
        """res/stasis/app.c stasis_app_event_filter_set; False = 400 (a list set before the failing
        one stays set, as in Asterisk: "disallowed" is applied first, then "allowed")."""
        return self._set_filter("events_disallowed", body, "disallowed") and self._set_filter(
            "events_allowed", body, "allowed"
        )

    def _set_filter(self, member: str, body: Any, key: str) -> bool:
        value = body  # None = no body: reset
        if isinstance(body, dict):
            if not body:
                value = None  # {} resets both lists
            elif key not in body:
                return True  # the other list was given: this one is left as it is
            else:
                value = body[key]
                if value is None:
                    return False  # a JSON null is a value, and not an array
        if value is not None and not isinstance(value, list):
            return False
        if value is not None:
            for item in value:
                kind = item.get("type") if isinstance(item, dict) else None
                if not isinstance(kind, str) or not kind:
                    return False
        setattr(self, member, value)
        names = frozenset(item["type"] for item in value or ())
        if member == "events_allowed":
            self._allowed = names
        else:
            self._disallowed = names
        return True

    def __repr__(self) -> str:
        return f"<App {self.name} {'active' if self.conn else 'inactive'}>"


class EventRecord:
    """One event the sim produced for one app; ``delivered`` is False when no socket was there or the
    app's event filter (PUT /applications/{app}/eventFilter) dropped it."""

    __slots__ = ("app", "type", "raw", "delivered", "t", "_data")

    def __init__(self, app: str, type_: str, raw: str, delivered: bool, t: float) -> None:
        self.app = app
        self.type = type_
        self.raw = raw
        self.delivered = delivered
        self.t = t
        self._data: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.raw)
        return self._data

    def __repr__(self) -> str:
        return f"<EventRecord {self.app} {self.type}{'' if self.delivered else ' (dropped)'}>"


class RestRecord:
    """One REST answer the sim gave: ``events_before`` = events produced before it (``AppRegistry.count``);
    ``user``: the ARI user that authenticated the request (tells replicas with their own users apart)."""

    __slots__ = ("method", "path", "status", "t", "events_before", "user")

    def __init__(
        self, method: str, path: str, status: int, t: float, events_before: int, user: str = ""
    ) -> None:
        self.user = user
        self.method = method
        self.path = path
        self.status = status
        self.t = t
        self.events_before = events_before

    def __repr__(self) -> str:
        where = f"{self.user} {self.method} {self.path} {self.status}"
        return f"<RestRecord {where} after {self.events_before} events>"


class AppRegistry:
    """All known apps, event fan-out and the bounded event log.

    ``event_delay`` (clock seconds) makes every event reach the websockets that much later, in
    order, like Asterisk's asynchronous stasis bus: a REST answer can then overtake the events its
    request caused (e.g. a dial's 204 before the channel's StasisStart). The log keeps production
    order and time; ``delivered`` says whether a socket was there when the event was produced.
    """

    def __init__(self, now: Callable[[], float], log_size: int) -> None:
        self.apps: dict[str, App] = {}
        self.all_apps: list[App] = []
        self.log: deque[EventRecord] = deque(maxlen=log_size)
        self.count = 0  # events produced so far (the log is bounded)
        self._now = now
        self.listeners: list[Callable[[EventRecord], None]] = []
        self.event_delay = 0.0
        self.schedule: Callable[[float, Callable[[], None]], Any] | None = None
        self._delayed: deque[tuple[float, WsConn, str]] = deque()
        # (clock time, app, has a websocket) at each change: when Stasis() could take a caller
        self.activity: list[tuple[float, str, bool]] = []

    def get(self, name: str) -> App | None:
        return self.apps.get(name)

    def deliver(self, body: str, type_: str, recipients: Iterable[App]) -> None:
        """Send ``body`` (event JSON without its closing ``, "application": ...}``) to each app."""
        now = self._now()
        for app in recipients:
            msg = body + app.suffix
            conn = app.conn
            if conn is not None and app.allows(type_):
                self._send(conn, msg, now)
            else:
                conn = None  # no socket, or the app's event filter dropped it
            rec = EventRecord(app.name, type_, msg, conn is not None, now)
            self._append(rec)

    def _append(self, rec: EventRecord) -> None:
        self.log.append(rec)
        self.count += 1
        for listener in self.listeners:
            listener(rec)

    def _send(self, conn: WsConn, msg: str, now: float) -> None:
        if self.event_delay <= 0 or self.schedule is None:
            conn.send(msg)
            return
        if not self._delayed:
            self.schedule(self.event_delay, self._release)
        self._delayed.append((now + self.event_delay, conn, msg))

    def _release(self) -> None:
        """Send the delayed events that are due; re-arm for the next one."""
        now = self._now()
        queue = self._delayed
        while queue and queue[0][0] <= now + 1e-9:
            _, conn, msg = queue.popleft()
            conn.send(msg)
        if queue and self.schedule is not None:
            self.schedule(queue[0][0] - now, self._release)

    def activate(self, name: str, conn: WsConn, ts: str, asterisk_id: str) -> App:
        app = self.apps.get(name)
        if app is None:
            app = self.apps[name] = App(name)
        old = app.conn
        if old is not None and old is not conn:
            msg = (
                f'{{"type": "ApplicationReplaced", "timestamp": "{ts}", "application": {jstr(name)}, '
                f'"asterisk_id": "{asterisk_id}"}}'
            )
            allowed = app.allows("ApplicationReplaced")  # filtered like any event (ari_websockets.c)
            if allowed:
                self._send(old, msg, self._now())
            self._append(EventRecord(name, "ApplicationReplaced", msg, allowed, self._now()))
        app.conn = conn
        if old is None:
            self.activity.append((self._now(), name, True))
        self._set_subscribe_all(app, conn.subscribe_all)
        return app

    def deactivate(self, conn: WsConn) -> None:
        for name in conn.apps:
            app = self.apps.get(name)
            if app is not None and app.conn is conn:
                app.conn = None
                self.activity.append((self._now(), name, False))
                self._set_subscribe_all(app, False)
                self.cleanup(app)

    def cleanup(self, app: App) -> None:
        """Drop an app that has neither a socket nor subscriptions (Asterisk unregisters it)."""
        if app.is_idle() and self.apps.get(app.name) is app:
            del self.apps[app.name]

    def _set_subscribe_all(self, app: App, value: bool) -> None:
        app.subscribe_all = value
        if value and app not in self.all_apps:
            self.all_apps.append(app)
        elif not value and app in self.all_apps:
            self.all_apps.remove(app)
