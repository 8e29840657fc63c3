"""The metric names shared by the gateway, the agents, the recovery jobs and the alert rules.

One list, so the PromQL that `components/promql.py` generates, the in-process evaluator in
`agent_runtime.alerts` and the exporters cannot drift apart.

Exported by the gateway (one series set per gateway replica):

- ``agent_gateway_requests_total{route,endpoint,code}`` counter: proxied requests by final HTTP
  status code as a string ("200", "503"). Requests the gateway answers itself (no endpoint,
  overload shedding) carry ``endpoint=""``.
- ``agent_gateway_request_duration_seconds{route}`` histogram: time from request received to
  response headers sent, including retries.
- ``agent_breaker_state{route,endpoint}`` gauge: 0 closed, 1 open, 2 half-open.
- ``agent_endpoints_ejected{route}`` gauge: endpoints currently ejected by outlier detection.
- ``agent_retries_total{route}`` counter: retries sent (not counting first tries).
- ``agent_retry_budget_exhausted_total{route}`` counter: retries refused by the retry budget.

Reported by the agents themselves (scraped from each agent pod):

- ``agent_queue_length{cluster}`` gauge: work items waiting in this agent.
- ``agent_queue_oldest_age_seconds{cluster}`` gauge: age of the oldest waiting item (0 if none).

Written by the backup and restore-drill jobs (textfile collector or Pushgateway):

- ``agent_backup_last_success_timestamp_seconds{source}`` gauge: Unix time of the newest
  complete backup of that source.
- ``agent_restore_drill_last_success_timestamp_seconds`` gauge: Unix time of the last drill that
  restored, verified and met both targets.
- ``agent_restore_drill_rto_seconds`` gauge: measured time to restore and verify in the last drill.
- ``agent_restore_drill_rpo_seconds`` gauge: age of the newest restorable point in the last drill.

`SIGNALS` maps each alert signal of `agent_runtime.config.AlertRule` to the metric it is
computed from and the label that tells its instances apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "BACKUP_LAST_SUCCESS",
    "BREAKER_STATE",
    "BREAKER_STATES",
    "DRILL_LAST_SUCCESS",
    "DRILL_RPO",
    "DRILL_RTO",
    "ENDPOINTS_EJECTED",
    "GatewayMetrics",
    "LATENCY_BUCKETS",
    "QUEUE_LENGTH",
    "QUEUE_OLDEST_AGE",
    "REQUESTS_TOTAL",
    "REQUEST_DURATION",
    "RETRIES_TOTAL",
    "RETRY_BUDGET_EXHAUSTED_TOTAL",
    "SIGNALS",
    "SignalSpec",
    "AgentQueueMetrics",
]

REQUESTS_TOTAL = "agent_gateway_requests_total"
REQUEST_DURATION = "agent_gateway_request_duration_seconds"
BREAKER_STATE = "agent_breaker_state"
ENDPOINTS_EJECTED = "agent_endpoints_ejected"
RETRIES_TOTAL = "agent_retries_total"
RETRY_BUDGET_EXHAUSTED_TOTAL = "agent_retry_budget_exhausted_total"
QUEUE_LENGTH = "agent_queue_length"
QUEUE_OLDEST_AGE = "agent_queue_oldest_age_seconds"
BACKUP_LAST_SUCCESS = "agent_backup_last_success_timestamp_seconds"
DRILL_LAST_SUCCESS = "agent_restore_drill_last_success_timestamp_seconds"
DRILL_RTO = "agent_restore_drill_rto_seconds"
DRILL_RPO = "agent_restore_drill_rpo_seconds"

BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2}

# Agent calls take seconds, not milliseconds: buckets reach well past the 30 s default timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class SignalSpec:
    """Where an alert signal comes from: its metric, and the label naming one instance of it."""

    metric: str
    # The label an alert on this signal is per (route, cluster, source), or None for one series.
    key_label: str | None
    # Ratio and rate signals are computed over the rule's window; gauges are read as they are.
    windowed: bool
    unit: str


SIGNALS: dict[str, SignalSpec] = {
    "error_rate": SignalSpec(REQUESTS_TOTAL, "route", True, "ratio"),
    "availability": SignalSpec(REQUESTS_TOTAL, "route", True, "ratio"),
    "latency_p99_seconds": SignalSpec(REQUEST_DURATION, "route", True, "seconds"),
    "queue_length": SignalSpec(QUEUE_LENGTH, "cluster", False, "items"),
    "queue_oldest_age_seconds": SignalSpec(QUEUE_OLDEST_AGE, "cluster", False, "seconds"),
    "breaker_open": SignalSpec(BREAKER_STATE, "route", False, "endpoints"),
    "endpoints_ejected": SignalSpec(ENDPOINTS_EJECTED, "route", False, "endpoints"),
    "backup_age_seconds": SignalSpec(BACKUP_LAST_SUCCESS, "source", False, "seconds"),
    "restore_drill_age_seconds": SignalSpec(DRILL_LAST_SUCCESS, None, False, "seconds"),
    "restore_drill_rto_seconds": SignalSpec(DRILL_RTO, None, False, "seconds"),
    "restore_drill_rpo_seconds": SignalSpec(DRILL_RPO, None, False, "seconds"),
}


class GatewayMetrics:
    """The gateway's collectors, registered on one registry under the names above.

    The gateway may create its own collectors instead; these exist so tests, the example app
    and the gateway agree on names, labels and buckets.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            REQUESTS_TOTAL.removesuffix("_total"),
            "Requests proxied by the gateway, by route, endpoint and final status code.",
            ("route", "endpoint", "code"),
            registry=r,
        )
        self.duration = Histogram(
            REQUEST_DURATION,
            "Gateway request duration, retries included.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.breaker_state = Gauge(
            BREAKER_STATE, "Circuit breaker state: 0 closed, 1 open, 2 half-open.", ("route", "endpoint"), registry=r
        )
        self.ejected = Gauge(ENDPOINTS_EJECTED, "Endpoints ejected by outlier detection.", ("route",), registry=r)
        self.retries = Counter(
            RETRIES_TOTAL.removesuffix("_total"), "Retries sent (first tries excluded).", ("route",), registry=r
        )
        self.budget_exhausted = Counter(
            RETRY_BUDGET_EXHAUSTED_TOTAL.removesuffix("_total"),
            "Retries refused because the retry budget was spent.",
            ("route",),
            registry=r,
        )


class AgentQueueMetrics:
    """The two queue gauges an agent exports so the platform can scale and alert on backlog."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.length = Gauge(QUEUE_LENGTH, "Work items waiting.", ("cluster",), registry=self.registry)
        self.oldest_age = Gauge(
            QUEUE_OLDEST_AGE, "Age of the oldest waiting work item (0 when empty).", ("cluster",), registry=self.registry
        )
