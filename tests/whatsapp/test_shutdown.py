"""stop() ends every background task, whatever it is doing when the cancel arrives.

A task that swallows its cancellation never ends, and ``stop()`` (Ctrl-C, SIGTERM, a hot-standby
handover) then waits for it forever. Each test puts a task at the exact point where a cancel used
to be lost, calls ``stop()``, and asserts that it returns; ``asyncio.wait_for`` is only a guard
against hanging the test run, not a measurement.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.whatsapp.conftest import ADMIN

GUARD = 30.0  # seconds; a hang, never a timing goal
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acd.toml"


def _task(service, name: str) -> asyncio.Task:
    [task] = [t for t in service._tasks if t.get_name() == name]
    return task


async def _add_orphan(sidecar, received_at: float) -> None:
    async with sidecar.service.writer.transaction() as conn:
        from controller.whatsapp.models import OrphanStatus

        await conn.execute(
            OrphanStatus.__table__.insert().values(
                wamid="wamid.orphan", dedupe_key="wamid.orphan:sent", raw={}, received_at=received_at
            )
        )


class _WatchedEvent(asyncio.Event):
    """An Event that says when someone starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()

    async def wait(self) -> bool:
        self.waiting.set()
        return await super().wait()


async def test_stop_as_the_first_purge_commit_finishes_ends_the_purge_loop(make_sidecar, monkeypatch) -> None:
    """The reported hang: the first orphan purge's COMMIT (a worker thread, synchronous=FULL)
    has just finished when stop() cancels the purge task; the writer used to drop that cancel
    (the commit was done, so it was not "cancelled during the commit"), the loop went on to
    sleep 600 s and stop() waited for it."""
    sidecar = await make_sidecar(start=False)
    service = sidecar.service
    if not service.writer.inline:
        pytest.skip("the threaded COMMIT is the SQLite file writer's; PostgreSQL: see the next test")
    await _add_orphan(sidecar, received_at=0.0)  # long expired: the first purge deletes it
    conn = service.writer._connection()
    real_commit = conn.commit
    committing, release = threading.Event(), threading.Event()

    def held_commit() -> None:
        committing.set()
        release.wait(GUARD)
        real_commit()

    await service.start()
    monkeypatch.setattr(conn, "commit", held_commit)  # the purge task has not run yet
    assert await asyncio.to_thread(committing.wait, GUARD)
    [commit] = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "to_thread"]
    purge = _task(service, "wa-orphans")
    release.set()
    # One loop step at a time, so this sees the commit done before the purge task resumes (an
    # awaited callback would run after the writer's own, too late to hit the window).
    while not commit.done():  # noqa: ASYNC110
        await asyncio.sleep(0)
    assert not purge.done()
    await asyncio.wait_for(service.stop(), GUARD)
    assert purge.cancelled()
    assert await sidecar.rows("SELECT wamid FROM wa_orphan_statuses") == []  # committed stays committed


async def test_stop_while_the_first_purge_is_in_its_transaction_rolls_it_back(
    make_sidecar, monkeypatch
) -> None:
    sidecar = await make_sidecar(start=False)
    service = sidecar.service
    await _add_orphan(sidecar, received_at=0.0)
    inside, release = asyncio.Event(), asyncio.Event()
    real = service.writer.transaction

    @asynccontextmanager
    async def held():
        async with real() as conn:
            inside.set()
            await release.wait()  # never set: stop() comes first
            yield conn

    await service.start()
    monkeypatch.setattr(service.writer, "transaction", held)  # the purge task has not run yet
    await asyncio.wait_for(inside.wait(), GUARD)
    purge = _task(service, "wa-orphans")
    await asyncio.wait_for(service.stop(), GUARD)
    assert purge.cancelled()
    [row] = await sidecar.rows("SELECT wamid FROM wa_orphan_statuses")  # rolled back
    assert row["wamid"] == "wamid.orphan"


async def test_stop_as_the_ingest_worker_is_woken_ends_it(make_sidecar) -> None:
    """A wake (a body stored unprocessed) arriving together with stop()'s cancel: Python 3.11's
    wait_for returned the wake and dropped the cancel, so the worker looped on forever."""
    sidecar = await make_sidecar(start=False)
    service = sidecar.service
    service._wake_event = _WatchedEvent()
    await service.start()
    await asyncio.wait_for(service._wake_event.waiting.wait(), GUARD)
    ingest = _task(service, "wa-ingest")
    service.wake()
    await asyncio.wait_for(service.stop(), GUARD)
    assert ingest.cancelled()


async def test_stop_as_the_relay_is_woken_ends_it(make_sidecar) -> None:
    sidecar = await make_sidecar(start=False, relay_url="http://127.0.0.1:9/hook", relay_secret="s" * 32)
    service = sidecar.service
    service.forwarder._wake = _WatchedEvent()
    await service.start()
    await asyncio.wait_for(service.forwarder._wake.waiting.wait(), GUARD)
    relay = _task(service, "wa-relay")
    service.forwarder._wake.set()
    await asyncio.wait_for(service.stop(), GUARD)
    assert relay.cancelled()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_acdctl_sidecar_exits_on_a_signal_right_after_start(tmp_path: Path, sig: signal.Signals) -> None:
    """The admin's Ctrl-C / the service manager's SIGTERM, as soon as the sidecar listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ACD_")}
    env |= {
        "ACD_CONFIG": str(EXAMPLE),
        "ACD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/wa.db",
        "ACD_SIDECAR_PORT": str(port),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "sidecar"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        lines = []
        for line in proc.stdout:  # the log says when it listens (signal handlers are set then)
            lines.append(line)
            if "WhatsApp sidecar listening" in line:
                break
        else:
            pytest.fail("the sidecar ended before listening:\n" + "".join(lines))
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "Traceback" not in rest


class _WatchedQueue(asyncio.Queue):
    """A Queue that says when someone starts waiting on it."""

    def __init__(self, waiting: asyncio.Event) -> None:
        super().__init__()
        self.waiting = waiting

    async def get(self):  # noqa: ANN201 - as asyncio.Queue
        self.waiting.set()
        return await super().get()


async def test_a_stream_cancelled_as_a_frame_arrives_ends(sidecar, monkeypatch) -> None:
    """A stream with keepalives (SSE) cancelled as a frame is published: 3.11's wait_for let the
    frame win and dropped the cancel, the stream went on (a leaked subscriber and handler)."""
    from controller.whatsapp.auth import Principal
    from controller.whatsapp.relay import Subscriber, stream_frames

    service = sidecar.service
    hub = service.hub
    admin = service.auth.identify(f"Bearer {ADMIN}")
    waiting = asyncio.Event()
    real_subscribe = hub.subscribe

    def subscribe(principal: Principal) -> Subscriber:
        sub = real_subscribe(principal)
        sub.queue = _WatchedQueue(waiting)
        return sub

    monkeypatch.setattr(hub, "subscribe", subscribe)
    frames: list[dict] = []

    async def pump() -> None:
        async for frame in stream_frames(service.engine, hub, admin, None, keepalive=15.0):  # SSE's
            frames.append(frame)

    task = asyncio.create_task(pump())
    await asyncio.wait_for(waiting.wait(), GUARD)  # hello sent, waiting for the next frame
    hub.publish([{"type": "alert", "cursor": 1}])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, GUARD)
    assert frames == [{"type": "hello", "cursor": 0}]
    assert hub.subscribers == set()
