from __future__ import annotations

import pytest

from controller.acd.setup import Strategy
from controller.api.auth import hash_token
from controller.sim import Answer, Decline, NoAnswer
from tests.dbkit import migrated_db
from tests.stack import make_stack
from tests.telephony.conftest import make_setup

ALICE_TOKEN = "alice-secret-token"
BOB_TOKEN = "bob-secret-token"


@pytest.fixture
async def stack(tmp_path):
    """alice (rejects her first offer, then answers), bob (answers), carol (never answers); SQLite."""
    setup = make_setup(
        {"alice": "agent1", "bob": "agent2", "carol": "agent3"},
        strategy=Strategy.LINEAR,
        wrapup=0.2,
        ring_timeout=4,
        max_no_answer=0,
    )
    phones = {
        "agent1": [Decline(after=0.2), Answer(after=0.3)],
        "agent2": Answer(after=0.3),
        "agent3": NoAnswer(),
    }
    tokens = {"alice": hash_token(ALICE_TOKEN), "bob": hash_token(BOB_TOKEN)}
    async with migrated_db("sqlite", tmp_path) as (db, _url, _schema):
        s = await make_stack(db, setup, phones, agent_tokens=tokens, service_level=10)
        try:
            yield s
        finally:
            await s.close()
