"""Waits and timing tolerances for tests on a real event loop and a sped-up clock.

The simulated clock is wall time x speed (``controller.clock.Clock``). On a loaded machine
every sleep, timer and socket hop can run late by the scheduler's jitter, and at speed 20 a
tolerance written in clock seconds is only 2.5-50 ms of real time. Two rules follow:

- never "sleep, then assert that nothing (or something) happened": ``await until(pred)`` waits
  for the fact that proves it, with a generous wall-clock timeout that only matters on failure;
- a clock-driven delay never ends early, but may end late: check its exact lower bound, and
  above it allow ``late(speed)`` clock seconds, i.e. ``JITTER`` wall seconds scaled by the
  clock's speed. A test that wants a tight upper bound runs its stack at a low speed.

``JITTER`` (wall seconds, env ``ACD_TEST_JITTER``, default 0.5) was measured as enough on a
2-core machine with both cores kept busy by ``yes > /dev/null``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable

JITTER = float(os.environ.get("ACD_TEST_JITTER", "0.5"))

# Speed for a stack whose test asserts durations: late(TIMED_SPEED) = 2.5 clock seconds.
TIMED_SPEED = 5.0


def late(speed: float) -> float:
    """Clock seconds by which a loaded machine may stretch a clock-driven delay."""
    return JITTER * speed


def assert_duration(
    value: float, expected: float, speed: float, *, early: float = 0.0, what: str = ""
) -> None:
    """``value`` (clock seconds) is ``expected``: never earlier (minus ``early`` for rounding or
    a start measured a moment before the other side's), at most ``late(speed)`` later."""
    high = expected + late(speed)
    assert expected - early <= value <= high, (
        f"{what or 'duration'} {value} not in [{expected - early}, {high}] (speed {speed}, jitter {JITTER} s)"
    )


async def until(
    pred: Callable[[], object] | Callable[[], Awaitable[object]],
    timeout: float = 10.0,
    interval: float = 0.005,
    what: str = "",
) -> None:
    """Poll ``pred`` (plain or async) until it is true; ``timeout`` in wall seconds, only for failure."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = pred()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"still false after {timeout} s: {what or pred}") from None
