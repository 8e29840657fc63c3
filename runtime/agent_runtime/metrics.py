"""Prometheus metrics of the request path, on one registry the gateway serves at /metrics.

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms); labels are the
route and endpoint names and the status code, never request data, so cardinality stays bounded.
The names alert rules and dashboards read come from `agent_runtime.metrics_signals`, so the
exporter and the rules cannot drift apart.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from agent_runtime import metrics_signals as signals

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "breaker_not_permitted",
    "breaker_state",
    "forget_endpoint",
    "render",
]

REGISTRY = CollectorRegistry(auto_describe=True)

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
requests = Counter(
    signals.REQUESTS_TOTAL.removesuffix("_total"),
    "Requests answered by the gateway, by route, endpoint and status code.",
    ["route", "endpoint", "code"],
    registry=REGISTRY,
)
errors = Counter(
    "agent_gateway_errors",
    "Requests that failed in the gateway or upstream, by kind.",
    ["route", "kind"],
    registry=REGISTRY,
)
latency = Histogram(
    signals.REQUEST_DURATION,
    "Time from request received to response headers sent, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
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
ejected = Gauge(signals.ENDPOINTS_EJECTED, "Endpoints ejected now.", ["route"], registry=REGISTRY)
endpoints = Gauge("agent_gateway_endpoints", "Endpoints known, by route.", ["route"], registry=REGISTRY)
healthy_endpoints = Gauge(
    "agent_gateway_endpoints_healthy", "Endpoints passing active health checks.", ["route"], registry=REGISTRY
)
in_flight = Gauge("agent_gateway_in_flight", "Requests in flight in the gateway.", registry=REGISTRY)
shed = Counter("agent_gateway_shed", "Requests shed with 503 because of overload.", registry=REGISTRY)
tunnels = Counter("agent_gateway_tunnels", "Upgrade (WebSocket) tunnels opened, by route.", ["route"], registry=REGISTRY)
tunnels_open = Gauge("agent_gateway_tunnels_open", "Upgrade (WebSocket) tunnels open now.", ["route"], registry=REGISTRY)
route_ready = Gauge(
    "agent_gateway_route_ready", "1 when the route has endpoints to send to, 0 when not.", ["route"], registry=REGISTRY
)
config_reloads = Counter(
    "agent_gateway_config_reloads", "Config reloads, by result.", ["result"], registry=REGISTRY
)


def forget_endpoint(route: str, endpoint: str) -> None:
    """Delete every series of a removed endpoint, so nothing keeps alerting on what is gone."""
    for metric in (breaker_state, breaker_not_permitted, breaker_transitions, requests, ejections):
        labelnames = metric._labelnames  # noqa: SLF001 - prometheus_client has no public lookup
        for values in [v for v in list(metric._metrics) if dict(zip(labelnames, v)).get("route") == route
                       and dict(zip(labelnames, v)).get("endpoint") == endpoint]:
            metric.remove(*values)


def render() -> bytes:
    return generate_latest(REGISTRY)
