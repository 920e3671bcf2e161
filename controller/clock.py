"""Time for the I/O shell: real, or sped up for the simulator, demo and tests.

The engine never reads a clock; the shell passes ``clock.now()`` into every ``handle`` call.
Everything that waits (controller timers, simulated phones) goes through one ``Clock`` so a
sped-up run stays consistent: 15 s of ring timeout at speed 10 takes 1.5 s of wall time.
"""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Monotonic clock in seconds. ``speed`` > 1 makes simulated time run faster."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be > 0")
        self.speed = speed
        self._origin = time.monotonic()
        self._wall_origin = time.time() - (time.monotonic() - self._origin)

    def to_wall(self, at: float) -> float:
        """Unix time at which clock time ``at`` happens (or happened), for people's screens."""
        return self._wall_origin + at / self.speed

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    def wall_delay(self, seconds: float) -> float:
        """Wall-clock seconds that correspond to ``seconds`` of clock time."""
        return max(0.0, seconds) / self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.wall_delay(seconds))

    def call_at(self, when: float, callback, *args) -> asyncio.TimerHandle:
        """Schedule ``callback`` at clock time ``when`` on the running loop."""
        loop = asyncio.get_running_loop()
        return loop.call_later(self.wall_delay(when - self.now()), callback, *args)
