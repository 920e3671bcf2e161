"""Seeded Poisson call traffic for load tests and the demo.

The plan (arrival offsets, caller ids, headers, patience, talk time) depends only on the seed and the
parameters, so two runs with the same seed offer the same calls; arrivals are scheduled on the shared
Clock, so a sped-up clock compresses the whole run.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterator, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncio import TimerHandle

    from controller.sim.callers import Caller
    from controller.sim.server import SimAsterisk

DEFAULT_NAMES: tuple[str, ...] = (
    "Maria",
    "John",
    "Aisha",
    "Wei",
    "Olga",
    "Carlos",
    "Fatima",
    "Lukas",
    "Priya",
    "Kenji",
    "Amara",
    "Sofia",
    "Mateo",
    "Ingrid",
    "Omar",
    "Chloe",
    "Yusuf",
    "Hana",
    "Pavel",
    "Lucia",
)


@dataclass(frozen=True)
class CallSpec:
    """One planned call: ``at`` is seconds (clock) after the generator started."""

    at: float
    exten: str
    caller_number: str
    caller_name: str
    headers: dict[str, str] = field(default_factory=dict)
    patience: float | None = None
    talk_time: float | None = None


Sampler = Callable[[random.Random], float | None]


def exponential(mean: float) -> Sampler:
    """Exponentially distributed seconds with the given mean."""
    return lambda rng: rng.expovariate(1.0 / mean)


def uniform(low: float, high: float) -> Sampler:
    return lambda rng: rng.uniform(low, high)


def fixed(value: float | None) -> Sampler:
    return lambda rng: value


class TrafficGenerator:
    """Callers arriving as a Poisson process at ``rate`` calls per clock second.

    ``extens`` may weight several queues: ``{"101": 3, "102": 1}``. ``headers(rng, i)`` builds the
    inbound SIP headers of call ``i``. Stop after ``max_calls`` calls or ``duration`` clock seconds.
    """

    def __init__(
        self,
        sim: SimAsterisk,
        *,
        rate: float,
        seed: int = 0,
        extens: dict[str, float] | str = "101",
        patience: Sampler | None = None,
        talk_time: Sampler | None = None,
        names: Sequence[str] = DEFAULT_NAMES,
        number_prefix: str = "555",
        headers: Callable[[random.Random, int], dict[str, str]] | None = None,
        max_calls: int | None = None,
        duration: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._sim = sim
        self.rate = rate
        self.seed = seed
        self.extens = {extens: 1.0} if isinstance(extens, str) else dict(extens)
        self.patience = patience or exponential(60.0)
        self.talk_time = talk_time or exponential(120.0)
        self.names = tuple(names)
        self.number_prefix = number_prefix
        self.headers = headers
        self.max_calls = max_calls
        self.duration = duration
        self.calls: MutableSequence[Caller] = sim.new_record_list()
        self._timer: TimerHandle | None = None
        self._iter: Iterator[CallSpec] | None = None
        self._started_at = 0.0
        self._done = asyncio.Event()

    def specs(self) -> Iterator[CallSpec]:
        """The deterministic (seeded) stream of calls, unbounded unless max_calls/duration stop it."""
        rng = random.Random(f"traffic:{self.seed}")
        extens = list(self.extens)
        weights = [self.extens[e] for e in extens]
        t = 0.0
        for i in itertools.count():
            if self.max_calls is not None and i >= self.max_calls:
                return
            t += rng.expovariate(self.rate)
            if self.duration is not None and t > self.duration:
                return
            exten = rng.choices(extens, weights)[0] if len(extens) > 1 else extens[0]
            number = f"{self.number_prefix}{rng.randrange(10**7):07d}"
            name = rng.choice(self.names) if self.names else ""
            headers = self.headers(rng, i) if self.headers is not None else {}
            yield CallSpec(t, exten, number, name, headers, self.patience(rng), self.talk_time(rng))

    def plan(self, n: int | None = None) -> list[CallSpec]:
        """The first ``n`` planned calls (all of them when bounded by max_calls/duration)."""
        it = self.specs()
        return list(itertools.islice(it, n)) if n is not None else list(it)

    def start(self) -> None:
        """Begin placing calls now; each arrival schedules the next one."""
        if self._iter is not None:
            raise RuntimeError("traffic generator already started")
        self._iter = self.specs()
        self._started_at = self._sim.clock.now()
        self._schedule_next()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._done.set()

    async def wait_done(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (clock seconds)
        """Wait (clock seconds) until the last planned call has been placed."""
        wall = None if timeout is None else self._sim.clock.wall_delay(timeout)
        await asyncio.wait_for(self._done.wait(), wall)

    def _schedule_next(self) -> None:
        assert self._iter is not None
        spec = next(self._iter, None)
        if spec is None:
            self._timer = None
            self._done.set()
            return
        clock = self._sim.clock
        self._timer = clock.call_at(self._started_at + spec.at, self._arrive, spec)

    def _arrive(self, spec: CallSpec) -> None:
        self.calls.append(
            self._sim.place_call(
                exten=spec.exten,
                caller_number=spec.caller_number,
                caller_name=spec.caller_name,
                headers=spec.headers,
                hangup_after=spec.patience,
                talk_time=spec.talk_time,
            )
        )
        self._schedule_next()
