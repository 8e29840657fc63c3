"""Builders of Kubernetes resources as CrossGuard sees them ({type, name, props}, camelCase).

Every builder returns a fresh, compliant object; tests break one thing at a time.
`good_stack()` is a whole production-shaped stack that passes every policy under the prod config.
"""

from __future__ import annotations

import copy
import json
from typing import Any

NS = "agents"
IMAGE = "ghcr.io/acme/agents/worker:0.4.2"


def obj(resource_type: str, name: str, props: dict) -> dict:
    return {"type": resource_type, "name": name, "props": props}


def meta(name: str, ns: str | None = NS, labels: dict | None = None, annotations: dict | None = None) -> dict:
    m: dict[str, Any] = {"name": name}
    if ns is not None:
        m["namespace"] = ns
    if labels:
        m["labels"] = labels
    if annotations:
        m["annotations"] = annotations
    return m


def security_context() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def container(name: str = "agent", image: str = IMAGE, probes: bool = True, **extra: Any) -> dict:
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": security_context(),
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "MAX_TOKENS", "value": "4096"},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        ],
    }
    if probes:
        c["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}}
        c["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8080}}
    c.update(extra)
    return c


def pod_spec(
    containers: list | None = None,
    init_containers: list | None = None,
    labels: dict | None = None,
    grace: int | None = None,
    spread: bool = True,
) -> dict:
    spec: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers if containers is not None else [container()],
    }
    if init_containers is not None:
        spec["initContainers"] = init_containers
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    if spread:
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": dict(labels or {})},
            }
            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
        ]
    return spec


def app_labels(app: str) -> dict:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "agent-platform"}


def deployment(
    name: str = "workers",
    ns: str | None = NS,
    replicas: int | None = 2,
    annotations: dict | None = None,
    spec: dict | None = None,
    max_run: int | None = 120,
    grace: int | None = None,
) -> dict:
    labels = app_labels(name)
    ann = dict(annotations or {})
    if max_run is not None:
        ann.setdefault("agent-platform.io/max-run-seconds", str(max_run))
    if grace is None and max_run is not None:
        grace = max_run + 30
    props = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, ns, labels=labels, annotations=ann or None),
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": spec if spec is not None else pod_spec(labels=labels, grace=grace),
            },
        },
    }
    if replicas is not None:
        props["spec"]["replicas"] = replicas
    return obj("kubernetes:apps/v1:Deployment", name, props)


def statefulset(name: str = "store", ns: str = NS) -> dict:
    d = deployment(name, ns, max_run=None)
    d["type"] = "kubernetes:apps/v1:StatefulSet"
    d["props"]["kind"] = "StatefulSet"
    return d


def daemonset(name: str = "node-agent", ns: str = NS) -> dict:
    d = deployment(name, ns, replicas=None, max_run=None)
    d["type"] = "kubernetes:apps/v1:DaemonSet"
    d["props"]["kind"] = "DaemonSet"
    return d


def job_pod_spec(containers: list | None = None, init_containers: list | None = None) -> dict:
    spec = pod_spec(
        containers=containers if containers is not None else [container("run", probes=False)],
        init_containers=init_containers,
        spread=False,
    )
    spec["restartPolicy"] = "OnFailure"
    return spec


def job(name: str = "restore", ns: str = NS, spec: dict | None = None) -> dict:
    return obj(
        "kubernetes:batch/v1:Job",
        name,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta(name, ns),
            "spec": {"template": {"spec": spec if spec is not None else job_pod_spec()}},
        },
    )


def cronjob(
    name: str = "nightly",
    ns: str | None = NS,
    labels: dict | None = None,
    annotations: dict | None = None,
    spec: dict | None = None,
    suspend: bool | None = None,
) -> dict:
    props: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta(name, ns, labels=labels, annotations=annotations),
        "spec": {
            "schedule": "15 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": spec if spec is not None else job_pod_spec()}}},
        },
    }
    if suspend is not None:
        props["spec"]["suspend"] = suspend
    return obj("kubernetes:batch/v1:CronJob", name, props)


def backup_cronjob(source: str, ns: str = NS, retention: str | None = "48", **kw: Any) -> dict:
    annotations = {"agent-platform.io/backup-source": source}
    if retention is not None:
        annotations["agent-platform.io/retention"] = retention
    return cronjob(
        f"backup-{source}", ns, labels={"app.kubernetes.io/component": "backup"}, annotations=annotations, **kw
    )


def restore_drill_cronjob(ns: str = NS, **kw: Any) -> dict:
    return cronjob("restore-drill", ns, labels={"app.kubernetes.io/component": "restore-drill"}, **kw)


def hpa(
    name: str = "workers",
    ns: str | None = NS,
    target: str = "workers",
    min_replicas: int | None = 2,
    max_replicas: int = 10,
    window: int | None = 300,
    kind: str = "Deployment",
) -> dict:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
        "maxReplicas": max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            }
        ],
    }
    if min_replicas is not None:
        spec["minReplicas"] = min_replicas
    if window is not None:
        spec["behavior"] = {
            "scaleDown": {
                "stabilizationWindowSeconds": window,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            }
        }
    return obj(
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        name,
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(name, ns), "spec": spec},
    )


def pdb(name: str = "workers", ns: str | None = NS, app: str = "workers", **budget: Any) -> dict:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app.kubernetes.io/name": app}}}
    spec.update(budget or {"maxUnavailable": 1})
    return obj(
        "kubernetes:policy/v1:PodDisruptionBudget",
        name,
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name, ns), "spec": spec},
    )


def namespace(name: str = NS, annotations: dict | None = None) -> dict:
    return obj(
        "kubernetes:core/v1:Namespace",
        name,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, None, annotations=annotations)},
    )


def network_policy(name: str = "default-deny", ns: str = NS, spec: dict | None = None) -> dict:
    return obj(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        name,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta(name, ns),
            "spec": spec if spec is not None else {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
    )


def service(name: str = "gateway", ns: str = NS, type_: str | None = "ClusterIP") -> dict:
    spec: dict[str, Any] = {"selector": app_labels(name), "ports": [{"port": 80, "targetPort": 8080}]}
    if type_ is not None:
        spec["type"] = type_
    return obj(
        "kubernetes:core/v1:Service",
        name,
        {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, ns), "spec": spec},
    )


def configmap(name: str = "settings", ns: str = NS, data: dict | None = None, labels: dict | None = None) -> dict:
    return obj(
        "kubernetes:core/v1:ConfigMap",
        name,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, ns, labels=labels), "data": data or {}},
    )


def runtime_json(signals: tuple = ("error_rate", "availability")) -> str:
    return json.dumps(
        {
            "routes": [{"cluster": "workers", "path_prefix": "/v1/chat"}],
            "alerts": {
                "rules": [{"name": f"{s}-alert", "signal": s, "threshold": 0.05, "for_seconds": 300} for s in signals]
            },
        }
    )


def gateway_configmap(ns: str = NS, signals: tuple = ("error_rate", "availability"), data: dict | None = None) -> dict:
    return configmap(
        "gateway-runtime",
        ns,
        data=data if data is not None else {"runtime.json": runtime_json(signals)},
        labels={"app.kubernetes.io/component": "gateway"},
    )


def prometheus_rule(name: str = "agent-alerts", ns: str = NS, signals: tuple = ("error_rate", "availability")) -> dict:
    rules: list[dict] = [{"record": "agent:requests:rate5m", "expr": "sum(rate(agent_requests_total[5m]))"}]
    rules += [
        {
            "alert": f"Agent{s.title().replace('_', '')}",
            "expr": "vector(1) > 0",
            "for": "5m",
            "labels": {"signal": s, "severity": "page"},
        }
        for s in signals
    ]
    return obj(
        "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
        name,
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": meta(name, ns),
            "spec": {"groups": [{"name": "agents", "rules": rules}]},
        },
    )


STATE_ANNOTATIONS = {
    "agent-platform.io/state-sources": "agent-state, workspace",
    "agent-platform.io/monitoring": "prometheus-operator",
}


def good_stack(monitoring: str = "prometheus-operator") -> list[dict]:
    """A production-shaped stack that passes every policy with the prod config."""
    annotations = dict(STATE_ANNOTATIONS, **{"agent-platform.io/monitoring": monitoring})
    stack = [
        namespace(NS, annotations=annotations),
        network_policy(),
        deployment("workers", replicas=None, max_run=120),
        hpa("workers", target="workers", min_replicas=2),
        pdb("workers", app="workers"),
        deployment(
            "coordinators",
            replicas=3,
            max_run=900,
            annotations={"agent-platform.io/stateful": "true"},
        ),
        pdb("coordinators", app="coordinators", minAvailable=2),
        deployment("gateway", replicas=2, max_run=None),
        pdb("gateway", app="gateway", maxUnavailable="25%"),
        service("gateway"),
        gateway_configmap(),
        backup_cronjob("agent-state"),
        backup_cronjob("workspace"),
        restore_drill_cronjob(),
        job("restore-template"),
    ]
    if monitoring == "prometheus-operator":
        stack.append(prometheus_rule())
    return copy.deepcopy(stack)


def find(stack: list[dict], resource_type_suffix: str, name: str) -> dict:
    for o in stack:
        if o["type"].endswith(resource_type_suffix) and o["name"] == name:
            return o
    raise KeyError((resource_type_suffix, name))


PROD_CONFIG = {
    "production-replicas": {"minReplicas": 2},
    "hpa-sane": {"minScaleDownStabilizationSeconds": 120},
    "image-allowed-registry": {"allowedRegistries": ["ghcr.io/acme/"]},
    "no-loadbalancer-services": {"allowLoadBalancer": False},
    "backup-coverage": {"requireRestoreDrill": True},
}


def run_all(stack: list[dict], config: dict | None = None) -> dict[str, list[str]]:
    """Every policy of the pack over a stack, as the engine would: resource policies on each
    resource, stack policies once. Returns {policy name: [messages]} for policies that fired."""
    from policy_fakes import run_resource, run_stack
    from pulumi_policy import ResourceValidationPolicy

    from agent_policies import ALL_POLICIES

    config = PROD_CONFIG if config is None else config
    fired: dict[str, list[str]] = {}
    for policy in ALL_POLICIES:
        cfg = config.get(policy.name)
        if isinstance(policy, ResourceValidationPolicy):
            messages = [m for o in stack for m in run_resource(policy.validate, o, cfg)]
        else:
            messages = [m for m, _ in run_stack(policy.validate, stack, cfg)]
        if messages:
            fired[policy.name] = messages
    return fired
