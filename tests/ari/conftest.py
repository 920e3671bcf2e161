"""Fixtures: a fake ARI on a loopback port and an AriClient pointed at it."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from ari_fake import PASSWORD, USER, FakeAri

from controller.ari import AriClient


@pytest.fixture
async def fake_ari():
    fake = FakeAri()
    server = TestServer(fake.app)
    await server.start_server()
    fake.base_url = str(server.make_url("")).rstrip("/")
    yield fake
    for ws in list(fake.open_ws):
        await ws.close()
    await server.close()


@pytest.fixture
async def client(fake_ari: FakeAri):
    async with AriClient(fake_ari.base_url, USER, PASSWORD, "acd", request_timeout=2) as c:
        yield c
