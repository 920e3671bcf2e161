"""Reaction times for benchmarks and ``/metrics``: event handled -> ARI request sent.

A mark is set when an event is fed; it is closed when the first request it caused goes out (the
dial of an offer, the bridge of an answer). A call that only waits in line is not a reaction.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controller.acd import events as ev

if TYPE_CHECKING:
    from controller.telephony.shell import Telephony


@dataclass
class Reactions:
    """Controller reaction times (seconds); bounded."""

    stasis_to_dial: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    answer_to_bridge: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    decline_to_next_dial: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class ReactionTiming:
    """Mixin of ``Telephony``: ``_timed`` feeds an event and opens a mark; ``_reaction_done`` closes it."""

    def _timed(self: Telephony, call_id: str, what: str, event: ev.Event) -> None:
        self._marks[call_id] = (what, time.perf_counter())
        self._acted.clear()
        self.feed(event)
        if call_id not in self._acted:
            self._marks.pop(call_id, None)

    def _reaction_done(self: Telephony, call_id: str, what: str) -> None:
        mark = self._marks.get(call_id)
        if mark is None or mark[0] != what:
            return
        del self._marks[call_id]
        elapsed = time.perf_counter() - mark[1]
        call = self.engine.calls.get(call_id)
        offer_count = call.offer_count if call is not None else 0
        if what == "bridge":
            self.reactions.answer_to_bridge.append(elapsed)
        elif offer_count <= 1:
            self.reactions.stasis_to_dial.append(elapsed)
        else:
            self.reactions.decline_to_next_dial.append(elapsed)
