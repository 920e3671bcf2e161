"""What open agent panels cost the controller's event loop (``make bench ARGS=panel``).

The panel hub runs on the same loop as call routing, so its work delays reactions. Measured
here on the real engine with N agents, every one with a page connected:

- per offer: the hub's listener for the offer's commands + one flush (card and agent view built,
  frames queued) — the extra work each call event causes;
- per tick (1 s): the status comparison over all open pages when nothing changed;
- snapshot: building the first frame of a (re)connecting page.

No network: frames are queued, not sent (sending is the WebSocket's own cost, per page).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench.setups import one_queue
from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import Engine
from controller.acd.setup import AcdSetup, QueueConfig, Strategy
from controller.panel.hub import TICK_SLICE, PanelHub


class _Controller:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine


def _wall(at: float | None) -> str | None:
    return None if at is None else f"{at:.3f}"


def _setup(n: int) -> AcdSetup:
    return one_queue(n, QueueConfig("support", strategy=Strategy.LONGEST_IDLE, ring_timeout=15, wrapup=0))


def _feed(hub: PanelHub, commands: list[cmd.Command]) -> None:
    """What the shell does with an event's commands, as far as the panel is concerned."""
    for c in commands:
        if isinstance(c, cmd.Notify | cmd.Record):
            hub.listener(c)
    hub._flush()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(n_agents: int, offers: int) -> dict[str, Any]:
    engine = Engine(_setup(n_agents), seed=1)
    hub = PanelHub(_Controller(engine), _wall)  # type: ignore[arg-type]
    now = 0.0
    for a in engine.agents:
        engine.handle(ev.EndpointState(f"PJSIP/{a}", True), now)
    t0 = time.perf_counter()
    feeds = [hub.subscribe(a) for a in engine.agents]
    snapshot_us = (time.perf_counter() - t0) / n_agents * 1e6
    per_offer: list[float] = []
    frames = 0
    for i in range(offers):
        now += 1.0
        commands = engine.handle(ev.CallArrived(f"c{i}", "support", "5551234", "Maria"), now)
        t = time.perf_counter()
        _feed(hub, commands)
        per_offer.append((time.perf_counter() - t) * 1e6)
        offer_ids = [c.offer_id for c in commands if isinstance(c, cmd.RingAgent)]
        _feed(hub, engine.handle(ev.CallerHungUp(f"c{i}"), now))  # the card goes away again
        for offer_id in offer_ids:  # and the agent's leg is gone: free for the next call
            _feed(hub, engine.handle(ev.AgentLegEnded(offer_id, 16, None), now))
        for f in feeds:  # the pages read their frames
            while not f.queue.empty():
                f.queue.get_nowait()
                frames += 1
    ticks: list[float] = []
    for _ in range(50):
        t = time.perf_counter()
        await hub.tick_once()
        ticks.append((time.perf_counter() - t) * 1e6)
    return {
        "agents": n_agents,
        "offer_median_us": statistics.median(per_offer),
        "offer_p99_us": _pct(per_offer, 0.99),
        "tick_median_us": statistics.median(ticks),
        "tick_slice_us": statistics.median(ticks) / max(1, -(-n_agents // TICK_SLICE)),  # mean slice
        "snapshot_us": snapshot_us,
        "frames": frames,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench panel", description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--offers", type=int, default=2000)
    args = parser.parse_args(argv)
    print("panel hub cost on the event loop (every agent with a page open)")
    print(
        f"{'agents':>7} {'per offer median':>17} {'p99':>9} {'tick (no change)':>17}"
        f" {'per 500-page slice':>19} {'snapshot':>9}"
    )
    for n in args.agents:
        r = asyncio.run(run(n, args.offers))
        print(
            f"{r['agents']:>7} {r['offer_median_us']:>14.1f} µs {r['offer_p99_us']:>6.1f} µs"
            f" {r['tick_median_us']:>14.1f} µs {r['tick_slice_us']:>16.1f} µs {r['snapshot_us']:>6.1f} µs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
