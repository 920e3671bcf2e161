"""What open supervisor wallboards cost the controller's event loop (``make bench ARGS=wallboard``).

The wallboard hub runs on the same loop as call routing. Measured on the real engine with
1,000 agents in 4 queues, 200 callers in queue (100 waiting, 100 being offered) and 50 open
wallboards (10 supervisors per queue + 10 on the admin token):

- per change: the hub's listener for one engine event's commands + one flush (views rebuilt,
  one delta encoded per scope, queued for each wallboard) — a caller arriving or hanging up,
  an agent paused or made ready;
- per tick (1 s): the status comparison over every agent when nothing changed;
- snapshot: a (re)connecting wallboard's first frame.

No network: frames are queued, not sent (sending is the WebSocket's own cost, per wallboard).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from controller.acd import commands as cmd
from controller.acd import events as ev
from controller.acd.engine import Engine
from controller.acd.setup import AcdSetup, AgentConfig, Membership, QueueConfig, Strategy
from controller.wallboard.hub import WallboardHub

QUEUES = ("q0", "q1", "q2", "q3")


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def to_wall(self, at: float) -> float:
        return 1_790_000_000.0 + at


class _Controller:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.clock = _Clock()


def _wall(at: float | None) -> str | None:
    return None if at is None else f"{at:.3f}"


def _setup(n: int) -> AcdSetup:
    queues = {q: QueueConfig(q, strategy=Strategy.LONGEST_IDLE, ring_timeout=600, wrapup=0) for q in QUEUES}
    agents = {
        f"a{i}": AgentConfig(f"a{i}", f"Agent {i}", f"PJSIP/a{i}", (Membership(QUEUES[i % len(QUEUES)]),))
        for i in range(n)
    }
    return AcdSetup(queues=queues, agents=agents)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(
    n_agents: int = 1000, n_calls: int = 200, boards: int = 50, changes: int = 2000
) -> dict[str, Any]:
    engine = Engine(_setup(n_agents), seed=1)
    controller = _Controller(engine)
    hub = WallboardHub(controller, _wall)  # type: ignore[arg-type]
    clock = controller.clock

    def feed(event: ev.Event) -> float:
        """One engine change as the shell delivers it; returns the hub's time in µs."""
        clock.t += 0.01
        commands = engine.handle(event, clock.t)
        t = time.perf_counter()
        for c in commands:
            if isinstance(c, cmd.Notify | cmd.Record):
                hub.listener(c)
        hub._flush()
        return (time.perf_counter() - t) * 1e6

    # boards first (the hub is idle without them), then the floor fills up
    feeds = []
    per_board = max(1, (boards - boards // 5) // len(QUEUES))
    for i in range(boards):
        scope = frozenset({QUEUES[i // per_board]}) if i // per_board < len(QUEUES) else None
        feeds.append(hub.subscribe(scope, {"role": "supervisor", "id": f"s{i}"}))
    for a in engine.agents:
        engine.handle(ev.EndpointState(f"PJSIP/{a}", True), clock.t)
    ready = n_calls // 2  # as many agents ready as will ring; the rest paused

    def drain() -> int:
        n = 0
        for f in feeds:
            while not f.queue.empty():
                f.queue.get_nowait()
                n += 1
        return n

    for i, a in enumerate(engine.agents):
        if i >= ready:
            feed(ev.AgentPause(a, "meeting"))
            drain()
    for i in range(n_calls):
        feed(ev.CallArrived(f"c{i}", QUEUES[i % len(QUEUES)], f"55{i:08d}", f"Caller {i}"))
        drain()

    waiting = sum(1 for c in engine.calls.values() if c.state.value in ("waiting", "offering"))
    per_change: list[float] = []
    frames = 0
    paused = [a for i, a in enumerate(engine.agents) if i >= ready]
    for i in range(changes // 4):
        # a waiting caller gives up and another arrives; a paused agent's reason changes twice
        gone = next(c for c in engine.calls.values() if c.state.value == "waiting")
        per_change.append(feed(ev.CallerHungUp(gone.id)))
        per_change.append(feed(ev.CallArrived(f"n{i}", gone.queue, "5550000", "New caller")))
        agent = paused[i % len(paused)]
        per_change.append(feed(ev.AgentPause(agent, "coaching")))
        per_change.append(feed(ev.AgentPause(agent, "meeting")))
        frames += drain()
    assert waiting == n_calls, f"{waiting} callers in queue, expected {n_calls}"
    ticks: list[float] = []
    for _ in range(50):
        t = time.perf_counter()
        hub.tick_once()
        ticks.append((time.perf_counter() - t) * 1e6)
    t = time.perf_counter()
    extra = hub.subscribe(None, {"role": "admin", "id": None})
    snapshot_us = (time.perf_counter() - t) * 1e6
    snapshot_bytes = len(extra.queue.get_nowait() or "")
    return {
        "agents": n_agents,
        "in_queue": waiting,
        "boards": boards,
        "change_median_us": statistics.median(per_change),
        "change_p99_us": _pct(per_change, 0.99),
        "tick_median_us": statistics.median(ticks),
        "snapshot_us": snapshot_us,
        "snapshot_kb": snapshot_bytes / 1024,
        "frames_per_change": frames / max(1, len(per_change)),
        "frames": frames,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench wallboard", description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--boards", type=int, default=50)
    parser.add_argument("--changes", type=int, default=2000)
    args = parser.parse_args(argv)
    r = asyncio.run(run(args.agents, args.calls, args.boards, args.changes))
    print("wallboard hub cost on the event loop")
    print(f"  {r['boards']} wallboards, {r['agents']} agents, {r['in_queue']} callers in queue")
    print(f"  per engine change: median {r['change_median_us']:.1f} µs, p99 {r['change_p99_us']:.1f} µs")
    print(f"  frames queued per change: {r['frames_per_change']:.1f} (one delta per wallboard that sees it)")
    print(f"  per tick (no change): median {r['tick_median_us']:.1f} µs")
    print(f"  snapshot of a new admin wallboard: {r['snapshot_us']:.1f} µs, {r['snapshot_kb']:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
