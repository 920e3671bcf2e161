"""Close the books at start: rows an earlier term (hot standby) or run left open get an end.

A controller that dies leaves rows without an end: offers that were ringing (their row is
written before the phone rings, see ``HistoryWriter.durable``) and calls it was handling. The
next active controller, once its resync took back what Asterisk still has, closes them:

- an offer row without an outcome whose leg it found and hung up, or found gone, gets outcome
  ``interrupted``; one whose leg it found answered and kept (a talking call taken back) gets
  ``accepted``. ``detail``: ``takeover`` (hot standby) or ``restart`` (single node);
- a call row without an outcome, whose customer is not in the app any more and which this term
  did not take back, gets ``completed`` if it had been answered, else ``abandoned``, with
  ``detail = no_controller`` (it ended while no controller was active) and ``ended_at`` = when it
  was found gone.

Rows this term wrote or took back are never touched: the writer collects the ids it sees
(``HistoryWriter.touched``) from its start until the books are closed, and every update is
conditional (``outcome is null``), so a row closed meanwhile keeps its end. In hot-standby mode
the transaction starts with the writer's lease check, so a fenced replica closes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select, update

from controller.store.engine import reading, writing
from controller.store.history import CallRow, OfferRow, as_utc

if TYPE_CHECKING:
    from controller.store.writer import HistoryWriter

__all__ = ["CLOSED_CALL_DETAIL", "Books"]

log = logging.getLogger("controller.store")

CLOSED_CALL_DETAIL = "no_controller"
RETRY_INITIAL, RETRY_MAX = 0.5, 10.0  # wall s between attempts while the database is away


def channel_of(call_id: str) -> str:
    """A call id is its customer channel id, or ``<channel>-r<n>`` for a re-entry."""
    base, sep, n = call_id.rpartition("-r")
    return base if sep and n.isdigit() else call_id


class Books:
    """``start()`` once the controller is resynced; retries until the books are closed.

    What it needs from the controller comes as callables (the store imports no feature):
    ``in_app()`` the customer channel ids in the ARI app now, ``known_calls()`` the call ids the
    controller holds, ``restored`` earlier offer id -> ours for legs found answered and kept.
    """

    def __init__(
        self,
        writer: HistoryWriter,
        *,
        in_app: Callable[[], Awaitable[set[str]]],
        known_calls: Callable[[], set[str]],
        restored: Mapping[str, str],
        now: Callable[[], float],
        detail: str,
        ids_reused: bool,
    ) -> None:
        self.writer = writer
        self.in_app = in_app
        self.known_calls = known_calls
        self.restored = restored
        self.now = now  # engine clock
        self.detail = detail  # "takeover" or "restart"
        # single node: a restarted run reuses the offer ids of a call it takes back (<call>-<n>)
        self.ids_reused = ids_reused
        self.closed: Counter[str] = Counter()
        self.failures = 0  # attempts that failed (database or Asterisk away, fenced)
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="close-books")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = RETRY_INITIAL
        while True:
            try:
                await self.close_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or Asterisk away: try again (rows stay open meanwhile)
                self.failures += 1
                log.warning(
                    "could not close the rows left open by the previous controller; retrying",
                    extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}", "retry_in": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            self.writer.touched = None
            self.done.set()
            return

    async def close_once(self) -> None:
        db, writer = self.writer.db, self.writer
        o, k = OfferRow.__table__.c, CallRow.__table__.c
        async with reading(db) as conn:
            offers = (
                await conn.execute(select(o.id, o.call_id, o.started_at).where(o.outcome.is_(None)))
            ).all()
            calls = (
                await conn.execute(
                    select(k.id, k.arrived_at, k.answered_at).where(and_(k.outcome.is_(None)))
                )
            ).all()
        if not offers and not calls:
            return
        in_app = await self.in_app()
        # after the reads: whatever this term wrote before them is in ``touched``
        touched = set(writer.touched or ())
        known_calls = touched | self.known_calls()
        restored = self.restored
        now = writer.ts(self.now())
        assert now is not None
        offer_ends: list[dict[str, Any]] = []
        for row in offers:
            if row.id in touched or (self.ids_reused and row.call_id in known_calls):
                continue
            outcome = "accepted" if row.id in restored else "interrupted"
            started = as_utc(row.started_at)
            ended = now if started is None else max(now, started)
            offer_ends.append({"id": row.id, "outcome": outcome, "ended_at": ended})
        call_ends: list[dict[str, Any]] = []
        for row in calls:
            if row.id in known_calls or channel_of(row.id) in in_app:
                continue
            arrived, answered = as_utc(row.arrived_at), as_utc(row.answered_at)
            # never before its own start: another replica's (or run's) clock may be ahead of ours
            ended = max(t for t in (now, arrived, answered) if t is not None)
            call_ends.append(
                {
                    "id": row.id,
                    "outcome": "completed" if answered is not None else "abandoned",
                    "ended_at": ended,
                    "wait": _seconds((answered or ended), arrived),
                    "talk": _seconds(ended, answered) if answered is not None else 0.0,
                }
            )
        if not offer_ends and not call_ends:
            return
        counts: Counter[str] = Counter()
        async with writing(db) as conn:
            if writer.guard is not None:
                await writer.guard(conn)  # a fenced former active closes nothing
            for end in offer_ends:
                result = await conn.execute(
                    update(OfferRow.__table__)
                    .where(o.id == end["id"], o.outcome.is_(None))
                    .values(outcome=end["outcome"], detail=self.detail, ended_at=end["ended_at"])
                )
                counts[f"offers_{end['outcome']}"] += result.rowcount
            for end in call_ends:
                result = await conn.execute(
                    update(CallRow.__table__)
                    .where(k.id == end["id"], k.outcome.is_(None))
                    .values(
                        outcome=end["outcome"],
                        detail=CLOSED_CALL_DETAIL,
                        ended_at=end["ended_at"],
                        wait=end["wait"],
                        talk=end["talk"],
                        overflowed=False,
                    )
                )
                counts[f"calls_{end['outcome']}"] += result.rowcount
        self.closed.update(counts)
        log.warning(
            "closed the rows left open by the previous controller",
            extra={"why": self.detail, **counts},
        )


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (later - earlier).total_seconds())
