"""Per-key ordered execution of ARI requests without blocking the event consumer.

The events websocket has one consumer; if it awaited every REST call, one slow request would
delay every other call's reaction. Instead each command becomes a job on a *lane*: jobs of the
same lane (one customer, or one agent leg) run strictly in order — a leg is never hung up
before its create request returned — while different lanes run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger("controller.telephony.lanes")

Job = Callable[[], Awaitable[None]]


class Lanes:
    def __init__(self) -> None:
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.started = 0  # lanes started so far: the event consumer yields after an event that started one

    def submit(self, lane: str, job: Job) -> None:
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = deque()
            self.started += 1
            task = asyncio.get_running_loop().create_task(self._run(lane, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append(job)

    async def _run(self, lane: str, queue: deque[Job]) -> None:
        try:
            while queue:
                job = queue.popleft()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.failures += 1
                    log.exception("ARI job failed", extra={"lane": lane})
        finally:
            self._queues.pop(lane, None)

    def busy(self) -> int:
        return len(self._queues)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for queued jobs (used at shutdown and by tests)."""
        try:
            async with asyncio.timeout(timeout):
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        except TimeoutError:
            log.warning("%d ARI lanes still busy at shutdown", len(self._tasks))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
