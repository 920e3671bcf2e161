"""Agent endpoints: subscribe to their state, only what is missing, at any time.

Asterisk keeps an app's endpoint subscriptions while no socket is connected and counts every
subscribe (20 starts = 20 subscriptions = agent-channel events delivered many times). So the
current subscriptions are read from ``GET /applications/{app}`` first: only missing endpoints are
subscribed, endpoints no agent uses any more are unsubscribed. ``watch_endpoints()`` may be called
at any time (after a queue-file reload; reconciliation calls it for endpoints Asterisk did not
know yet), so an agent added later is rung without a reconnect.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from controller.acd import events as ev
from controller.ari.errors import AriError, AriNotFound

if TYPE_CHECKING:
    from controller.telephony.shell import Telephony

log = logging.getLogger("controller.telephony")

SUBSCRIBE_CHUNK = 50  # endpoint event sources per subscription request (URL length)
UNSUBSCRIBE_MAX = 64  # DELETEs per stale endpoint: Asterisk counts subscriptions, drop them all


class EndpointWatch:
    """Mixin of ``Telephony``."""

    async def watch_endpoints(self: Telephony, *, full: bool = True) -> None:
        """Subscribe to the configured agents' endpoints that Asterisk knows and we do not watch yet.

        ``full`` (at connect, after a reload) also feeds every endpoint's current state to the engine;
        otherwise only endpoints newly watched get their state fed (an event may be on its way for
        the others, and a stale listing must not overwrite it).
        """
        async with self._watch_lock:
            endpoints = sorted({a.endpoint for a in self.engine.agents.values()})
            states: dict[str, str] = {}
            for tech in sorted({e.partition("/")[0] for e in endpoints}):
                try:
                    found = await self.client.list_endpoints(tech)
                except AriNotFound:
                    found = []  # no such technology loaded in Asterisk: none of its endpoints exist
                for known in found:
                    states[f"{known.technology}/{known.resource}"] = known.state
            app = await self.client.get_application(self.app)
            subscribed = set(app.endpoint_ids)
            # Only endpoints Asterisk knows: one unknown source makes a whole subscription fail (422),
            # and one misconfigured agent must not stop everyone else's calls.
            missing = [e for e in endpoints if e in states and e not in subscribed]
            await self._subscribe(missing)
            await self._unsubscribe_stale({e for e in subscribed - set(endpoints) if "/" in e})
            newly = set(missing) | {e for e in endpoints if e in states and e in self.unknown_endpoints}
            for endpoint in endpoints:
                state = states.get(endpoint)
                if state is None:
                    if endpoint not in self.unknown_endpoints:
                        log.warning(
                            "agent endpoint %s does not exist in Asterisk; its agent is never rung"
                            " (check pjsip.conf and the queue file)",
                            endpoint,
                            extra={"endpoint": endpoint},
                        )
                    self.unknown_endpoints.add(endpoint)
                    if full:
                        self.feed(ev.EndpointState(endpoint, False))
                    continue
                if endpoint in self.unknown_endpoints:
                    self.unknown_endpoints.discard(endpoint)
                    log.info("agent endpoint %s now exists in Asterisk; watching it", endpoint)
                if full or endpoint in newly:
                    self.feed(ev.EndpointState(endpoint, state != "offline"))

    async def _subscribe(self: Telephony, endpoints: list[str]) -> None:
        sources = [f"endpoint:{e}" for e in endpoints]
        # Asterisk reads at most 4 KiB of request line: subscribe in chunks, not one long URL.
        for i in range(0, len(sources), SUBSCRIBE_CHUNK):
            chunk = sources[i : i + SUBSCRIBE_CHUNK]
            try:
                await self.client.subscribe(chunk)
                self.stats["endpoint_subscribed"] += len(chunk)
            except AriError as exc:
                if exc.status != 422:
                    raise
                for source in chunk:  # an endpoint removed meanwhile: subscribe the others
                    try:
                        await self.client.subscribe([source])
                        self.stats["endpoint_subscribed"] += 1
                    except AriError as one:
                        self.stats["endpoint_subscribe_failed"] += 1
                        log.warning("could not subscribe to %s: %s", source, one)

    async def _unsubscribe_stale(self: Telephony, endpoints: set[str]) -> None:
        for endpoint in sorted(endpoints):
            for _ in range(UNSUBSCRIBE_MAX):
                try:
                    app = await self.client.unsubscribe([f"endpoint:{endpoint}"])
                except AriError as exc:
                    log.info("could not unsubscribe from %s: %s", endpoint, exc)
                    break
                self.stats["endpoint_unsubscribed"] += 1
                if endpoint not in app.endpoint_ids:
                    break
            with contextlib.suppress(KeyError):
                self.unknown_endpoints.remove(endpoint)
