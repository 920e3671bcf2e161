"""SimAsterisk: the simulated Asterisk 22 a test or the demo starts, configures and observes."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from typing import Any

from aiohttp import web

from controller.clock import Clock
from controller.sim.apps import AppRegistry, EventRecord, RestRecord
from controller.sim.callers import Caller
from controller.sim.dialplan import Dialplan
from controller.sim.engine import Engine
from controller.sim.faults import Fault, Faults
from controller.sim.model import Ids, Timestamps
from controller.sim.phones import Answer, BehaviourSpec, Phone
from controller.sim.records import Waiters
from controller.sim.rest import AriHttp
from controller.sim.traffic import TrafficGenerator


class SimAsterisk:
    """A simulated Asterisk 22.10.1 speaking ARI (REST + events websocket) over real HTTP.

    ``clock``: shared Clock (speed factor); ``seed``: ids and random choices; ``user``/``password``:
    ARI credentials; ``epoch``: wall time shown in timestamps/ids at clock 0 (default: now);
    ``dialplan``: ``{"101": ("acd", ["support"])}`` (the default); ``event_log_size``: events kept in
    ``event_log``; ``record_limit``: keep only the last N callers (``calls``) and INVITEs per phone
    (None: keep all -- set it for long demo runs).
    """

    version = "22.10.1"

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        user: str = "asterisk",
        password: str = "asterisk",
        asterisk_id: str = "02:fc:00:00:00:01",
        epoch: float | None = None,
        sip_host: str = "127.0.0.1",
        dialplan: dict[str, Any] | None = None,
        sound_durations: dict[str, float] | None = None,
        default_sound_duration: float = 1.0,
        event_log_size: int = 20_000,
        record_limit: int | None = None,
        stasis_entry_delay: float = 0.0,
        event_delay: float = 0.0,
        duplicate_channel_events: bool = True,
        add_waits_for_playback: bool = True,
        users: dict[str, str] | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.seed = seed
        self.user = user
        self.password = password
        # every ARI user (ari.conf may have several): user -> password; REST records and
        # websockets say which one authenticated (``RestRecord.user``, ``ws_log``)
        self.users = {user: password} | dict(users or {})
        self.ws_log: deque[tuple[float, str, tuple[str, ...]]] = deque(maxlen=event_log_size)
        self.asterisk_id = asterisk_id
        self.sip_host = sip_host
        self.ids = Ids(seed)
        self.ts = Timestamps(self.clock, time.time() if epoch is None else epoch)
        self.started_wall = self.ts.wall()
        self._waiters = Waiters(self.clock)
        self.apps = AppRegistry(self.clock.now, event_log_size)
        self.dialplan = Dialplan(dialplan if dialplan is not None else {"101": ("acd", ["support"])})
        self.engine = Engine(
            clock=self.clock,
            ids=self.ids,
            ts=self.ts,
            apps=self.apps,
            asterisk_id=asterisk_id,
            sip_host=sip_host,
            dialplan=self.dialplan,
            sound_durations=sound_durations or {},
            default_sound_duration=default_sound_duration,
            changed=self._waiters.check,
        )
        self.engine.stasis_entry_delay = stasis_entry_delay
        self.engine.duplicate_channel_events = duplicate_channel_events
        self.engine.add_waits_for_playback = add_waits_for_playback
        self.apps.event_delay = event_delay
        self.apps.schedule = self.engine.later
        self.faults = Faults()
        self.rest_log: deque[RestRecord] = deque(maxlen=event_log_size)
        self.phones: dict[str, Phone] = {}
        self.record_limit = record_limit
        self.calls: MutableSequence[Caller] = self.new_record_list()
        self.http = AriHttp(self)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.apps.listeners.append(self._on_event)

    def new_record_list(self) -> MutableSequence[Any]:
        """A list, or a bounded deque when ``record_limit`` is set."""
        return [] if self.record_limit is None else deque(maxlen=self.record_limit)

    @property
    def stasis_entry_delay(self) -> float:
        """Clock seconds from a ``/channels/create`` 200 to that channel's StasisStart (default 0:
        right after the 200). Until then dial/play/answer/... on it get 409 ``Channel not in
        Stasis application`` and change nothing; DELETE works."""
        return self.engine.stasis_entry_delay

    @stasis_entry_delay.setter
    def stasis_entry_delay(self, value: float) -> None:
        self.engine.stasis_entry_delay = value

    @property
    def event_delay(self) -> float:
        """Clock seconds every event takes to reach the websockets (default 0). REST answers are not
        delayed, so e.g. a dial's 204 arrives before the channel's StasisStart."""
        return self.apps.event_delay

    @event_delay.setter
    def event_delay(self, value: float) -> None:
        self.apps.event_delay = value

    @property
    def duplicate_channel_events(self) -> bool:
        """True: an app subscribed to a channel AND to its endpoint gets that channel's events twice,
        as Asterisk 22 does (res/stasis/app.c: the channel's topic is forwarded to the app and to
        the endpoint's topic, which is forwarded to the app too; nothing de-duplicates). On by
        default, as Asterisk; StasisStart/StasisEnd and bridge events come once."""
        return self.engine.duplicate_channel_events

    @duplicate_channel_events.setter
    def duplicate_channel_events(self, value: bool) -> None:
        self.engine.duplicate_channel_events = value

    @property
    def add_waits_for_playback(self) -> bool:
        """True: ``addChannel`` of a channel that is playing moves the other channels at once and
        answers only when that playback ends (then adds the channel), as Asterisk 22 does
        (confirm_dtmf_during_prompt.json). On by default, as Asterisk."""
        return self.engine.add_waits_for_playback

    @add_waits_for_playback.setter
    def add_waits_for_playback(self, value: bool) -> None:
        self.engine.add_waits_for_playback = value

    def refuse_websockets(self, seconds: float | None = None, status: int = 503) -> Fault:
        """Answer new ``/ari/events`` upgrades with ``status`` (for ``seconds`` clock s, or until
        ``sim.faults.remove(fault)``); open sockets stay. See also ``drop_connections``."""
        fault = self.faults.add("GET", "/events", status=status, times=None)
        if seconds is not None:

            def lift() -> None:
                self.faults.remove(fault)
                self._waiters.check()

            self.engine.later(seconds, lift)
        return fault

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve ARI on host:port (0 = any free port). Returns ``http://host:port``."""
        # keepalive 15 s: Asterisk closes an idle HTTP connection after http.conf's session_keep_alive
        # (main/http.c DEFAULT_SESSION_KEEP_ALIVE 15000 ms); aiohttp's own default would keep it 75 s
        self._runner = web.AppRunner(
            self.http.build(), access_log=None, handle_signals=False, keepalive_timeout=15.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        bound = server.sockets[0].getsockname()  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{bound[1]}"
        return self.base_url

    async def stop(self) -> None:
        """Close every websocket and the HTTP server; pending phone/caller timers are cancelled."""
        for ch in list(self.engine.channels.values()):
            if ch.dial_timer is not None:
                ch.dial_timer.cancel()
            if ch.stasis_pending is not None:
                ch.stasis_pending.cancel()
        for pb in self.engine.playbacks.values():
            if pb.timer is not None:
                pb.timer.cancel()
        for call in self.calls:
            call._cancel_timers()
        for phone in self.phones.values():
            for invite in phone.invites:
                invite._cancel_timers()
        await self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimAsterisk:
        if not self.base_url:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ari_url(self) -> str:
        """``http://host:port/ari``"""
        return f"{self.base_url}/ari"

    def ws_url(self, app: str = "acd", subscribe_all: bool = False) -> str:
        url = self.base_url.replace("http://", "ws://", 1)
        extra = "&subscribeAll=true" if subscribe_all else ""
        return f"{url}/ari/events?app={app}&api_key={self.user}:{self.password}{extra}"

    # -- configuration ------------------------------------------------------------------------------------
    def add_phone(
        self,
        name: str,
        behaviour: BehaviourSpec | None = None,
        *,
        registered: bool = True,
        display_name: str | None = None,
        number: str | None = None,
        context: str = "from-agents",
        honor_auto_answer: bool = False,
    ) -> Phone:
        """An agent phone on endpoint ``PJSIP/<name>``; its channels' caller id is
        ``display_name`` (default ``agent1`` -> ``Agent 1``) / ``number`` (default the name)."""
        phone = Phone(
            self,
            name,
            behaviour if behaviour is not None else Answer(),
            registered=registered,
            display_name=display_name,
            number=number,
            context=context,
            honor_auto_answer=honor_auto_answer,
        )
        self.phones[name] = phone
        return phone

    def place_call(
        self,
        exten: str = "101",
        caller_number: str = "5551234",
        caller_name: str = "Maria",
        *,
        headers: dict[str, str] | None = None,
        hangup_after: float | None = None,
        hangup_after_answer: float | None = None,
        talk_time: float | None = None,
        dtmf: Sequence[tuple[float, str]] = (),
        endpoint: str = "customer",
        delay: float = 0.0,
        via_local: bool = False,
    ) -> Caller:
        """A customer dials ``exten`` now (or after ``delay`` clock seconds). See Caller for the behaviour.

        ``via_local``: the call reaches the extension through ``Dial(Local/<exten>@<context>)``; the
        app sees only the Local ``;2`` channel (``caller.channel_id``; the PJSIP one is
        ``caller.sip_channel_id``). A dialplan entry like ``"NoOp, Dial(Local/101@from-customer)"``
        does the same for a given extension."""
        caller = Caller(
            self,
            exten=exten,
            caller_number=caller_number,
            caller_name=caller_name,
            headers=headers or {},
            hangup_after=hangup_after,
            hangup_after_answer=hangup_after_answer,
            talk_time=talk_time,
            dtmf=dtmf,
            endpoint=endpoint,
            via_local=via_local,
        )
        self.calls.append(caller)
        if delay > 0:
            self.engine.later(delay, caller.place)
        else:
            caller.place()
        return caller

    def traffic(self, *, rate: float, seed: int | None = None, **kwargs: Any) -> TrafficGenerator:
        """A Poisson traffic generator bound to this sim (not started). See TrafficGenerator."""
        return TrafficGenerator(self, rate=rate, seed=self.seed if seed is None else seed, **kwargs)

    async def drop_connections(self, app: str | None = None, *, refuse_for: float | None = None) -> None:
        """Close the events websocket(s) server-side (all, or those serving ``app``); with
        ``refuse_for`` new websocket connections are refused (503) for that many clock seconds."""
        if refuse_for is not None:
            self.refuse_websockets(refuse_for)
        conns = [c for c in list(self.http.connections) if app is None or app in c.apps]
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        for conn in conns:
            self.apps.deactivate(conn)
        self._waiters.check()

    # -- observation ----------------------------------------------------------------------------------------
    @property
    def event_log(self) -> list[EventRecord]:
        """Every event produced for an app, in order (``delivered`` False when no socket was there)."""
        return list(self.apps.log)

    def events(
        self, app: str | None = None, types: str | Iterable[str] | None = None, *, delivered_only: bool = True
    ) -> list[dict[str, Any]]:
        """Parsed events, filtered by app and type(s)."""
        wanted = {types} if isinstance(types, str) else set(types) if types is not None else None
        return [
            rec.data
            for rec in self.apps.log
            if (app is None or rec.app == app)
            and (wanted is None or rec.type in wanted)
            and (rec.delivered or not delivered_only)
        ]

    def app_active(self, app: str = "acd") -> bool:
        found = self.apps.get(app)
        return found is not None and found.active

    async def wait_for(self, pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:  # noqa: ASYNC109 (clock seconds)
        """Wait (clock seconds) until ``pred()`` is truthy; re-checked on every sim change and event."""
        return await self._waiters.wait(pred, timeout, what)

    async def wait_for_event(
        self,
        type_: str,
        *,
        app: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 (clock seconds)
        after: int = 0,
    ) -> dict[str, Any]:
        """The first logged event of ``type_`` (at log index >= ``after``) matching ``where``."""

        def find() -> dict[str, Any] | None:
            for rec in list(self.apps.log)[after:]:
                if (
                    rec.type == type_
                    and (app is None or rec.app == app)
                    and (where is None or where(rec.data))
                ):
                    return rec.data
            return None

        return await self._waiters.wait(find, timeout, f"event {type_}")

    def _on_event(self, rec: EventRecord) -> None:
        self._waiters.check()

    @property
    def channels(self) -> dict[str, Any]:
        return self.engine.channels

    @property
    def bridges(self) -> dict[str, Any]:
        return self.engine.bridges
