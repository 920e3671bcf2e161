"""How an offer ended, from the agent leg's Q.850 cause and SIP code.

Observed on Asterisk 22 (see shared/ari-api-docs/BEHAVIOUR.md): a 603 decline gives cause 21,
486 busy gives 17, a 480 (do-not-disturb) gives 19/480, and Asterisk's own dial timeout gives
the *same* ChannelDestroyed 19/480 — only the preceding soft hangup request tells them apart,
which the shell reports as ``dial_timeout``.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNREACHABLE = "unreachable"  # includes "unavailable" (DND 480): the phone will not take calls
    CANCELED = "canceled"  # not the agent's doing: caller gone, answered elsewhere, overflow…
    # Never produced by the engine: the next controller closes the row of an offer whose leg it
    # found ringing and hung up, or found gone, after the controller that rang it died
    # (detail ``takeover`` or ``restart``; controller/store/books.py).
    INTERRUPTED = "interrupted"


_REJECT_CAUSES = {21}
_REJECT_SIP = {603}
_BUSY_CAUSES = {17}
_BUSY_SIP = {486, 600}
_UNREACHABLE_CAUSES = {1, 3, 18, 20, 27, 34, 38, 41, 42, 47, 58, 127}
_UNREACHABLE_SIP = {404, 408, 410, 480, 482, 483, 484, 488, 500, 502, 503, 504}


def classify_leg_end(
    cause: int | None,
    tech_cause: int | None,
    *,
    dial_timeout: bool = False,
    allocation_failed: bool = False,
) -> tuple[Outcome, str]:
    """Map an agent leg that ended before being accepted to (outcome, detail).

    ``detail`` refines the outcome for history ("dnd" for 480, "allocation_failed", …).
    """
    if allocation_failed:
        return Outcome.UNREACHABLE, "allocation_failed"
    if dial_timeout:
        return Outcome.NO_ANSWER, "dial_timeout"
    if cause in _REJECT_CAUSES or tech_cause in _REJECT_SIP:
        return Outcome.REJECTED, "declined"
    if cause in _BUSY_CAUSES or tech_cause in _BUSY_SIP:
        return Outcome.BUSY, "busy"
    if cause == 19:
        # 19 with a 480 from the phone is do-not-disturb; a bare 19 is a plain no-answer.
        if tech_cause == 480:
            return Outcome.UNREACHABLE, "unavailable"
        return Outcome.NO_ANSWER, "no_answer"
    if cause in _UNREACHABLE_CAUSES or tech_cause in _UNREACHABLE_SIP:
        return Outcome.UNREACHABLE, "unreachable"
    # Anything else (0, 16 …) before an accept: the leg vanished without the agent saying
    # no — treat as unreachable so the agent gets the short unreachable delay.
    return Outcome.UNREACHABLE, f"cause_{cause}" if cause is not None else "unknown"
