"""The source material's ScalingRule vocabulary, translated into autoscaling/v2 HPA terms.

Pure functions, tested without mocks. The translation (also in the README):

- `min_instances` / `max_instances` -> `minReplicas` / `maxReplicas`.
- `cpu_threshold` / `memory_threshold` (percent of requests) -> Resource metrics with
  `target.averageUtilization`.
- `scale_up_cooldown` / `scale_down_cooldown` (seconds) -> `behavior.scaleUp/scaleDown.
  stabilizationWindowSeconds`: the HPA acts on the most conservative recommendation of that
  window, which is what a cooldown is for (no flapping right after a change).
- `scale_up_step` / `scale_down_step` -> one policy per direction: `4` is `{type: Pods, value: 4}`,
  `"50%"` is `{type: Percent, value: 50}`, applied per `periodSeconds` = the cooldown, kept within
  Kubernetes' 15..1800 s, so at most one step happens per cooldown.
- `queue` -> an External or Pods metric on the queue length with `averageValue` per pod, or a
  KEDA ScaledObject (see agent_cluster.py) when the stack says KEDA is installed.
"""

from __future__ import annotations

from typing import Any

from components.config import Autoscaling, parse_step

MIN_PERIOD_SECONDS = 15
MAX_PERIOD_SECONDS = 1800


def _policy(step: int | str, cooldown: int) -> dict[str, Any]:
    kind, value = parse_step(step)
    period = min(max(cooldown, MIN_PERIOD_SECONDS), MAX_PERIOD_SECONDS)
    return {"type": kind, "value": value, "periodSeconds": period}


def hpa_behavior(scaling: Autoscaling) -> dict[str, Any]:
    """`spec.behavior` for the cooldowns and steps of one cluster."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": scaling.scale_up_cooldown,
            "selectPolicy": "Max",
            "policies": [_policy(scaling.scale_up_step, scaling.scale_up_cooldown)],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": scaling.scale_down_cooldown,
            "selectPolicy": "Max",
            "policies": [_policy(scaling.scale_down_step, scaling.scale_down_cooldown)],
        },
    }


def hpa_spec(scaling: Autoscaling, deployment: Any, metric_scope: str) -> dict[str, Any]:
    """The whole autoscaling/v2 spec for a Deployment (`deployment` may be a Pulumi Output)."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicas": scaling.min_instances,
        "maxReplicas": scaling.max_instances,
        "metrics": hpa_metrics(scaling, metric_scope),
        "behavior": hpa_behavior(scaling),
    }


def hpa_metrics(scaling: Autoscaling, cluster: str) -> list[dict[str, Any]]:
    """`spec.metrics`: CPU and memory utilisation, plus queue length unless KEDA owns it."""
    metrics: list[dict[str, Any]] = []
    for name, threshold in (("cpu", scaling.cpu_threshold), ("memory", scaling.memory_threshold)):
        if threshold is not None:
            metrics.append({
                "type": "Resource",
                "resource": {"name": name, "target": {"type": "Utilization", "averageUtilization": threshold}},
            })
    queue = scaling.queue
    if queue is not None and queue.source == "external":
        metrics.append({
            "type": "External",
            "external": {
                "metric": {"name": queue.metric, "selector": {"matchLabels": {"cluster": cluster}}},
                "target": {"type": "AverageValue", "averageValue": _quantity(queue.target_per_pod)},
            },
        })
    elif queue is not None and queue.source == "pods":
        metrics.append({
            "type": "Pods",
            "pods": {
                "metric": {"name": queue.metric},
                "target": {"type": "AverageValue", "averageValue": _quantity(queue.target_per_pod)},
            },
        })
    return metrics


def keda_triggers(scaling: Autoscaling, cluster: str, namespace: str) -> list[dict[str, Any]]:
    """KEDA ScaledObject triggers: the queue as a Prometheus query, plus CPU/memory."""
    triggers: list[dict[str, Any]] = []
    queue = scaling.queue
    if queue is not None:
        triggers.append({
            "type": "prometheus",
            "metadata": {
                "serverAddress": queue.prometheus_address,
                "query": f'sum({queue.metric}{{namespace="{namespace}",cluster="{cluster}"}})',
                "threshold": _quantity(queue.target_per_pod),
            },
        })
    for name, threshold in (("cpu", scaling.cpu_threshold), ("memory", scaling.memory_threshold)):
        if threshold is not None:
            triggers.append({"type": name, "metricType": "Utilization", "metadata": {"value": str(threshold)}})
    return triggers


def _quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{int(value * 1000)}m"
