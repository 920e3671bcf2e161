"""Simulated customers calling an extension: the caller's behaviour and what it experienced.

Hanging up before answer is a CANCEL (ChannelHangupRequest cause 127 / tech_cause 487); after answer
a BYE (no cause, or cause 16 while talking to an agent in a mixing bridge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from controller.sim.records import PartyRecord

if TYPE_CHECKING:
    from asyncio import TimerHandle

    from controller.sim.model import Channel
    from controller.sim.server import SimAsterisk


class Caller(PartyRecord):
    """A customer's call and its record.

    Behaviour: ``hangup_after`` (patience, from placing the call, whatever happens), ``hangup_after_answer``,
    ``talk_time`` (BYE that long after being bridged with an agent), ``dtmf_plan`` ((seconds after
    answer, digits), ...). Without any of them the caller stays until Asterisk hangs up.

    ``outcome``: ``ringing`` (in Stasis, not answered), ``answered``, ``abandoned`` (cancelled
    before answer), ``hung_up`` (BYE by the caller), ``disconnected`` (hung up by Asterisk/the
    controller: ``hangup_cause``, ``bye_reasons``, ``sip_final``), ``continued`` (``continued_to`` =
    (context, exten, priority)), ``refused`` (no app/websocket: 603 with ``Q.850;cause=16``, the
    dialplan fell through to ``fallback``), ``no_route`` (404, extension unknown).
    """

    def __init__(
        self,
        sim: SimAsterisk,
        *,
        exten: str,
        caller_number: str,
        caller_name: str,
        headers: dict[str, str],
        hangup_after: float | None,
        hangup_after_answer: float | None,
        talk_time: float | None,
        dtmf: Sequence[tuple[float, str]],
        endpoint: str,
        via_local: bool = False,
    ) -> None:
        super().__init__(sim.clock, sim._waiters)
        self._sim = sim
        self._engine = sim.engine
        self.exten = exten
        self.caller_number = caller_number
        self.caller_name = caller_name
        self.headers = dict(headers)
        self.hangup_after = hangup_after
        self.hangup_after_answer = hangup_after_answer
        self.talk_time = talk_time
        self.dtmf_plan = tuple(dtmf)
        self.endpoint_name = endpoint
        self.via_local = via_local
        self.label = caller_number or caller_name
        self.placed_at: float | None = None
        self.outcome = "pending"
        self.sip_final: int | None = None
        self.final_reasons: list[str] = []
        self.bye_reasons: list[str] = []
        self.hangup_cause: int | None = None
        self.ended_by: str | None = None
        self.continued_to: tuple[str, str, int] | None = None
        self.fallback: tuple[str, str, int] | None = None
        self.sip_channel_id = ""
        self._timers: list[TimerHandle] = []

    def __repr__(self) -> str:
        return f"<Caller {self.caller_number} -> {self.exten} {self.outcome} {self.channel_id}>"

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    @property
    def channel(self) -> Channel | None:
        ch = self._channel
        return ch if ch is not None and not ch.hung else None

    # -- caller actions -------------------------------------------------------------------------------
    def place(self) -> None:
        """The INVITE reaches Asterisk now."""
        self.placed_at = self.clock.now()
        self.outcome = "ringing"
        ch = self._engine.inbound(self)
        if ch is not None and not self.ended and self.hangup_after is not None:
            self._later(self.hangup_after, self.hangup)
        self._changed()

    def hangup(self) -> None:
        """CANCEL before answer, BYE after."""
        ch = self._channel
        if ch is None or ch.hung or self.ended:
            return
        if self.answered_at is None:
            if self.outcome != "continued":
                self.outcome = "abandoned"
            self.sip_final = 487
            self.final_reasons = ["Q.850;cause=0"]
            self._finish("caller")
            self._engine.remote_cancel(ch)
        else:
            if self.outcome != "continued":
                self.outcome = "hung_up"
            self._finish("caller")
            self._engine.remote_bye(ch)

    def send_dtmf(self, digits: str, duration_ms: int = 200) -> None:
        ch = self._channel
        for i, digit in enumerate(digits):
            self._later(i * (duration_ms / 1000 + 0.1), self._dtmf_now, ch, digit, duration_ms)

    def _dtmf_now(self, ch: Channel, digit: str, duration_ms: int) -> None:
        if not ch.hung and self.answered_at is not None:
            self._engine.remote_dtmf(ch, digit, duration_ms)

    # -- engine callbacks -----------------------------------------------------------------------------
    def attach(self, ch: Channel) -> None:
        self._channel = ch
        self.channel_id = ch.id
        self.channel_name = ch.name

    def app_channel(self, ch: Channel) -> None:
        """The call reaches Stasis as another channel (a Local ;2): ``channel_id`` is the one the app sees,
        ``sip_channel_id`` the caller's own PJSIP channel."""
        self.sip_channel_id = self.channel_id
        self.channel_id = ch.id
        self.channel_name = ch.name

    def on_answered(self) -> None:
        self.answered_at = self.clock.now()
        if self.outcome == "ringing":
            self.outcome = "answered"
        if self.hangup_after_answer is not None:
            self._later(self.hangup_after_answer, self.hangup)
        for delay, digits in self.dtmf_plan:
            self._later(delay, self.send_dtmf, digits)
        self._changed()

    def media_start(self, peer: str, peer_channel: str) -> None:
        super().media_start(peer, peer_channel)
        if self.talk_time is not None:
            self._later(self.talk_time, self._talk_over, len(self.media))

    def _talk_over(self, segment_count: int) -> None:
        if len(self.media) == segment_count and self.media[-1].end is None:
            self.hangup()

    def refused(self, fallback: tuple[str, str, int]) -> None:
        self.outcome = "refused"
        self.sip_final = 603
        self.final_reasons = ["Q.850;cause=16"]
        self.hangup_cause = 16
        self.fallback = fallback
        self._finish("asterisk")

    def remote_final(self, code: int, reasons: list[str], cause: int, outcome: str = "disconnected") -> None:
        if self.ended:
            return
        self.outcome = outcome
        self.sip_final = code
        self.final_reasons = list(reasons)
        self.hangup_cause = cause
        self._finish("asterisk")

    def remote_bye(self, reasons: list[str], cause: int) -> None:
        if self.ended:
            return
        if self.outcome != "continued":
            self.outcome = "disconnected"
        self.sip_final = 200
        self.bye_reasons = list(reasons)
        self.hangup_cause = cause
        self._finish("asterisk")

    def cancelled(self, reasons: list[str]) -> None:
        self.remote_bye(reasons, 0)

    def continued(self, target: tuple[str, str, int]) -> None:
        self.outcome = "continued"
        self.continued_to = target
        self._close_spans()
        self._changed()

    def channel_gone(self) -> None:
        if not self.ended:
            self._finish("asterisk")

    # -- internals ------------------------------------------------------------------------------------
    def _later(self, delay: float, cb: Callable[..., Any], *args: Any) -> None:
        self._timers.append(self._engine.later(delay, cb, *args))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _finish(self, by: str) -> None:
        self._cancel_timers()
        if self.ended_by is None:
            self.ended_by = by
        self.ended_at = self.clock.now()
        self._close_spans()
        self._changed()
