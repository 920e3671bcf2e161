"""Observation records shared by simulated phones and callers, and condition waits for tests.

Tests never sleep: they ``await record.wait_for(predicate, timeout)`` and the record re-checks the
predicate every time it changes. Timeouts are in clock seconds (a sped-up clock shortens them too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from controller.clock import Clock

T = TypeVar("T")


class Waiters:
    """Predicates waiting for a state change; checked on every change, resolved at most once."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._waiting: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    def check(self) -> None:
        if not self._waiting:
            return
        keep = []
        for pred, fut in self._waiting:
            if fut.done():
                continue
            try:
                value = pred()
            except Exception as exc:  # a broken predicate fails the waiting test, not the sim
                fut.set_exception(exc)
                continue
            if value:
                fut.set_result(value)
            else:
                keep.append((pred, fut))
        self._waiting = keep

    async def wait(self, pred: Callable[[], Any], timeout: float, what: str = "condition") -> Any:  # noqa: ASYNC109 (clock seconds)
        value = pred()
        if value:
            return value
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((pred, fut))
        try:
            return await asyncio.wait_for(fut, self.clock.wall_delay(timeout))
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} clock s waiting for {what}") from None


class Observable:
    """A record that tests can wait on; every change also wakes the sim-wide waiters."""

    def __init__(self, clock: Clock, global_waiters: Waiters) -> None:
        self._waiters = Waiters(clock)
        self._global = global_waiters

    def _changed(self) -> None:
        self._waiters.check()
        self._global.check()

    async def wait_for(self: T, pred: Callable[[T], Any], timeout: float = 5.0) -> T:  # noqa: ASYNC109 (clock seconds)
        """Wait until ``pred(self)`` is true; returns self. Raises TimeoutError."""
        await self._waiters.wait(lambda: pred(self), timeout, f"{self!r}")  # type: ignore[attr-defined]
        return self


@dataclass
class Interval:
    """A span of clock time; ``end`` is None while it lasts."""

    start: float
    end: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass
class MediaSegment:
    """Two-way audio with a peer in a mixing bridge: ``peer`` is the peer's phone name or caller number."""

    peer: str
    peer_channel: str
    start: float
    end: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


class PartyRecord(Observable):
    """What one SIP user agent (a phone's call or a caller) experienced on its channel."""

    label = ""

    def __init__(self, clock: Clock, global_waiters: Waiters) -> None:
        super().__init__(clock, global_waiters)
        self.clock = clock
        self.channel_id = ""
        self.channel_name = ""
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.media: list[MediaSegment] = []
        self.moh: list[Interval] = []
        self.ringback: list[Interval] = []
        self.connected_line: tuple[str, str] | None = None
        self.connected_updates: list[tuple[float, str, str]] = []  # SIP UPDATEs: (t, name, number)
        self.update_pais: list[str] = []  # their P-Asserted-Identity headers
        self.dtmf_received: list[str] = []
        self.playbacks: list[tuple[float, str]] = []
        self._channel: Any = None

    # -- views --------------------------------------------------------------------------------------
    @property
    def bridged_with(self) -> str | None:
        """Label of the current media peer (phone name / caller number), None when not talking."""
        if self.media and self.media[-1].end is None:
            return self.media[-1].peer
        return None

    @property
    def ever_bridged_with(self) -> list[str]:
        return [seg.peer for seg in self.media]

    @property
    def hearing_moh(self) -> bool:
        return bool(self.moh) and self.moh[-1].end is None

    @property
    def hearing_ringback(self) -> bool:
        return bool(self.ringback) and self.ringback[-1].end is None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    # -- engine callbacks ---------------------------------------------------------------------------
    def media_start(self, peer: str, peer_channel: str) -> None:
        self.media.append(MediaSegment(peer, peer_channel, self.clock.now()))
        self._changed()

    def media_end(self) -> None:
        if self.media and self.media[-1].end is None:
            self.media[-1].end = self.clock.now()
            self._changed()

    def audio(self, moh: bool, ringback: bool) -> None:
        now = self.clock.now()
        changed = _toggle(self.moh, moh, now) | _toggle(self.ringback, ringback, now)
        if changed:
            self._changed()

    def connected_update(self, name: str, number: str, pai: str = "") -> None:
        """A SIP UPDATE showing a new connected party (P-Asserted-Identity ``pai``)."""
        self.connected_line = (name, number)
        self.connected_updates.append((self.clock.now(), name, number))
        self.update_pais.append(pai)
        self._changed()

    @property
    def identities_shown(self) -> list[tuple[str, str]]:
        """Every (name, number) this phone was shown as the other party after the call was set up."""
        return [(name, number) for _, name, number in self.connected_updates]

    def dtmf(self, digit: str) -> None:
        self.dtmf_received.append(digit)
        self._changed()

    def playback(self, media: str) -> None:
        self.playbacks.append((self.clock.now(), media))
        self._changed()

    def _close_spans(self) -> None:
        now = self.clock.now()
        _toggle(self.moh, False, now)
        _toggle(self.ringback, False, now)
        if self.media and self.media[-1].end is None:
            self.media[-1].end = now


def _toggle(spans: list[Interval], on: bool, now: float) -> bool:
    is_on = bool(spans) and spans[-1].end is None
    if on and not is_on:
        spans.append(Interval(now))
        return True
    if not on and is_on:
        spans[-1].end = now
        return True
    return False
