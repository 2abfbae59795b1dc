"""Prometheus metrics that cost almost nothing on hot paths.

Hot paths bump plain integer attributes (no locks, no label lookups); a custom collector turns
them into Prometheus families when ``/metrics`` is scraped. Histograms are fixed-bucket arrays.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            acc += n
            buckets.append((repr(float(bound)), acc))
        acc += self.counts[-1]
        buckets.append(("+Inf", acc))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


class Metrics:
    """Counters bumped by the gateway; read by :class:`GatewayCollector`."""

    def __init__(self) -> None:
        self.connections_opened = 0
        self.connections_closed = 0
        self.messages_in = 0
        self.messages_out = 0
        self.deliveries = 0
        self.publications = 0
        self.ws_errors = 0
        self.auth_failures = 0
        self.connections_refused = 0
        """Upgrades refused because this process holds its maximum of WebSockets."""
        self.auth: Counter[str] = Counter()
        """login_success, login_failure, refresh_success, refresh_failure, token_invalid, ..."""
        self.rate_limited: Counter[str] = Counter()
        self.http_requests: Counter[str] = Counter()
        """Keyed by status class: 2xx, 4xx, 5xx."""
        self.proxy: Counter[tuple[str, str]] = Counter()
        """(route, outcome) -> count."""
        self.publish_latency = Histogram(LATENCY_BUCKETS)
        self.flush_batch_size = Histogram(SIZE_BUCKETS)
        self.flush_seconds = Histogram(LATENCY_BUCKETS)


class GatewayCollector(Collector):
    def __init__(self, metrics: Metrics, gauges: Callable[[], dict[str, float]]) -> None:
        self.metrics = metrics
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        for name, value in self.gauges().items():
            yield GaugeMetricFamily(f"pygw_{name}", name.replace("_", " "), value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"pygw_{name}", doc, value=value)

        yield counter("ws_connections_opened", "WebSocket connections opened", m.connections_opened)
        yield counter("ws_connections_closed", "WebSocket connections closed", m.connections_closed)
        yield counter("ws_messages_in", "Client WebSocket messages received", m.messages_in)
        yield counter("ws_messages_out", "Replies sent to clients", m.messages_out)
        yield counter("ws_errors", "Error frames sent to clients", m.ws_errors)
        yield counter("publications", "Publications delivered to this node", m.publications)
        yield counter("deliveries", "Local deliveries (publication x subscriber)", m.deliveries)
        yield counter("ws_auth_failures", "WebSocket upgrades with a bad token", m.auth_failures)
        yield counter(
            "ws_connections_refused",
            "WebSocket upgrades refused at PYGW_WS_MAX_CONNECTIONS",
            m.connections_refused,
        )
        yield _labelled("auth", "Authentication outcomes", ("outcome",), m.auth)
        yield _labelled("rate_limited", "Refused by rate limits", ("class",), m.rate_limited)
        yield _labelled("http_responses", "HTTP responses by class", ("status",), m.http_requests)
        yield _labelled("proxy_requests", "Proxied requests", ("route", "outcome"), m.proxy)
        yield m.publish_latency.family(
            "pygw_publish_deliver_seconds", "Publish to local delivery latency"
        )
        yield m.flush_batch_size.family(
            "pygw_session_flush_batch_size", "Session updates written per write-behind flush"
        )
        yield m.flush_seconds.family(
            "pygw_session_flush_seconds", "Duration of write-behind flushes"
        )


def _labelled(
    name: str, doc: str, labels: tuple[str, ...], values: Counter[Any]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"pygw_{name}", doc, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def registry_for(metrics: Metrics, gauges: Callable[[], dict[str, float]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(metrics, gauges))
    return registry
