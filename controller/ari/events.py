"""The ARI events websocket: one ordered consumer, resync hook, reconnect forever.

Call state depends on event order (StasisStart before ChannelStateChange before StasisEnd), so one loop
awaits the handler for each message in turn; a slow handler delays later events, it never reorders
them. Asterisk replays nothing after a reconnect, so ``on_connect`` runs before the first message of
every new socket: that is where the caller resyncs from GET /channels, /bridges and /applications/{app}.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection

import aiohttp

from .client import AriClient
from .errors import ApplicationReplaced, AriConnectionError, AriUnauthorized, MalformedEvent
from .models import ApplicationReplacedEvent, Event, is_known, parse_event

log = logging.getLogger("controller.ari.events")

YIELD_EVERY = 8  # frames handled before the consumer lets other tasks run
# Asterisk writes "type" as the first member of every event (jansson keeps insertion order), compact
# or pretty (ari.conf ``pretty``). Reading it off the text lets an ignored event skip json.loads,
# the consumer's largest cost. Anything else (no match, an escape) takes the full parse.
_LEADING_TYPE = re.compile(r'\A\s*\{\s*"type"\s*:\s*"([A-Za-z]+)"')

EventHandler = Callable[[Event], Awaitable[None]]
ConnectHook = Callable[[bool], Awaitable[None]]


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter: uniform(0, min(maximum, initial * 2**attempt)).

    Full jitter keeps several controllers (or a restarted one) from hammering a recovering Asterisk
    in lockstep.
    """
    cap = min(maximum, initial * 2.0 ** min(max(attempt, 0), 60))
    return rng.uniform(0.0, cap)


class EventStream:
    """Deliver ARI events for ``client.app`` to ``handler``, one at a time, in arrival order.

    ``run()`` returns after ``stop()``; raises AriUnauthorized if the very first handshake is refused
    (bad credentials never fix themselves), and ApplicationReplaced when another controller takes the
    app over (that event is not handed to ``handler``). Every other failure is logged and retried with
    backoff, forever. Event types without a typed model reach ``handler`` as a plain ``Event``.

    ``stats`` counts events, unknown_events, malformed_events, handler_errors, reconnects,
    connect_failures and on_connect_errors.
    """

    def __init__(
        self,
        client: AriClient,
        handler: EventHandler,
        *,
        on_connect: ConnectHook | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
        heartbeat: float | None = 30.0,
        stable_after: float = 10.0,
        types: Collection[str] | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self._client = client
        self._handler = handler
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect  # told at once when a socket ends: events are lost from now on
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._heartbeat = heartbeat
        self._stable_after = stable_after
        # Event types the handler wants; others are counted and dropped before model parsing
        # (a call brings ~60 events, most of them ChannelVarset the controller ignores).
        self._types = frozenset(types) | {"ApplicationReplaced"} if types is not None else None
        self.connected = False
        self.first_connected = asyncio.Event()  # set once the first on_connect has completed
        self.stats: Counter[str] = Counter()
        self._stopping = False
        self._wake = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._attempt = 0
        self._extra = {"ari_app": client.app, "ari_url": client.events_url}

    async def run(self) -> None:
        handshake_ok = False  # after one good handshake, even a 401 is treated as transient
        synced = False  # an on_connect completed, so the next one is a reconnect
        while not self._stopping:
            reset = False
            try:
                ws = await self._client.connect_events(heartbeat=self._heartbeat)
            except AriUnauthorized as exc:
                if not handshake_ok:
                    log.error("%s", exc, extra=self._extra)
                    raise
                self.stats["connect_failures"] += 1
                log.warning("events websocket refused: %s; retrying", exc, extra=self._extra)
            except AriConnectionError as exc:
                self.stats["connect_failures"] += 1
                log.warning("%s; retrying", exc, extra=self._extra)
            else:
                if self._stopping:
                    await ws.close()
                    break
                if handshake_ok:
                    self.stats["reconnects"] += 1
                handshake_ok = True
                reset, completed = await self._serve(ws, reconnected=synced)
                synced = synced or completed
            if self._stopping:
                break
            if reset:
                self._attempt = 0
            delay = backoff_delay(self._attempt, self.backoff_initial, self.backoff_max, self._rng)
            log.info(
                "reconnecting to the ARI events websocket in %.2f s",
                delay,
                extra={**self._extra, "attempt": self._attempt, "backoff_s": delay},
            )
            self._attempt += 1
            await self._sleep(delay)
        log.info("ARI event stream stopped", extra=self._extra)

    async def stop(self) -> None:
        """Make ``run()`` return: no reconnect, the current socket is closed after the running handler."""
        self._stopping = True
        self._wake.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()

    async def _sleep(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, *, reconnected: bool) -> tuple[bool, bool]:
        """Run one socket to its end. Returns (reset the backoff?, on_connect completed?)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        received = 0
        self._ws = ws
        self.connected = True
        try:
            log.info(
                "%s the ARI events websocket",
                "reconnected to" if reconnected else "connected to",
                extra={**self._extra, "reconnected": reconnected},
            )
            if self._on_connect is not None:
                try:
                    await self._on_connect(reconnected)
                except Exception:
                    self.stats["on_connect_errors"] += 1
                    log.exception("on_connect failed; dropping the socket and retrying", extra=self._extra)
                    return False, False
            self.first_connected.set()
            received = await self._consume(ws)
        finally:
            self.connected = False
            self._ws = None
            if self._on_disconnect is not None:
                self._on_disconnect()
            if not ws.closed:
                await ws.close()
        if not self._stopping:
            log.warning(
                "ARI events websocket closed (code %s); events are lost until it is back",
                ws.close_code,
                extra=self._extra,
            )
        return received > 0 or loop.time() - started >= self._stable_after, True

    async def _consume(self, ws: aiohttp.ClientWebSocketResponse) -> int:
        """The single consumer loop; returns the number of frames received."""
        frames = 0
        while not self._stopping:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                frames += 1
                await self._dispatch(msg.data)
                if frames % YIELD_EVERY == 0:
                    # A burst of buffered frames would otherwise run in one loop step while the
                    # replies to our REST requests wait: let them in.
                    await asyncio.sleep(0)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                frames += 1
                self.stats["malformed_events"] += 1
                log.warning("ignoring a binary frame on the ARI events websocket", extra=self._extra)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                log.warning("ARI events websocket error: %s", type(msg.data).__name__, extra=self._extra)
                break
            else:  # CLOSE, CLOSING, CLOSED
                break
        return frames

    async def _dispatch(self, text: str) -> None:
        if self._types is not None:
            leading = _LEADING_TYPE.match(text)
            if leading is not None and leading.group(1) not in self._types:
                self.stats["events"] += 1
                self.stats["ignored_events"] += 1
                return
        try:
            try:
                data = json.loads(text)
            except (ValueError, UnicodeDecodeError) as exc:
                raise MalformedEvent(f"ARI event is not valid JSON: {exc}") from None
            if self._types is not None and isinstance(data, dict) and data.get("type") not in self._types:
                self.stats["events"] += 1
                self.stats["ignored_events"] += 1
                return
            event = parse_event(data)
        except MalformedEvent as exc:
            self.stats["malformed_events"] += 1
            log.warning("ignoring a malformed ARI event: %s", exc, extra=self._extra)
            return
        self.stats["events"] += 1
        extra = {**self._extra, "ari_event_type": event.type}
        if isinstance(event, ApplicationReplacedEvent):
            log.error(
                "another controller connected to ARI app %r and took over; this one stops",
                self._client.app,
                extra=extra,
            )
            raise ApplicationReplaced(self._client.app)
        if not is_known(event):
            self.stats["unknown_events"] += 1
            log.debug(
                "ARI event type %s has no typed model; passing it on as a plain Event",
                event.type,
                extra=extra,
            )
        try:
            await self._handler(event)
        except Exception:
            self.stats["handler_errors"] += 1
            log.exception(
                "event handler failed on %s; continuing with the next event", event.type, extra=extra
            )
