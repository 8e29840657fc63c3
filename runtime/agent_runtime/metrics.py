"""Prometheus metrics of the request path, on one registry the gateway serves at /metrics.

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms); labels are the
route and endpoint names and the status code, never request data, so cardinality stays bounded.
The names alert rules and dashboards read come from `agent_runtime.metrics_signals`, so the
exporter and the rules cannot drift apart.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from agent_runtime import metrics_signals as signals
from agent_runtime.breaker import State

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "RouteRecorder",
    "forget_route",
    "route_recorder",
    "REGISTRY",
    "breaker_not_permitted",
    "breaker_state",
    "forget_endpoint",
    "render",
]

REGISTRY = CollectorRegistry(auto_describe=True)

# -- the per-request families: plain integers, exported at scrape time ------------------------
#
# A labelled prometheus_client Counter and Histogram cost a lock and a few dict lookups per
# request, a visible share of a ~35 us per-request budget. The request path instead adds to plain
# integers in a `RouteRecorder`; the collector below turns them into the same families (names,
# labels, buckets) when /metrics is scraped.

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RouteRecorder:
    """Request counts (by endpoint and status code) and the latency histogram of one route."""

    __slots__ = ("route", "counts", "buckets", "total", "count")

    def __init__(self, route: str) -> None:
        self.route = route
        self.counts: dict[tuple[str, int], int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf only
        self.total = 0.0
        self.count = 0

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        """One answered request: who answered (or "-"), its status code, time to response head."""
        key = (endpoint, status)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def forget_endpoint(self, endpoint: str) -> None:
        for key in [k for k in self.counts if k[0] == endpoint]:
            del self.counts[key]


_recorders: dict[str, RouteRecorder] = {}


def route_recorder(route: str) -> RouteRecorder:
    """The recorder of `route` (one per route name per process, kept across config reloads)."""
    rec = _recorders.get(route)
    if rec is None:
        rec = _recorders[route] = RouteRecorder(route)
    return rec


def forget_route(route: str) -> None:
    """A route removed from the config: its series leave /metrics."""
    _recorders.pop(route, None)


class _RequestCollector:
    def collect(self) -> Iterator[Metric]:
        counts = CounterMetricFamily(
            signals.REQUESTS_TOTAL.removesuffix("_total"),
            "Requests answered by the gateway, by route, endpoint and status code.",
            labels=["route", "endpoint", "code"],
        )
        latency = HistogramMetricFamily(
            signals.REQUEST_DURATION,
            "Time from request received to response headers sent, by route.",
            labels=["route"],
        )
        for name, rec in list(_recorders.items()):
            for (endpoint, status), n in list(rec.counts.items()):
                counts.add_metric([name, endpoint, str(status)], n)
            cumulative = 0
            buckets = []
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), rec.buckets, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            latency.add_metric([name], buckets, rec.total)
        yield counts
        yield latency

    def describe(self) -> Iterator[Metric]:
        return iter(())


REGISTRY.register(_RequestCollector())

breaker_state = Gauge(
    signals.BREAKER_STATE,
    "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
    ["route", "endpoint"],
    registry=REGISTRY,
)
breaker_not_permitted = Counter(
    "agent_breaker_calls_not_permitted",
    "Calls rejected by an open or saturated half-open circuit breaker.",
    ["route", "endpoint"],
    registry=REGISTRY,
)
breaker_transitions = Counter(
    "agent_breaker_transitions",
    "Circuit breaker state transitions.",
    ["route", "endpoint", "to_state"],
    registry=REGISTRY,
)
errors = Counter(
    "agent_gateway_errors",
    "Requests that failed in the gateway or upstream, by kind.",
    ["route", "kind"],
    registry=REGISTRY,
)
retries = Counter(signals.RETRIES_TOTAL.removesuffix("_total"), "Retries sent upstream.", ["route"], registry=REGISTRY)
retry_budget_exhausted = Counter(
    signals.RETRY_BUDGET_EXHAUSTED_TOTAL.removesuffix("_total"),
    "Retries not sent because the retry budget was empty.",
    ["route"],
    registry=REGISTRY,
)
ejections = Counter(
    "agent_gateway_ejections",
    "Outlier ejections of an endpoint.",
    ["route", "endpoint", "reason"],
    registry=REGISTRY,
)
ejections_refused = Counter(
    "agent_gateway_ejections_refused",
    "Ejections that max_ejection_percent did not allow (Envoy's ejections_overflow).",
    ["route", "reason"],
    registry=REGISTRY,
)
ejected = Gauge(signals.ENDPOINTS_EJECTED, "Endpoints ejected now.", ["route"], registry=REGISTRY)
endpoints = Gauge("agent_gateway_endpoints", "Endpoints known, by route.", ["route"], registry=REGISTRY)
healthy_endpoints = Gauge(
    "agent_gateway_endpoints_healthy", "Endpoints passing active health checks.", ["route"], registry=REGISTRY
)
in_flight = Gauge(signals.IN_FLIGHT, "Requests in flight in the gateway.", registry=REGISTRY)
shed = Counter(
    signals.SHED_TOTAL.removesuffix("_total"), "Requests shed with 503 because of overload.", registry=REGISTRY
)
tunnels = Counter(
    "agent_gateway_tunnels", "Upgrade (WebSocket) tunnels opened, by route.", ["route"], registry=REGISTRY
)
tunnels_open = Gauge(
    "agent_gateway_tunnels_open", "Upgrade (WebSocket) tunnels open now.", ["route"], registry=REGISTRY
)
route_ready = Gauge(
    signals.ROUTE_READY, "1 when the route has endpoints to send to, 0 when not.", ["route"], registry=REGISTRY
)
config_reloads = Counter("agent_gateway_config_reloads", "Config reloads, by result.", ["result"], registry=REGISTRY)


# The values the endpoint-labelled series can take besides route and endpoint, so a removed
# endpoint's series are deleted through prometheus_client's public `remove`, never its internals.
_BREAKER_STATES = tuple(state.name.lower() for state in State)
_EJECTION_REASONS = ("consecutive_5xx", "consecutive_gateway_failure")


def _remove(metric: Counter | Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass  # never created: nothing to delete


def forget_endpoint(route: str, endpoint: str) -> None:
    """Delete every series of a removed endpoint, so nothing keeps alerting on what is gone."""
    rec = _recorders.get(route)
    if rec is not None:
        rec.forget_endpoint(endpoint)
    _remove(breaker_state, route, endpoint)
    _remove(breaker_not_permitted, route, endpoint)
    for state in _BREAKER_STATES:
        _remove(breaker_transitions, route, endpoint, state)
    for reason in _EJECTION_REASONS:
        _remove(ejections, route, endpoint, reason)


def render() -> bytes:
    return generate_latest(REGISTRY)
