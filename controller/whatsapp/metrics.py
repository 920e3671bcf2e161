"""The sidecar's counters, and their Prometheus export (``GET /metrics``, admin token).

Every rejection and every processed item is counted in :class:`Counters` (cheap, in-process;
``/healthz`` shows a snapshot). :class:`PrometheusExport` turns them into ``acd_wa_<name>_total``
counters with their labels (e.g. ``acd_wa_webhook_rejected_total{reason="signature_wrong"}``) and
adds gauges read at scrape time (stream subscribers, ingest backlog, orphan statuses, ...). Each
service has its own ``CollectorRegistry``, so several services in one process (tests) don't mix.
"""

from __future__ import annotations

import threading
from collections import Counter as _Counter
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "COUNTERS", "Counters", "PrometheusExport"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "acd_wa_"

# name -> (help, label names). Listed counters are exported from the start (at 0 when unlabelled),
# so a dashboard's rate() has a series before the first event; unlisted names are exported too.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "webhook_requests": ("Webhook POSTs received", ()),
    "webhook_accepted": ("Webhook bodies verified, stored and answered 200", ()),
    "webhook_rejected": ("Webhook requests refused, by reason", ("reason",)),
    "webhook_store_failed": ("Webhook bodies that could not be stored (answered 500)", ()),
    "webhook_processed": ("Webhook bodies processed, each delivery counted (re-POSTs too)", ()),
    "webhook_items": ("Items in processed webhook deliveries (duplicates included), by kind", ("kind",)),
    "webhook_duplicates": ("Duplicate webhook items ignored, by kind", ("kind",)),
    "webhook_problems": ("Webhook content skipped as malformed", ()),
    "webhook_process_failed": ("Stored bodies whose processing failed (kept for retry)", ()),
    "statuses_orphaned": ("Statuses stored before their message was known", ()),
    "statuses_correlated_by_callback": ("Statuses matched to their message by callback data", ()),
    "statuses_orphans_expired": ("Orphan statuses dropped after the TTL", ()),
    "send_queued": ("Agent messages queued for sending", ()),
    "send_accepted": ("Messages accepted by Meta", ()),
    "send_failed": ("Messages Meta refused, by code", ("code", "retry_class")),
    "send_retried": ("Sends retried after a transient error, by code", ("code",)),
    "send_unknown": ("Sends with an unknown outcome (timeout, network error)", ()),
    "send_refused": ("Send requests refused before calling Meta, by reason", ("reason",)),
    "send_crashed": ("Sends that failed unexpectedly", ()),
    "api_rejected": ("API requests refused, by reason", ("reason",)),
    "cors_refused": ("Browser requests from an origin not allowed, by kind", ("kind",)),
    "stream_connections": ("Live stream connections opened, by kind", ("kind",)),
    "relay_frames_published": ("Change frames published to the live stream", ()),
    "relay_webhook_delivered": ("Changes delivered to the outgoing webhook", ()),
    "relay_webhook_failed": ("Failed outgoing webhook deliveries", ()),
}


def _key(name: str, labels: dict[str, object]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


class Counters:
    """Monotonic counters keyed by name and labels, e.g. ``webhook_rejected{reason="signature"}``."""

    def __init__(self) -> None:
        self._values: _Counter[tuple[str, tuple[tuple[str, str], ...]]] = _Counter()
        self._lock = threading.Lock()

    @staticmethod
    def _id(name: str, labels: dict[str, object]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted((k, str(v)) for k, v in labels.items()))

    def inc(self, name: str, n: int = 1, **labels: object) -> None:
        with self._lock:
            self._values[self._id(name, labels)] += n

    def get(self, name: str, **labels: object) -> int:
        with self._lock:
            return self._values.get(self._id(name, labels), 0)

    def items(self) -> list[tuple[str, dict[str, str], int]]:
        with self._lock:
            return [(name, dict(labels), v) for (name, labels), v in sorted(self._values.items())]

    def snapshot(self) -> dict[str, int]:
        return {_key(name, labels): v for name, labels, v in self.items()}


Gauges = Callable[[], Awaitable[list[tuple[str, str, float]]]]


class PrometheusExport(Collector):
    """Counters plus scrape-time gauges in a private registry; :meth:`render` is the /metrics body."""

    def __init__(self, counters: Counters, gauges: Gauges) -> None:
        self.counters = counters
        self.gauges = gauges
        self._gauge_values: list[tuple[str, str, float]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    async def render(self) -> bytes:
        self._gauge_values = await self.gauges()
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        by_name: dict[str, list[tuple[dict[str, str], int]]] = {name: [] for name in COUNTERS}
        for name, labels, value in self.counters.items():
            by_name.setdefault(name, []).append((labels, value))
        for name, samples in by_name.items():
            doc, label_names = COUNTERS.get(name, (name.replace("_", " "), ()))
            names = sorted(set(label_names).union(*(s[0] for s in samples)))
            family = CounterMetricFamily(PREFIX + name, doc, labels=names)
            if not names and not samples:
                family.add_metric([], 0)
            for labels, value in samples:
                family.add_metric([labels.get(n, "") for n in names], value)
            yield family
        for name, doc, value in self._gauge_values:
            yield GaugeMetricFamily(PREFIX + name, doc, value=value)
