"""The metric names shared by the gateway, the agents, the recovery jobs and the alert rules.

One list of names, so the PromQL that `components/promql.py` generates, the in-process evaluator in
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
- ``agent_gateway_route_ready{route}`` gauge: 1 while the route has endpoints to send to.
- ``agent_gateway_in_flight`` gauge: requests in flight in the gateway.
- ``agent_gateway_shed_total`` counter: requests shed with 503 because of overload.

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

The alert signals computed from these metrics, each with its PromQL and its in-process value,
are in `agent_runtime.alerts.signals`. The gateway declares its collectors in
`agent_runtime.metrics` (the only declaration, so tests measure what runs).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

__all__ = [
    "BACKUP_LAST_SUCCESS",
    "BREAKER_STATE",
    "DRILL_LAST_SUCCESS",
    "DRILL_RPO",
    "DRILL_RTO",
    "ENDPOINTS_EJECTED",
    "QUEUE_LENGTH",
    "QUEUE_OLDEST_AGE",
    "REQUESTS_TOTAL",
    "REQUEST_DURATION",
    "RETRIES_TOTAL",
    "RETRY_BUDGET_EXHAUSTED_TOTAL",
    "ROUTE_READY",
    "IN_FLIGHT",
    "SHED_TOTAL",
    "AgentQueueMetrics",
]

REQUESTS_TOTAL = "agent_gateway_requests_total"
REQUEST_DURATION = "agent_gateway_request_duration_seconds"
BREAKER_STATE = "agent_breaker_state"
ENDPOINTS_EJECTED = "agent_endpoints_ejected"
RETRIES_TOTAL = "agent_retries_total"
RETRY_BUDGET_EXHAUSTED_TOTAL = "agent_retry_budget_exhausted_total"
ROUTE_READY = "agent_gateway_route_ready"
IN_FLIGHT = "agent_gateway_in_flight"
SHED_TOTAL = "agent_gateway_shed_total"
QUEUE_LENGTH = "agent_queue_length"
QUEUE_OLDEST_AGE = "agent_queue_oldest_age_seconds"
BACKUP_LAST_SUCCESS = "agent_backup_last_success_timestamp_seconds"
DRILL_LAST_SUCCESS = "agent_restore_drill_last_success_timestamp_seconds"
DRILL_RTO = "agent_restore_drill_rto_seconds"
DRILL_RPO = "agent_restore_drill_rpo_seconds"


class AgentQueueMetrics:
    """The two queue gauges an agent exports so the platform can scale and alert on backlog."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.length = Gauge(QUEUE_LENGTH, "Work items waiting.", ("cluster",), registry=self.registry)
        self.oldest_age = Gauge(
            QUEUE_OLDEST_AGE,
            "Age of the oldest waiting work item (0 when empty).",
            ("cluster",),
            registry=self.registry,
        )
