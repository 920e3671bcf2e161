"""Hypothesis, end to end on both databases: any permutation and duplication of a conversation's
webhooks (interleaved with the agent's sends) converges to the same final chat: order, statuses,
failures. Messages sharing one second are ordered by arrival (by design), so the order is
compared as the sequence of same-second groups.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from controller.store import create_engine
from controller.whatsapp.auth import Principal
from controller.whatsapp.service import WhatsAppService
from tests.dbkit import PG_URL
from tests.whatsapp.conftest import MARIA, PNID, SEND_URL, T0, WA_TABLES, Clock, make_config

ERRORS = {
    131026: {
        "code": 131026,
        "title": "Message undeliverable",
        "message": "Message undeliverable",
        "error_data": {"details": "Message Undeliverable."},
    },
    130472: {
        "code": 130472,
        "title": "User's number is part of an experiment",
        "error_data": {
            "details": "Failed to send message because this user's phone number is part of an experiment"
        },
    },
}


def envelope(value: dict) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PNID}, **value}
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()


def inbound(i: int, ts: int) -> bytes:
    return envelope(
        {
            "contacts": [{"wa_id": MARIA, "profile": {"name": "Maria"}}],
            "messages": [
                {
                    "from": MARIA,
                    "id": f"wamid.in.{i}",
                    "timestamp": str(ts),
                    "type": "text",
                    "text": {"body": f"in{i}"},
                }
            ],
        }
    )


def status(j: int, word: str, ts: int, code: int | None, with_callback: bool) -> bytes:
    st_ = {"id": f"wamid.out.{j}", "status": word, "timestamp": str(ts), "recipient_id": MARIA}
    if with_callback:
        st_["biz_opaque_callback_data"] = f"msg:out-{j}"
    if word == "failed":
        st_["errors"] = [ERRORS[code or 131026]]
    return envelope({"statuses": [st_]})


@st.composite
def scenarios(draw):
    n_in = draw(st.integers(1, 3))
    n_out = draw(st.integers(1, 3))
    events: list[tuple] = [("in", i, int(T0) + draw(st.integers(0, 4)) * 10) for i in range(n_in)]
    for j in range(n_out):
        for word in draw(
            st.lists(st.sampled_from(["sent", "delivered", "read", "failed"]), min_size=1, max_size=4)
        ):
            code = draw(st.sampled_from([131026, 130472])) if word == "failed" else None
            events.append(
                ("st", j, word, int(T0) + 100 + draw(st.integers(0, 30)), code, draw(st.booleans()))
            )
    order = draw(st.permutations(events))
    dupes = draw(st.lists(st.sampled_from(events), max_size=4))
    arrival = list(order)
    for dup in dupes:
        arrival.insert(draw(st.integers(0, len(arrival))), dup)
    # The agent's sends happen in their own order, interleaved anywhere in the webhook stream
    # (a status may arrive before its send: the orphan path).
    positions = sorted(draw(st.lists(st.integers(0, len(arrival)), min_size=n_out, max_size=n_out)))
    for j, pos in reversed(list(enumerate(positions))):
        arrival.insert(pos, ("send", j))
    canonical = [("send", j) for j in range(n_out)] + events
    return canonical, arrival


def body_of(event: tuple) -> bytes:
    if event[0] == "in":
        return inbound(event[1], event[2])
    _, j, word, ts, code, cb = event
    return status(j, word, ts, code, cb)


async def final_chat(engine, events: list[tuple]) -> list:
    ids = iter(range(100))
    import controller.whatsapp.changes as changes

    with respx.mock(assert_all_called=False) as meta:
        meta.post(SEND_URL).mock(
            side_effect=lambda request: httpx.Response(
                200,
                json={
                    "messages": [
                        {"id": "wamid.out." + json.loads(request.content)["biz_opaque_callback_data"][8:]}
                    ]
                },
            )
        )
        clock = Clock(T0 + 50.5)
        service = WhatsAppService(
            make_config(), engine=engine, clock=clock, backoff_scale=0.0, auto_migrate=False
        )
        original = changes.new_message_id
        try:
            for event in events:
                if event[0] == "send":
                    j = event[1]
                    changes.new_message_id = lambda j=j: f"msg:out-{j}"
                    async with service.changelog.unit() as u:  # the conversation exists before any send
                        conv = await u.conversation_for(PNID, MARIA, wa_id=MARIA)
                    clock.now = T0 + 50.5 + j  # send times are fixed: the agent's clock
                    code, _ = await service.sender.submit(
                        Principal("agent", "alice"),
                        conv["id"],
                        {"type": "template", "template": {"name": "t", "language": "pt_BR"}},
                    )
                    changes.new_message_id = original
                    assert code == 202
                    await service.sender.drain()
                else:
                    await service.inbox.store(
                        body_of(event) + b" " * next(ids)
                    )  # distinct bytes: re-deliveries
                    await service.drain()
        finally:
            changes.new_message_id = original
            await service.stop()
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT direction, wamid, body, status, error_code, error_details, event_ts "
                        "FROM wa_messages ORDER BY event_ts, seq"
                    )
                )
            )
            .mappings()
            .all()
        )
    groups: list = []
    for r in rows:
        item = (r["direction"], r["wamid"], r["body"], r["status"], r["error_code"], r["error_details"])
        if groups and groups[-1][0] == r["event_ts"]:
            groups[-1][1].add(item)
        else:
            groups.append((r["event_ts"], {item}))
    return [(ts, frozenset(items)) for ts, items in groups]


def run_on(backend: str, template: Path | None, schema: str | None, events: list[tuple]) -> list:
    async def go() -> list:
        if backend == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix="whatsapp-hyp-"))
            shutil.copyfile(template, tmp / "db.sqlite3")
            engine = create_engine(f"sqlite+aiosqlite:///{tmp}/db.sqlite3", sqlite_synchronous="OFF")
        else:
            engine = create_engine(PG_URL, schema=schema)
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {', '.join(WA_TABLES)} RESTART IDENTITY CASCADE"))
                await conn.execute(text("UPDATE wa_counters SET value = 0"))
        try:
            return await final_chat(engine, events)
        finally:
            await engine.dispose()
            if backend == "sqlite":
                shutil.rmtree(tmp, ignore_errors=True)

    return asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_permutations_and_duplicates_converge(backend: str, request: pytest.FixtureRequest) -> None:
    template = request.getfixturevalue("sqlite_template") if backend == "sqlite" else None
    schema = request.getfixturevalue("pg_schema_name") if backend == "postgresql" else None

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(scenarios())
    def check(scenario) -> None:
        canonical, arrival = scenario
        expected = run_on(backend, template, schema, canonical)
        assert run_on(backend, template, schema, arrival) == expected
        assert sum(len(items) for _, items in expected) == len({e[:2] for e in canonical if e[0] != "st"})

    check()
