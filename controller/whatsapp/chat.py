"""The chat's rules as pure functions: status lattice, sort keys, the 24-hour window.

Status rule: the shown status is the maximum of every report received, in the order
``pending < unknown < sent < failed < delivered < read < played``. That single order encodes
the issue's rules (monotonic; ``read`` without ``delivered`` is fine; ``failed`` applies while
pending/sent; ``failed`` after delivered/read is history only; delivered/read after failed moves
on) and makes :func:`apply_status` commutative and idempotent: any permutation or duplication
of the same reports converges to the same state (the hypothesis tests check exactly that).
When several failures compete, the earliest one (ties: smallest code, then text) is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "STATUS_RANK",
    "WINDOW_SECONDS",
    "MessageState",
    "MetaError",
    "StatusUpdate",
    "apply_status",
    "sort_key",
    "window_open",
]

STATUS_RANK: dict[str, int] = {
    "pending": 0,
    "unknown": 1,
    "sent": 2,
    "failed": 3,
    "delivered": 4,
    "read": 5,
    "played": 6,
}

WINDOW_SECONDS = 24 * 3600


def _int_or_none(value: Any) -> int | None:
    """Meta's error codes are small numbers; anything outside a 32-bit column is no code at all."""
    try:
        code = int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):  # "x", 1e400
        return None
    return code if code is None or -(2**31) <= code < 2**31 else None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True, slots=True)
class MetaError:
    """Every field Meta gives about an error (webhook ``errors[]`` or the send API's ``error``)."""

    code: int | None
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None
    fbtrace_id: str | None = None

    @classmethod
    def from_meta(cls, obj: Any) -> MetaError:
        if not isinstance(obj, dict):
            return cls(None, message=_str_or_none(obj))
        data = obj.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return cls(
            code=_int_or_none(obj.get("code")),
            title=_str_or_none(obj.get("title")),
            message=_str_or_none(obj.get("message")),
            details=_str_or_none(details),
            href=_str_or_none(obj.get("href")),
            fbtrace_id=_str_or_none(obj.get("fbtrace_id")),
        )

    def order_key(self) -> tuple:
        return (
            self.code if self.code is not None else -1,
            self.title or "",
            self.message or "",
            self.details or "",
            self.href or "",
            self.fbtrace_id or "",
        )


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    status: str
    ts: float
    error: MetaError | None = None
    source: str = "webhook"

    def dedupe_key(self, ref: str) -> str:
        code = self.error.code if self.error else ""
        return f"{ref}|{self.status}|{self.ts:.3f}|{code}"


@dataclass(frozen=True, slots=True)
class MessageState:
    status: str = "pending"
    status_ts: float | None = None  # when the message first reached ``status``
    error: MetaError | None = None  # the failure shown on the bubble (only while status == failed)
    error_ts: float | None = None
    error_source: str | None = None


def apply_status(state: MessageState, update: StatusUpdate) -> MessageState:
    """The new state after one status report; unknown status words leave it unchanged."""
    new = STATUS_RANK.get(update.status)
    if new is None:
        return state
    current = STATUS_RANK.get(state.status, 0)
    if new > current:
        if update.status == "failed":
            return MessageState("failed", update.ts, update.error, update.ts, update.source)
        return MessageState(update.status, update.ts)
    if new < current:
        return state
    status_ts = update.ts if state.status_ts is None else min(state.status_ts, update.ts)
    if update.status == "failed" and state.status == "failed":
        # Several failure reports for one message: keep one chosen by content, never by arrival
        # order (a report with an error beats one without; then earliest; then error; then source).
        mine = _failure_key(update.error, update.ts, update.source)
        theirs = _failure_key(state.error, state.error_ts, state.error_source)
        if mine < theirs:
            return MessageState("failed", status_ts, update.error, update.ts, update.source)
    return state if status_ts == state.status_ts else replace(state, status_ts=status_ts)


def _failure_key(error: MetaError | None, ts: float | None, source: str | None) -> tuple:
    when = ts if ts is not None else float("inf")
    return (error is None, when, error.order_key() if error else (), source or "")


def sort_key(event_ts: float, seq: int) -> tuple[float, int]:
    """Chat order: event time (Meta's seconds inbound, send time outbound), ties by arrival."""
    return (event_ts, seq)


def window_open(last_inbound_at: float | None, now: float) -> bool:
    """The customer-service window: 24 h from the customer's last message."""
    return last_inbound_at is not None and now - last_inbound_at < WINDOW_SECONDS
