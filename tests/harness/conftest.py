"""Harness tests need the optional pjsua2 wheel (``pip install '.[harness]'``); CI installs it."""

import pytest

from controller.harness.ua import UaGroup


@pytest.fixture
async def phones():
    """Two worker processes over loopback: agents in one, callers in the other."""
    pytest.importorskip("pjsua2")
    agents, callers = UaGroup("agents"), UaGroup("callers")
    await agents.start()
    await callers.start()
    await callers.add_caller("cust", display="Maria")
    try:
        yield agents, callers
    finally:
        await agents.close()
        await callers.close()
