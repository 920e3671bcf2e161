"""The HTTP API of a standby replica: health, metrics, and "ask the active one" for the rest.

A standby has no engine state (it has not heard a single ARI event), so it answers nothing from
memory. ``/healthz`` answers 200 (a standby is healthy: it is ready to take over) with
``role: standby`` (``starting`` once it won the lease, until the active API replaces this one) and
the active replica's address; ``/metrics`` (admin token) says ``acd_active 0``;
every other path answers **503** ``{"error": "standby", "active": "<address>"}`` with headers
``Retry-After: 1`` and ``X-ACD-Active: <address>`` so a client or a load balancer can go to the
active replica (a redirect would make clients drop the Authorization header across hosts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from controller.api.auth import Auth, AuthError
from controller.api.errors import error_response
from controller.api.metrics import CONTENT_TYPE

__all__ = ["build_standby_app", "ha_metrics"]

Status = Callable[[], Awaitable[dict[str, Any]]]


def ha_metrics(node: Any) -> list[Metric]:
    """``acd_active``, takeovers, fencings and takeover times of one replica (active or standby)."""
    active = GaugeMetricFamily("acd_active", "1 on the active replica, 0 on a standby")
    active.add_metric([], 1.0 if node.role == "active" else 0.0)
    takeovers = CounterMetricFamily("acd_ha_takeovers", "Times this replica became the active one")
    takeovers.add_metric([], node.stats["takeovers"])
    lost = CounterMetricFamily("acd_ha_fenced", "Times this replica lost the lease and stopped acting")
    lost.add_metric([], node.stats["lost"])
    renew = CounterMetricFamily("acd_ha_renew_failures", "Lease renewals that failed (database slow or down)")
    renew.add_metric([], node.stats["renew_failures"])
    took = GaugeMetricFamily(
        "acd_ha_takeover_seconds", "Last takeover: previous active's last renewal -> this replica online"
    )
    took.add_metric([], node.takeover_seconds[-1] if node.takeover_seconds else 0.0)
    remaining = GaugeMetricFamily("acd_ha_lease_remaining_seconds", "How long this replica may still act")
    remaining.add_metric([], node.lease.remaining())
    return [active, takeovers, lost, renew, took, remaining]


class _Collector:
    def __init__(self, node: Any) -> None:
        self.node = node

    def collect(self):  # noqa: ANN201 - prometheus_client's protocol
        return ha_metrics(self.node)


def build_standby_app(node: Any, auth: Auth, status: Status) -> web.Application:
    """``status()`` -> {"active": address or None, "holder": ..., "database": bool}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(node))  # type: ignore[arg-type]

    async def healthz(_request: web.Request) -> web.Response:
        info = await status()
        # the node is already "active" while its term starts (restore, websocket, resync) and this
        # API still answers: say "starting", so nobody sends clients here before the active API is up
        role = "starting" if node.role == "active" else node.role
        return web.json_response({"status": "ok", "role": role, "ha": info})

    async def metrics(request: web.Request) -> web.Response:
        try:
            principal = auth.identify(request.headers.get("Authorization"))
        except AuthError as exc:
            return error_response(exc.status, exc.code, str(exc))
        if not principal.is_admin:
            return error_response(403, "forbidden", "this endpoint needs the admin token")
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})

    async def elsewhere(_request: web.Request) -> web.Response:
        info = await status()
        active = info.get("active") or ""
        headers = {"Retry-After": "1"}
        if active:
            headers["X-ACD-Active"] = active
        return error_response(
            503,
            "standby",
            "this controller is a standby; ask the active one" if active else "no active controller now",
            headers=headers,
            active=active or None,
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    return app
