"""Prometheus metrics (``GET /metrics``), one registry per controller.

Live figures (calls waiting, agents by state, websocket reconnects, dropped events, store buffer)
are read at scrape time from the objects that own them, so nothing is maintained twice. Offers by
outcome are counted by a shell listener; reaction latencies are observed as the shell appends them
to its bounded ``reactions`` deques (each deque is swapped for one that also feeds the histogram).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.acd import commands as cmd
from controller.acd.engine import CallState

if TYPE_CHECKING:
    from controller.app import Controller
    from controller.panel.hub import PanelHub
    from controller.store.writer import HistoryWriter

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REACTION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _ObservedDeque(deque):
    """A bounded deque that also reports every appended value."""

    def __init__(self, items: Iterable[float], maxlen: int | None, observe: Callable[[float], None]) -> None:
        super().__init__(items, maxlen)
        self._observe = observe

    def append(self, value: float) -> None:
        super().append(value)
        self._observe(value)


class Metrics(Collector):
    def __init__(self, controller: Controller, writer: HistoryWriter | None = None) -> None:
        self.controller = controller
        self.writer = writer
        self.outbox_pending: Callable[[], int | None] | None = None
        self.panel: PanelHub | None = None
        self.wallboard: Any = None  # controller.wallboard.hub.WallboardHub
        self.offers: Counter[str] = Counter()
        self.api_rejected: Counter[str] = Counter()  # by error code; the API's errors middleware counts
        self.reloads: Counter[str] | None = None  # queue-file reloads by result (controller.reload)
        self.extra_collectors: list[Callable[[], Iterable[Metric]]] = []  # e.g. hot standby (controller.ha)
        self.registry = CollectorRegistry(auto_describe=False)
        self.reaction = Histogram(
            "acd_reaction_seconds",
            "Controller reaction time: event handled -> ARI request sent",
            ["kind"],
            buckets=REACTION_BUCKETS,
            registry=self.registry,
        )
        reactions = controller.shell.reactions
        for kind in ("stasis_to_dial", "answer_to_bridge", "decline_to_next_dial"):
            old = getattr(reactions, kind)
            setattr(reactions, kind, _ObservedDeque(old, old.maxlen, self.reaction.labels(kind).observe))
        self.registry.register(self)
        controller.shell.listeners.append(self.listener)

    def listener(self, c: cmd.Notify | cmd.Record) -> None:
        if type(c) is cmd.Record and c.kind == "offer.ended":
            self.offers[c.data["outcome"]] += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        engine = self.controller.engine
        waiting = GaugeMetricFamily("acd_calls_waiting", "Calls in queue not yet connected", labels=["queue"])
        longest = GaugeMetricFamily("acd_longest_wait_seconds", "Longest current wait", labels=["queue"])
        counts: Counter[str] = Counter()
        oldest: dict[str, float] = {}
        now = self.controller.clock.now()
        for call in engine.calls.values():
            if call.state in (CallState.WAITING, CallState.OFFERING):
                counts[call.queue] += 1
                oldest[call.queue] = max(oldest.get(call.queue, 0.0), now - call.arrived_at)
        for queue in engine.setup.queues:
            waiting.add_metric([queue], counts[queue])
            longest.add_metric([queue], oldest.get(queue, 0.0))
        yield waiting
        yield longest
        agents = GaugeMetricFamily("acd_agents", "Agents by state", labels=["state"])
        states = Counter(a.status for a in engine.agents.values())
        for state, n in sorted(states.items()):
            agents.add_metric([state], n)
        yield agents
        offers = CounterMetricFamily("acd_offers", "Offers ended, by outcome", labels=["outcome"])
        for outcome, n in sorted(self.offers.items()):
            offers.add_metric([outcome], n)
        yield offers
        rejected = CounterMetricFamily(
            "acd_api_rejected", "HTTP API requests refused (4xx), by error", labels=["error"]
        )
        for error, n in sorted(self.api_rejected.items()):
            rejected.add_metric([error], n)
        yield rejected
        stream = self.controller.stream
        yield _gauge(
            "acd_ari_connected", "1 while the ARI events websocket is connected", int(stream.connected)
        )
        yield _counter("acd_ari_reconnects", "ARI websocket reconnects", stream.stats["reconnects"])
        dropped = CounterMetricFamily(
            "acd_ari_events_dropped", "ARI events not handled, by reason", labels=["reason"]
        )
        for reason, key in (
            ("unknown", "unknown_events"),
            ("malformed", "malformed_events"),
            ("handler_error", "handler_errors"),
        ):
            dropped.add_metric([reason], stream.stats[key])
        yield dropped
        shell = self.controller.shell
        yield _counter(
            "acd_reconcile_runs",
            "Reconciliation passes with Asterisk (resyncs included)",
            shell.reconcile_runs,
        )
        repairs = CounterMetricFamily(
            "acd_reconcile_repairs",
            "Drift between the engine and Asterisk repaired, by kind",
            labels=["kind"],
        )
        for kind, n in sorted(shell.repairs.items()):
            repairs.add_metric([kind], n)
        yield repairs
        failures = CounterMetricFamily(
            "acd_ari_action_failures",
            "ARI requests of a call that failed and were handled, by kind",
            labels=["kind"],
        )
        for kind in (
            "originate_failed",
            "hangup_failed",
            "park_failed",
            "prompt_failed",
            "connect_failed",
            "continue_failed",
            "ring_not_stored",
            "park_not_stored",
        ):
            failures.add_metric([kind], shell.stats[kind])
        yield failures
        yield _counter(
            "acd_ari_event_filter_failures",
            "Connects where Asterisk refused the event filter (all events are sent then)",
            shell.stats["event_filter_failed"],
        )
        yield _counter(
            "acd_ari_duplicate_events",
            "ARI events delivered twice and dropped",
            shell.stats["duplicate_event"],
        )
        ignored = CounterMetricFamily(
            "acd_engine_ignored_events",
            "Events the engine ignored (stale, duplicate, unknown)",
            labels=["reason"],
        )
        for reason, n in sorted(engine.stats.items()):
            if reason != "new_round":
                ignored.add_metric([reason], n)
        yield ignored
        if self.reloads is not None:
            reloads = CounterMetricFamily(
                "acd_config_reloads", "Queue-file reloads, by result", labels=["result"]
            )
            for result in ("ok", "rejected", "failed"):
                reloads.add_metric([result], self.reloads[result])
            yield reloads
        if self.writer is not None:
            w = self.writer
            yield _gauge("acd_store_buffered_records", "History records waiting to be written", w.depth)
            yield _gauge("acd_store_up", "1 while the last database write succeeded", int(w.db_up))
            yield _counter("acd_store_written_records", "History records written", w.stats["written"])
            yield _counter(
                "acd_store_dropped_records", "History records dropped (buffer full)", w.stats["dropped"]
            )
            yield _counter(
                "acd_store_write_failures", "Failed database write attempts", w.stats["write_failures"]
            )
        if self.panel is not None:
            yield _gauge("acd_panel_connections", "Agent panel pages connected", self.panel.connections)
            crm = self.panel.crm
            if crm is not None:
                lookups = CounterMetricFamily("acd_crm_lookups", "CRM lookups, by result", labels=["result"])
                for result in ("ok", "timeout", "error"):
                    lookups.add_metric([result], crm.stats[result])
                yield lookups
        if self.wallboard is not None:
            yield _gauge(
                "acd_wallboard_connections", "Supervisor wallboards connected", self.wallboard.connections
            )
        if self.outbox_pending is not None:
            pending = self.outbox_pending()
            if pending is not None:
                yield _gauge("acd_events_pending", "Outgoing events not yet acknowledged", pending)
        for extra in self.extra_collectors:
            yield from extra()


def _gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: Any) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)
