"""Scenario harness: the real controller against the simulated Asterisk over loopback HTTP/WS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from controller.acd import commands as cmd
from controller.acd.setup import AcdSetup, AgentConfig, Membership, QueueConfig
from controller.app import Controller
from controller.clock import Clock
from controller.sim import SimAsterisk

SPEED = 20.0  # simulated seconds per wall second


class World:
    """A simulated PBX with phones, and a controller attached to it."""

    def __init__(self, sim: SimAsterisk, controller: Controller) -> None:
        self.sim = sim
        self.controller = controller
        self.records: list[cmd.Record] = []  # the controller's history, in order
        controller.shell.recorders.append(  # told at once, as the history writer is
            lambda c: self.records.append(c) if isinstance(c, cmd.Record) else None
        )

    @property
    def engine(self):
        return self.controller.engine

    def call(self, **kw):
        kw.setdefault("caller_number", "5551234")
        kw.setdefault("caller_name", "Maria")
        return self.sim.place_call("101", **kw)

    async def channels(self) -> list:
        """What Asterisk has now (GET /channels), as the controller's client sees it."""
        return await self.controller.client.list_channels()

    async def until_async(self, pred: Callable[[list], object], timeout: float = 30.0) -> None:
        """Poll GET /channels until ``pred(channels)`` is true."""
        clock = self.controller.clock
        deadline = clock.now() + timeout
        while not pred(await self.channels()):
            if clock.now() > deadline:
                raise TimeoutError(f"timed out after {timeout} clock s")
            await asyncio.sleep(0.01)

    async def until(self, pred: Callable[[], object], timeout: float = 30.0) -> None:
        """Poll until ``pred()`` is true (controller state changes wake no sim waiter)."""
        clock = self.controller.clock
        deadline = clock.now() + timeout
        while not pred():
            if clock.now() > deadline:
                raise TimeoutError(f"timed out after {timeout} clock s")
            await asyncio.sleep(0.005)


def make_setup(agents: dict[str, str], queue: QueueConfig | None = None, **queue_kw) -> AcdSetup:
    """``agents`` maps agent id -> phone name (endpoint PJSIP/<phone>)."""
    q = queue or replace(QueueConfig("support"), **queue_kw)
    return AcdSetup(
        queues={q.name: q},
        agents={
            a: AgentConfig(a, a.title(), f"PJSIP/{phone}", (Membership(q.name),))
            for a, phone in agents.items()
        },
    )


def sim_controller(sim: SimAsterisk, setup: AcdSetup, **kw: Any) -> Controller:
    """A controller for ``sim`` (made with user acd / password secret) on the sim's clock, with the
    short reconnect backoff the tests use; ``kw`` overrides or adds Controller arguments."""
    options: dict[str, Any] = {
        "ari_url": sim.base_url,
        "ari_user": "acd",
        "ari_password": "secret",
        "clock": sim.clock,
        "seed": 1,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
    }
    return Controller(setup, **(options | kw))


@pytest.fixture
async def world_factory() -> AsyncIterator[Callable[..., object]]:
    worlds: list[World] = []

    async def make(
        setup: AcdSetup,
        phones: dict[str, object],
        *,
        offline: tuple[str, ...] = (),
        seed: int = 1,
        sim_kw: dict | None = None,
        prepare: Callable[[SimAsterisk, Controller], object] | None = None,
    ):
        clock = Clock(speed=SPEED)
        strict = {"duplicate_channel_events": True, "add_waits_for_playback": True}  # as Asterisk does
        sim = SimAsterisk(clock=clock, seed=seed, user="acd", password="secret", **(strict | (sim_kw or {})))
        await sim.start("127.0.0.1", 0)
        for name, behaviour in phones.items():
            sim.add_phone(name, behaviour, registered=name not in offline)
        controller = sim_controller(sim, setup, seed=seed)
        world = World(sim, controller)
        if prepare is not None:
            prepare(sim, controller)  # faults, shell settings: before the first request
        await controller.start()
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        await world.controller.stop()
        await world.sim.stop()
