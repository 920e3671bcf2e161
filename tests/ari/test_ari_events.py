"""EventStream over a real loopback websocket: order, resync hook, reconnect, takeover, bad frames."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import pytest
from ari_fake import PASSWORD, USER, FakeAri, free_port, send, trace_events

from controller.ari import (
    ApplicationReplaced,
    AriClient,
    AriUnauthorized,
    Event,
    EventStream,
    StasisEnd,
    StasisStart,
    backoff_delay,
)

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}
DECLINE = trace_events("agent_decline_603.json")
REPLACED = trace_events("websocket_app_replaced.json")


def stasis_end(channel_id: str) -> dict:
    return {
        "type": "StasisEnd",
        "application": "acd",
        "timestamp": "2026-11-25T16:58:46.618+0000",
        "channel": {"id": channel_id, "name": f"PJSIP/{channel_id}", "state": "Up"},
    }


async def eventually(predicate: Callable[[], bool], limit: float = 3.0) -> None:
    """Poll a condition the test cannot await directly (counters inside the stream)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - polling state owned by the code under test
            await asyncio.sleep(0.005)


def assert_no_secret(caplog: pytest.LogCaptureFixture, *texts: object) -> None:
    assert PASSWORD not in caplog.text
    for record in caplog.records:
        assert PASSWORD not in str(record.__dict__)
    for text in texts:
        assert PASSWORD not in str(text) and PASSWORD not in repr(text)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


async def test_events_arrive_in_order_and_never_concurrently(
    fake_ari: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ari.ws_scripts.append(send(*DECLINE))
    got: list[Event] = []
    active = 0
    max_active = 0
    rng = random.Random(7)

    async def handler(event: Event) -> None:
        nonlocal active, max_active
        active += 1
        max_active = max(max_active, active)
        await asyncio.sleep(rng.uniform(0, 0.003))  # a slow handler must delay, not reorder
        got.append(event)
        active -= 1

    stream = EventStream(client, handler, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: len(got) == len(DECLINE))
    assert stream.connected
    await stream.stop()
    await asyncio.wait_for(task, 2)

    assert [e.raw for e in got] == DECLINE
    assert max_active == 1
    assert isinstance(got[0], StasisStart) and got[0].args == ["support"]
    assert stream.stats["events"] == len(DECLINE)
    assert not stream.connected
    query = fake_ari.ws_queries[0]
    assert query == {"app": "acd", "api_key": f"{USER}:{PASSWORD}"}  # subscribeAll left out (false)
    assert_no_secret(caplog)


async def test_on_connect_runs_before_events_of_each_socket(
    fake_ari: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ari.ws_scripts += [
        send(stasis_end("a1"), stasis_end("a2"), close=True),
        send(stasis_end("b1"), stasis_end("b2")),
    ]
    log: list[object] = []

    async def on_connect(reconnected: bool) -> None:
        await asyncio.sleep(0.05)  # a resync: the socket's events are already waiting meanwhile
        log.append(("connect", reconnected))

    async def handler(event: Event) -> None:
        assert isinstance(event, StasisEnd)
        log.append(event.channel.id)

    stream = EventStream(client, handler, on_connect=on_connect, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: "b2" in log)
    await stream.stop()
    await asyncio.wait_for(task, 2)

    assert log == [("connect", False), "a1", "a2", ("connect", True), "b1", "b2"]
    assert stream.stats["reconnects"] == 1
    assert stream.first_connected.is_set()
    assert_no_secret(caplog)


async def test_application_replaced_stops_run(
    fake_ari: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    replaced = next(e for e in REPLACED if e["type"] == "ApplicationReplaced")
    fake_ari.ws_scripts.append(send(stasis_end("c1"), replaced, stasis_end("c2")))
    got: list[str] = []

    async def handler(event: Event) -> None:
        got.append(event.channel.id)

    stream = EventStream(client, handler, **FAST)
    with pytest.raises(ApplicationReplaced) as info:
        await asyncio.wait_for(stream.run(), 3)

    assert got == ["c1"]
    assert info.value.app == "acd"
    assert not stream.connected
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    took_over = "another controller connected to ARI app 'acd' and took over"
    assert any(took_over in r.getMessage() for r in errors)
    assert all(r.name.startswith("controller.ari") for r in errors)
    assert len(fake_ari.ws_queries) == 1  # no reconnect that would steal the app back


async def test_bad_frames_are_counted_and_skipped(
    fake_ari: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ari.ws_scripts.append(
        send(
            "not json",
            "[1, 2]",
            '{"no": "type"}',
            b"\x00binary",
            '{"type": "ChannelDestroyed", "cause": "x", "channel": {"id": "c9"}}',
            {"type": "PeerStatusChange", "application": "acd", "peer": {"peer_status": "Reachable"}},
            stasis_end("ok"),
        )
    )
    got: list[Event] = []

    async def handler(event: Event) -> None:
        got.append(event)

    stream = EventStream(client, handler, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: len(got) == 2)
    await stream.stop()
    await asyncio.wait_for(task, 2)

    assert [e.type for e in got] == ["PeerStatusChange", "StasisEnd"]
    assert type(got[0]) is Event and got[0].raw["peer"] == {"peer_status": "Reachable"}
    assert stream.stats["malformed_events"] == 5
    assert stream.stats["unknown_events"] == 1
    assert stream.stats["events"] == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "malformed" in r.getMessage()]
    assert len(warnings) == 4  # + one for the binary frame
    assert any(r.levelno == logging.DEBUG and "PeerStatusChange" in r.getMessage() for r in caplog.records)


async def test_ignored_types_are_dropped_from_the_text_and_others_fully_parsed(
    fake_ari: FakeAri, client: AriClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``types`` set, an event whose leading "type" is not wanted skips json.loads; one whose
    "type" is not the first member (or is escaped inside a string) is parsed before it is judged."""
    import json as json_module

    import controller.ari.events as events_module

    varset = {"type": "ChannelVarset", "application": "acd", "variable": "X", "value": "y"}
    fake_ari.ws_scripts.append(
        send(
            varset,  # compact: dropped unparsed
            json_module.dumps(varset, indent=2),  # ari.conf pretty = yes: dropped unparsed too
            # "type" not first: parsed, then dropped by the set
            '{"application": "acd", "type": "ChannelVarset", "variable": "X", "value": "1"}',
            # a wanted event whose string value mentions an ignored type: never mistaken
            {**stasis_end("a"), "note": '{"type":"ChannelVarset"}'},
            stasis_end("b"),
        )
    )
    parsed: list[str] = []
    real_loads = json_module.loads

    def counting_loads(text: str, *args: object, **kwargs: object) -> object:
        parsed.append(text)
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(events_module.json, "loads", counting_loads)
    got: list[Event] = []

    async def handler(event: Event) -> None:
        got.append(event)

    stream = EventStream(client, handler, types={"StasisEnd"}, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: len(got) == 2)
    await stream.stop()
    await asyncio.wait_for(task, 2)

    assert [e.channel.id for e in got] == ["a", "b"]
    assert stream.stats["ignored_events"] == 3
    assert stream.stats["events"] == 5
    assert not any('"variable": "X", "value": "y"' in t or '"value":"y"' in t for t in parsed)
    assert sum("ChannelVarset" in t for t in parsed) == 2  # the not-first one and the mention


async def test_handler_errors_are_logged_and_the_loop_goes_on(
    fake_ari: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ari.ws_scripts.append(send(stasis_end("boom"), stasis_end("fine")))
    got: list[str] = []

    async def handler(event: Event) -> None:
        if event.channel.id == "boom":
            raise RuntimeError("handler bug")
        got.append(event.channel.id)

    stream = EventStream(client, handler, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: got == ["fine"])
    await stream.stop()
    await asyncio.wait_for(task, 2)

    assert stream.stats["handler_errors"] == 1
    failed = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert failed[0].ari_event_type == "StasisEnd"


async def test_stop_from_inside_the_handler(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.ws_scripts.append(send(stasis_end("first"), stasis_end("second")))
    got: list[str] = []
    stream: EventStream

    async def handler(event: Event) -> None:
        got.append(event.channel.id)
        await stream.stop()

    stream = EventStream(client, handler, **FAST)
    await asyncio.wait_for(stream.run(), 3)
    assert got == ["first"]


async def test_bad_credentials_at_first_connect_raise(
    fake_ari: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wrong-" + PASSWORD
    async with AriClient(fake_ari.base_url, USER, secret, "acd") as bad:
        stream = EventStream(bad, lambda e: asyncio.sleep(0), **FAST)
        with pytest.raises(AriUnauthorized) as info:
            await asyncio.wait_for(stream.run(), 3)
    assert "'acd'" in str(info.value) and "ACD_ARI_PASSWORD" in str(info.value)
    assert "api_key" not in str(info.value)
    assert len(fake_ari.ws_queries) == 1  # no retry loop with bad credentials
    assert not stream.first_connected.is_set()
    assert secret not in caplog.text and secret not in repr(info.value)
    assert all(secret not in str(r.__dict__) for r in caplog.records)


async def test_failures_after_first_connect_are_transient(
    fake_ari: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ari.ws_scripts.append(send(close=True))
    calls: list[bool] = []

    async def on_connect(reconnected: bool) -> None:
        calls.append(reconnected)
        if not reconnected:
            fake_ari.ws_reject += [401, 503]  # e.g. ari.conf reloading, then Asterisk restarting

    stream = EventStream(client, lambda e: asyncio.sleep(0), on_connect=on_connect, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: calls == [False, True])
    await stream.stop()
    await asyncio.wait_for(task, 2)

    assert stream.stats["connect_failures"] == 2
    assert stream.stats["reconnects"] == 1
    assert_no_secret(caplog)


async def test_connection_refused_keeps_retrying(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AriClient(url, USER, PASSWORD, "acd") as c:
        stream = EventStream(c, lambda e: asyncio.sleep(0), **FAST)
        task = asyncio.create_task(stream.run())
        await eventually(lambda: stream.stats["connect_failures"] >= 3)
        assert not task.done()
        await stream.stop()
        await asyncio.wait_for(task, 2)
    assert not stream.first_connected.is_set()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{url[len('http') :]}/ari/events?app=acd" in m for m in warnings)
    assert_no_secret(caplog)


async def test_on_connect_failure_drops_the_socket_and_retries(
    fake_ari: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ari.ws_scripts += [send(stasis_end("lost")), send(stasis_end("kept"))]
    calls: list[bool] = []
    got: list[str] = []

    async def on_connect(reconnected: bool) -> None:
        calls.append(reconnected)
        if len(calls) == 1:
            raise RuntimeError("GET /channels failed")

    async def handler(event: Event) -> None:
        got.append(event.channel.id)

    stream = EventStream(client, handler, on_connect=on_connect, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: got == ["kept"])
    await stream.stop()
    await asyncio.wait_for(task, 2)

    assert calls == [False, False]  # the first resync never completed, so it is still a first connect
    assert stream.stats["on_connect_errors"] == 1


async def test_failed_resync_on_reconnect_stays_a_reconnect(fake_ari: FakeAri, client: AriClient) -> None:
    fake_ari.ws_scripts += [send(close=True), send(stasis_end("lost")), send(stasis_end("kept"))]
    calls: list[bool] = []
    got: list[str] = []

    async def on_connect(reconnected: bool) -> None:
        calls.append(reconnected)
        if len(calls) == 2:
            raise RuntimeError("GET /channels failed")

    async def handler(event: Event) -> None:
        got.append(event.channel.id)

    stream = EventStream(client, handler, on_connect=on_connect, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: got == ["kept"])
    await stream.stop()
    await asyncio.wait_for(task, 2)
    assert calls == [False, True, True]


async def test_backoff_resets_after_a_good_connection(
    fake_ari: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ari.ws_reject += [503, 503, 503]
    fake_ari.ws_scripts.append(send(stasis_end("x"), close=True))
    got: list[str] = []

    async def handler(event: Event) -> None:
        got.append(event.channel.id)

    stream = EventStream(client, handler, **FAST)
    task = asyncio.create_task(stream.run())
    await eventually(lambda: len(fake_ari.ws_queries) == 5)  # 3 refused, 1 dropped, 1 open
    await stream.stop()
    await asyncio.wait_for(task, 2)

    attempts = [r.attempt for r in caplog.records if hasattr(r, "attempt")]
    assert attempts == [0, 1, 2, 0]
    assert got == ["x"]


def test_backoff_grows_and_is_capped() -> None:
    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    caps = [backoff_delay(n, 0.5, 30, Top()) for n in range(10)]
    assert caps == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert backoff_delay(10_000, 0.5, 30, Top()) == 30  # no overflow after a long outage

    delays = [backoff_delay(n, 0.5, 30, random.Random(42)) for n in range(12)]
    assert delays == [backoff_delay(n, 0.5, 30, random.Random(42)) for n in range(12)]  # seedable
    rng = random.Random(1)
    for n, cap in enumerate(caps):
        for _ in range(50):
            assert 0 <= backoff_delay(n, 0.5, 30, rng) <= cap
    spread = [backoff_delay(8, 0.5, 30, rng) for _ in range(200)]
    assert min(spread) < 5 and max(spread) > 25  # full jitter, not a fixed delay


def test_backoff_settings_are_checked() -> None:
    client = AriClient("http://127.0.0.1:8088", USER, PASSWORD, "acd")
    with pytest.raises(ValueError):
        EventStream(client, lambda e: asyncio.sleep(0), backoff_initial=0)
    with pytest.raises(ValueError):
        EventStream(client, lambda e: asyncio.sleep(0), backoff_initial=5, backoff_max=1)
