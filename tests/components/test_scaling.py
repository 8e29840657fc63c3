"""components/scaling.py: the HPA behaviour and metrics that cooldowns, steps and queues produce."""

from __future__ import annotations

from components.config import Autoscaling, QueueScaling
from components.scaling import hpa_behavior, hpa_metrics, keda_triggers

HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"


def test_cooldowns_become_stabilization_windows_and_steps_become_policies():
    behavior = hpa_behavior(Autoscaling(
        min_instances=2, max_instances=10, scale_up_cooldown=30, scale_down_cooldown=600,
        scale_up_step=4, scale_down_step="25%",
    ))
    assert behavior["scaleUp"] == {
        "stabilizationWindowSeconds": 30,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 30}],
    }
    assert behavior["scaleDown"] == {
        "stabilizationWindowSeconds": 600,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 25, "periodSeconds": 600}],
    }


def test_policy_period_stays_within_kubernetes_bounds():
    behavior = hpa_behavior(Autoscaling(
        min_instances=1, max_instances=3, scale_up_cooldown=0, scale_down_cooldown=3600,
    ))
    assert behavior["scaleUp"]["policies"][0]["periodSeconds"] == 15
    assert behavior["scaleDown"]["policies"][0]["periodSeconds"] == 1800
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 3600


def test_thresholds_and_queue_become_metrics():
    scaling = Autoscaling(min_instances=1, max_instances=5, cpu_threshold=70, memory_threshold=80,
                          queue=QueueScaling(target_per_pod=20))
    metrics = hpa_metrics(scaling, "workers")
    assert metrics[0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert metrics[1]["resource"]["target"]["averageUtilization"] == 80
    assert metrics[2]["external"]["metric"] == {
        "name": "agent_queue_length",
        "selector": {"matchLabels": {"cluster": "workers"}},
    }
    assert metrics[2]["external"]["target"] == {"type": "AverageValue", "averageValue": "20"}


def test_keda_queue_is_a_prometheus_trigger_not_an_hpa_metric():
    scaling = Autoscaling(
        min_instances=1, max_instances=5, cpu_threshold=None, queue=QueueScaling(target_per_pod=2.5, source="keda")
    )
    assert hpa_metrics(scaling, "workers") == []
    trigger = keda_triggers(scaling, "workers", "agents-dev")[0]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == 'sum(agent_queue_length{namespace="agents-dev",cluster="workers"})'
    assert trigger["metadata"]["threshold"] == "2500m"
