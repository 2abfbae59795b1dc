"""Prometheus metrics that cost almost nothing on hot paths.

Hot paths bump plain integer attributes (no locks, no label lookups); a custom collector turns
them into Prometheus families when ``/metrics`` is scraped. Histograms are fixed-bucket arrays.
"""

from __future__ import annotations

import bisect
import os
import resource
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
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
CLOSE_CODES = frozenset({1000, 1001, 1005, 1006, 1008, 1009, 1011, 1013})
"""Close codes counted by their own label; any other is counted as ``other``."""


def close_code_label(code: int) -> str:
    return str(code) if code in CLOSE_CODES else "other"


def rss_bytes() -> int:
    """Resident set size of this process (current, not peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (upper bound, count) pairs, ``+Inf`` last."""
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            acc += n
            buckets.append((repr(float(bound)), acc))
        acc += self.counts[-1]
        buckets.append(("+Inf", acc))
        return buckets

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        return HistogramMetricFamily(name, doc, buckets=self.buckets(), sum_value=self.sum)


class Metrics:
    """Counters bumped by the gateway; read by :class:`GatewayCollector`."""

    def __init__(self) -> None:
        self.connections_opened = 0
        self.connections_closed = 0
        self.messages_in = 0
        self.deliveries = 0
        self.publications = 0
        self.messages_out_by_type: Counter[str] = Counter()
        """Replies and error frames by their ``type`` (the types the server's handlers
        answer with: bounded)."""
        self.messages_in_by_type: Callable[[], dict[str, int]] | None = None
        """Set by the node: client messages received per registered type."""
        self.ws_closes: Counter[str] = Counter()
        """WebSocket closes by close code (see :func:`close_code_label`)."""
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
        self.http_latency: dict[tuple[str, str, str], Histogram] = {}
        """(method, route template, status) -> request duration: bounded by the routes."""
        self.broker_publish_seconds = Histogram(LATENCY_BUCKETS)
        """Round trip of a publish through the broker (for Redis: the script call)."""
        self.flush_dropped = 0
        """Pending writes that could not be stored and were dropped alone."""

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        histogram = self.http_latency.get(key)
        if histogram is None:
            histogram = self.http_latency[key] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    @property
    def messages_out(self) -> int:
        return sum(self.messages_out_by_type.values())


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
        yield _labelled(
            "ws_messages_sent",
            "Replies and error frames by type",
            ("type",),
            m.messages_out_by_type,
        )
        if m.messages_in_by_type is not None:
            by_type = Counter(m.messages_in_by_type())
            by_type["other"] = max(0, m.messages_in - sum(by_type.values()))
            yield _labelled(
                "ws_messages_received",
                "Client messages by type (other: unknown, invalid or dynamic-route types)",
                ("type",),
                by_type,
            )
        yield _labelled("ws_closes", "WebSocket closes by close code", ("code",), m.ws_closes)
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
        yield _labelled(
            "rate_limited",
            "Refused by rate limits (login_user: slowed down)",
            ("class",),
            m.rate_limited,
        )
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
        yield _labelled_histograms(
            "pygw_http_request_seconds",
            "HTTP request duration by method, route template and status",
            ("method", "route", "status"),
            m.http_latency,
        )
        yield m.broker_publish_seconds.family(
            "pygw_broker_publish_seconds", "Round trip of a publish through the broker"
        )
        yield counter(
            "write_behind_dropped",
            "Pending writes that could not be stored and were dropped alone",
            m.flush_dropped,
        )


def _labelled_histograms(
    name: str, doc: str, labels: tuple[str, ...], values: Mapping[tuple[str, str, str], Histogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for key, histogram in sorted(values.items()):
        family.add_metric(list(key), histogram.buckets(), histogram.sum)
    return family


def _labelled(
    name: str, doc: str, labels: tuple[str, ...], values: Counter[Any]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"pygw_{name}", doc, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def registry_for(metrics: Metrics, gauges: Callable[[], dict[str, float]]) -> CollectorRegistry:
    """pygw's families plus the process (CPU, memory, descriptors), platform and GC ones."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(metrics, gauges))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
