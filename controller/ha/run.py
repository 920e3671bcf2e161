"""``acdctl run`` with ``ACD_HA=true``: one replica of a hot-standby group.

Exit codes: 0 after SIGINT/SIGTERM (the lease is released: a standby takes over at once), 2 for a
configuration error (as without HA), 3 when this replica was fenced (lost the lease, its database
or its ARI connection while active): its supervisor restarts it and it comes back as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from controller.acd.setup import AcdSetup
from controller.app import Controller
from controller.ari.errors import AriConnectionError, AriError, AriUnauthorized
from controller.config import Settings, load_agent_tokens
from controller.ha.replica import Replica

log = logging.getLogger("controller.ha")

FENCED_EXIT = 3


def _stderr(message: str) -> None:
    print(f"acdctl: {message}", file=sys.stderr)


async def run_ha(settings: Settings, setup: AcdSetup) -> int:
    probe = Controller.from_settings(settings, setup)
    try:
        await probe.check_ari()
    except AriUnauthorized as exc:
        _stderr(str(exc))
        return 2
    except (AriConnectionError, AriError) as exc:
        _stderr(f"{exc} (is Asterisk running with ARI enabled in http.conf and ari.conf? check ACD_ARI_URL)")
        return 2
    finally:
        await probe.client.close()
    replica = Replica(
        settings,
        lambda: Controller.from_settings(settings, setup),
        agent_tokens=load_agent_tokens(settings.config),
    )
    try:
        await replica.start()
    except OSError as exc:
        _stderr(f"settings: ACD_HTTP_HOST/ACD_HTTP_PORT: cannot listen: {exc.strerror or exc}")
        await replica.stop()
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.ensure_future(stop.wait())
    assert replica.ended is not None
    await asyncio.wait({stopper, replica.ended}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    reason = await replica.stop()
    log.info("stopping", extra={"reason": reason})
    return 0 if reason == "stopped" else FENCED_EXIT
