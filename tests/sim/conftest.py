"""Fixtures: a started SimAsterisk on a loopback port and an aiohttp session with its credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from controller.clock import Clock
from controller.sim import SimAsterisk
from tests.sim.ari import Ari

USER = "acd"
PASSWORD = "acd"
SPEED = 25.0  # sim seconds per wall second in these tests


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Awaitable[SimAsterisk]]]:
    sims: list[SimAsterisk] = []

    async def factory(**kwargs: object) -> SimAsterisk:
        kwargs.setdefault("clock", Clock(SPEED))
        kwargs.setdefault("seed", 1)
        sim = SimAsterisk(user=USER, password=PASSWORD, **kwargs)  # type: ignore[arg-type]
        await sim.start("127.0.0.1", 0)
        sims.append(sim)
        return sim

    yield factory
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def sim(make_sim: Callable[..., Awaitable[SimAsterisk]]) -> SimAsterisk:
    return await make_sim()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


@pytest.fixture
async def ari(sim: SimAsterisk, http: aiohttp.ClientSession) -> AsyncIterator[Ari]:
    """A connected test client of app ``acd``."""
    client = await Ari(sim, http).connect()
    yield client
    await client.close()
