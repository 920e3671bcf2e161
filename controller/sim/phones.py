"""Simulated agent phones: registration, a behaviour per INVITE, and a record of every INVITE.

A behaviour says what the phone does with one call: ``Answer(after=1)``, ``Decline()`` (603),
``Busy()`` (486), ``DND()`` (480), ``NoAnswer()`` (rings until CANCEL / dial timeout) or ``Dead()``
(registered but never responds, like a phone that died without unregistering). A phone takes one
behaviour, a sequence (call i uses item i, the last one repeats) or a callable ``f(invite)``.
An unregistered phone makes ``/channels/create`` fail with 500 ``Allocation failed``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from controller.sim.engine import auto_answer_headers
from controller.sim.records import PartyRecord

if TYPE_CHECKING:
    from asyncio import TimerHandle

    from controller.sim.model import Channel
    from controller.sim.server import SimAsterisk


@dataclass(frozen=True)
class Answer:
    """Ring, answer ``after`` s after the INVITE; optionally BYE ``hangup_after`` s after answering and
    press DTMF: ``dtmf=((1.0, "1"),)`` sends digit 1 one second after answering."""

    after: float = 0.5
    hangup_after: float | None = None
    dtmf: tuple[tuple[float, str], ...] = ()
    dtmf_duration_ms: int = 200
    ring_delay: float = 0.0


@dataclass(frozen=True)
class Reject:
    """Ring (unless ``ring=False``), then reject with ``code`` ``after`` s after the INVITE."""

    code: int = 603
    after: float = 1.0
    ring: bool = True
    ring_delay: float = 0.0


@dataclass(frozen=True)
class Decline(Reject):
    """603 Decline -> ChannelHangupRequest/ChannelDestroyed cause 21 tech_cause 603."""

    code: int = 603


@dataclass(frozen=True)
class Busy(Reject):
    """486 Busy Here -> cause 17 tech_cause 486."""

    code: int = 486


@dataclass(frozen=True)
class DND(Reject):
    """480 Temporarily Unavailable (do not disturb) -> cause 19 tech_cause 480."""

    code: int = 480


@dataclass(frozen=True)
class NoAnswer:
    """Ring until Asterisk gives up (dial timeout) or cancels. Tests may still call ``invite.answer()``."""

    ring_delay: float = 0.0


@dataclass(frozen=True)
class Dead:
    """Registered but gone: no 100/180, nothing; only the dial timeout ends the attempt."""


Behaviour = Union[Answer, Reject, NoAnswer, Dead]  # noqa: UP007 - a runtime alias, not an annotation
BehaviourSpec = Union[Behaviour, Sequence[Behaviour], Callable[["Invite"], Behaviour]]  # noqa: UP007
_BEHAVIOURS = (Answer, Reject, NoAnswer, Dead)


class Invite(PartyRecord):
    """One INVITE a phone received and what became of it.

    ``outcome``: ``trying`` (no answer yet, Dead phones stay here), ``ringing``, ``answered``,
    ``rejected`` (``final_code`` 603/486/480), ``cancelled`` (487; ``cancel_reasons`` holds the
    CANCEL's Reason headers), ``ended`` (BYE after answer; ``ended_by`` ``phone`` or ``asterisk``).
    """

    def __init__(self, phone: Phone, ch: Channel, info: dict[str, Any], behaviour: Behaviour) -> None:
        super().__init__(phone._sim.clock, phone._sim._waiters)
        self.phone = phone.name
        self.label = phone.name
        self._phone = phone
        self._channel = ch
        self.channel_id = ch.id
        self.channel_name = ch.name
        self.at = self.clock.now()
        self.from_name: str = info["from_name"]
        self.from_number: str = info["from_number"]
        self.from_header: str = info["from_header"]
        self.p_asserted_identity: str | None = info["p_asserted_identity"]
        self.remote_party_id: str | None = info["remote_party_id"]
        self.headers: dict[str, str] = info["headers"]
        self.auto_answer_headers = auto_answer_headers(self.headers)
        self.auto_answer = bool(self.auto_answer_headers)
        self.behaviour = behaviour
        self.outcome = "trying"
        self.ringing_at: float | None = None
        self.final_code: int | None = None
        self.cancel_reasons: list[str] = []
        self.bye_reasons: list[str] = []
        self.ended_by: str | None = None
        self.hangup_cause: int | None = None
        self._timers: list[TimerHandle] = []

    def __repr__(self) -> str:
        return f"<Invite {self.phone} {self.channel_id} {self.outcome} from={self.from_header!r}>"

    @property
    def display(self) -> tuple[str, str]:
        """(display name, user part) the phone shows: ``("Maria", "5551234")``."""
        return (self.from_name, self.from_number)

    @property
    def talk_time(self) -> float:
        return sum((seg.end if seg.end is not None else self.clock.now()) - seg.start for seg in self.media)

    # -- actions of the phone (also callable from tests) ------------------------------------------
    def ring(self) -> None:
        if self.outcome != "trying":
            return
        self.outcome = "ringing"
        self.ringing_at = self.clock.now()
        self._changed()
        self._phone._engine.remote_ringing(self._channel)

    def answer(self) -> None:
        if self.outcome not in ("trying", "ringing"):
            return
        self.outcome = "answered"
        self.final_code = 200
        self.answered_at = self.clock.now()
        self._changed()
        self._phone._engine.remote_answer(self._channel)
        b = self.behaviour
        if isinstance(b, Answer) and not self.ended:
            if b.hangup_after is not None:
                self._later(b.hangup_after, self.hangup)
            for delay, digits in b.dtmf:
                for i, digit in enumerate(digits):
                    self._later(
                        delay + i * (b.dtmf_duration_ms / 1000 + 0.1),
                        self.send_dtmf,
                        digit,
                        b.dtmf_duration_ms,
                    )

    def reject(self, code: int = 603) -> None:
        if self.outcome not in ("trying", "ringing"):
            return
        self.outcome = "rejected"
        self.final_code = code
        self._finish("phone")
        self._phone._engine.remote_reject(self._channel, code)

    def hangup(self) -> None:
        """BYE after answering."""
        if self.outcome != "answered":
            return
        self.outcome = "ended"
        self._finish("phone")
        self._phone._engine.remote_bye(self._channel)

    def send_dtmf(self, digit: str, duration_ms: int = 200) -> None:
        if self.outcome == "answered":
            self._phone._engine.remote_dtmf(self._channel, digit, duration_ms)

    # -- engine callbacks ---------------------------------------------------------------------------
    def cancelled(self, reasons: list[str]) -> None:
        if self.ended:
            return
        self.outcome = "cancelled"
        self.final_code = 487
        self.cancel_reasons = list(reasons)
        self._finish("asterisk")

    def remote_bye(self, reasons: list[str], cause: int) -> None:
        if self.ended:
            return
        self.outcome = "ended"
        self.bye_reasons = list(reasons)
        self.hangup_cause = cause
        self._finish("asterisk")

    def remote_final(self, code: int, reasons: list[str], cause: int, outcome: str = "") -> None:
        self.remote_bye(reasons, cause)

    def on_answered(self) -> None:
        pass

    def channel_gone(self) -> None:
        if not self.ended:
            if self.outcome in ("trying", "ringing"):
                self.outcome = "cancelled"
            self._finish("asterisk")

    # -- internals ----------------------------------------------------------------------------------
    def _later(self, delay: float, cb: Callable[..., Any], *args: Any) -> None:
        self._timers.append(self._phone._engine.later(delay, cb, *args))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _finish(self, by: str) -> None:
        self._cancel_timers()
        self.ended_by = by
        self.ended_at = self.clock.now()
        self._close_spans()
        self._changed()
        self._phone._changed()


class Phone:
    """A SIP phone registered (or not) as ``PJSIP/<name>``."""

    def __init__(
        self,
        sim: SimAsterisk,
        name: str,
        behaviour: BehaviourSpec,
        *,
        registered: bool,
        display_name: str | None,
        number: str | None,
        context: str,
        honor_auto_answer: bool,
    ) -> None:
        self._sim = sim
        self._engine = sim.engine
        self.name = name
        self.behaviour: BehaviourSpec = behaviour
        self.display_name = display_name if display_name is not None else _default_display(name)
        self.number = number if number is not None else name
        self.context = context
        self.honor_auto_answer = honor_auto_answer
        self.invites: MutableSequence[Invite] = sim.new_record_list()
        self.invite_count = 0
        self.endpoint = self._engine.endpoint("PJSIP", name)
        if self.endpoint.phone is not None:
            raise ValueError(f"phone {name!r} already exists")
        self.endpoint.phone = self
        self.endpoint.contact_uri = f"sip:{name}@{sim.sip_host}:{sim.ids.port()};ob"
        if registered:
            self.register()

    def __repr__(self) -> str:
        return f"<Phone {self.name} {'registered' if self.registered else 'offline'}>"

    @property
    def registered(self) -> bool:
        return self.endpoint.state == "online"

    def register(self) -> None:
        """REGISTER: the endpoint goes online (events for subscribed apps)."""
        self._engine.endpoint_registered(self.endpoint)

    def unregister(self) -> None:
        """REGISTER with Expires: 0: offline; new offers fail with Allocation failed."""
        self._engine.endpoint_unregistered(self.endpoint)

    @property
    def last_invite(self) -> Invite | None:
        return self.invites[-1] if self.invites else None

    @property
    def active_calls(self) -> list[Invite]:
        return [inv for inv in self.invites if not inv.ended]

    async def wait_for_invite(self, count: int = 1, timeout: float = 5.0) -> Invite:  # noqa: ASYNC109 (clock seconds)
        """Wait until the phone has received ``count`` INVITEs in total; returns the latest."""
        await self._sim._waiters.wait(
            lambda: self.invite_count >= count, timeout, f"{count} INVITE(s) on {self.name}"
        )
        return self.invites[count - 1 - (self.invite_count - len(self.invites))]

    def _changed(self) -> None:
        self._sim._waiters.check()

    def _next_behaviour(self, invite_index: int, invite: Invite) -> Behaviour:
        spec = self.behaviour
        if isinstance(spec, _BEHAVIOURS):
            return spec
        if callable(spec):
            return spec(invite)
        seq = list(spec)
        if not seq:
            return NoAnswer()
        return seq[min(invite_index, len(seq) - 1)]

    def receive_invite(self, ch: Channel, info: dict[str, Any]) -> Invite:
        """Called by the engine when Asterisk dials this phone."""
        invite = Invite(self, ch, info, NoAnswer())
        index = self.invite_count
        self.invites.append(invite)
        self.invite_count += 1
        behaviour = self._next_behaviour(index, invite)
        if self.honor_auto_answer and invite.auto_answer and not isinstance(behaviour, Dead):
            behaviour = Answer(after=0.0)
        invite.behaviour = behaviour
        if isinstance(behaviour, Answer):
            invite._later(behaviour.ring_delay, invite.ring)
            invite._later(max(behaviour.after, behaviour.ring_delay), invite.answer)
        elif isinstance(behaviour, Reject):
            if behaviour.ring:
                invite._later(behaviour.ring_delay, invite.ring)
            invite._later(max(behaviour.after, behaviour.ring_delay), invite.reject, behaviour.code)
        elif isinstance(behaviour, NoAnswer):
            invite._later(behaviour.ring_delay, invite.ring)
        invite._changed()
        self._changed()
        return invite


def _default_display(name: str) -> str:
    """``agent1`` -> ``Agent 1`` (the test PBX's callerid for its agents)."""
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    head = head[:1].upper() + head[1:]
    return f"{head} {tail}" if tail and head else head or tail
