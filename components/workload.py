"""Pod and Deployment building blocks every workload of the platform shares.

Pure functions returning Kubernetes objects as camelCase dicts, so the safety properties
(restricted securityContext, probes, drain-aware shutdown, capacity-keeping rollouts) are
written once and tested without mocks.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.config import DisruptionBudget, ResourceSpec

RUN_AS_USER = 10001
# Time for the endpoint removal to reach every kube-proxy and the gateway's DNS refresh before
# the process is told to stop: requests routed during that window still find a live process.
PRESTOP_SECONDS = 10
# Slack between the end of the longest run and SIGKILL, for the process to exit cleanly.
SHUTDOWN_MARGIN_SECONDS = 15


def termination_grace_seconds(max_run_seconds: int) -> int:
    """Long enough for the preStop pause, then the longest run, then a clean exit."""
    return PRESTOP_SECONDS + max_run_seconds + SHUTDOWN_MARGIN_SECONDS


def pod_security_context() -> dict[str, Any]:
    """Pod Security Standards "restricted" at pod level."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Pod Security Standards "restricted" at container level, plus a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(spec: ResourceSpec) -> dict[str, Any]:
    return {
        "requests": {"cpu": spec.requests.cpu, "memory": spec.requests.memory},
        "limits": {"cpu": spec.limits.cpu, "memory": spec.limits.memory},
    }


def probes(port: int) -> dict[str, Any]:
    """Startup gates the others (slow model loading must not trip liveness); liveness restarts
    a wedged process; readiness takes a busy or draining one out of the Service."""
    return {
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": port},
            "periodSeconds": 5,
            "failureThreshold": 60,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": port},
            "periodSeconds": 5,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
    }


def topology_spread(selector: dict[str, str]) -> list[dict[str, Any]]:
    """Spread replicas over zones and nodes; ScheduleAnyway so a one-node cluster still runs."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def rolling_update() -> dict[str, Any]:
    """Surge first, never take a ready pod away before its replacement is ready: capacity never
    drops below the desired count, so it never drops below what the PDB protects either."""
    return {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}


def pdb_spec(budget: DisruptionBudget, selector: dict[str, str]) -> dict[str, Any]:
    """maxUnavailable >= 1 (validated), so node drains are slowed, never blocked."""
    value = budget.max_unavailable
    return {
        "maxUnavailable": value if isinstance(value, int) else str(value),
        "selector": {"matchLabels": selector},
        # Unready pods may always be evicted: they serve nothing and must not block a drain.
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def container(
    *,
    name: str,
    image: pulumi.Input[str],
    port: int,
    spec: ResourceSpec,
    max_run_seconds: int,
    env: list[dict[str, Any]],
    args: list[str] | None = None,
    volume_mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": resources(spec),
        "securityContext": container_security_context(),
        # The kubelet pauses before SIGTERM so endpoint removal propagates first; no shell needed.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(volume_mounts or [])],
        **probes(port),
    }
    if args:
        out["args"] = args
    return out


def pod_template(
    *,
    labels: dict[str, str],
    selector: dict[str, str],
    annotations: dict[str, str],
    service_account: str,
    containers: list[dict[str, Any]],
    max_run_seconds: int,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security_context(),
            "terminationGracePeriodSeconds": termination_grace_seconds(max_run_seconds),
            "topologySpreadConstraints": topology_spread(selector),
            "containers": containers,
            # A read-only root needs somewhere to write temporary files.
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}, *(volumes or [])],
        },
    }


def env_list(plain: dict[str, str], from_secrets: dict[str, str]) -> list[dict[str, Any]]:
    """Plain values plus `NAME: secret/key` references; secrets never appear in the manifest."""
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(plain.items())]
    for name, ref in sorted(from_secrets.items()):
        secret, key = ref.split("/", 1)
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


def job_container(
    *,
    name: str,
    image: pulumi.Input[str],
    spec: ResourceSpec,
    args: list[str],
    env: list[dict[str, Any]],
    volume_mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """A run-to-completion container: restricted, bounded, no probes (the Job tracks it)."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "resources": resources(spec),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *volume_mounts],
    }


def job_pod_spec(
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    init_containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
    }
    if init_containers:
        spec["initContainers"] = init_containers
        spec["volumes"].append({"name": "pg-run", "emptyDir": {}})
    return spec


def cron_job_spec(
    schedule: str, pod_spec: dict[str, Any], pod_labels: dict[str, str], deadline_seconds: int = 6 * 3600
) -> dict[str, Any]:
    """Never two runs at once (Forbid), bounded runtime, a short history of both outcomes.

    `pod_labels` go on the Job's pods: the NetworkPolicies select them by component, and a pod
    without labels only ever gets the namespace's default deny."""
    return {
        "schedule": schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": deadline_seconds,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        }},
    }
