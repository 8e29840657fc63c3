"""How workloads behave over time: probes, spreading, autoscaling, graceful shutdown."""

from __future__ import annotations

from pulumi_policy import Severity

from .base import Report, resource_policy, resource_rule
from .k8s import (
    ANN_MAX_RUN_SECONDS,
    ANN_STATEFUL,
    DEPLOYMENT,
    HPA,
    LONG_RUNNING_TYPES,
    STATEFULSET,
    UNKNOWN,
    K8sObject,
    as_list,
    as_number,
    containers,
    dig,
    fmt_number,
    selector_matches,
)

# Kubernetes defaults, used when a field is left out.
DEFAULT_TERMINATION_GRACE_SECONDS = 30
DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS = 300
DEFAULT_HPA_MIN_REPLICAS = 1

PROBES_HINT = (
    "add livenessProbe (e.g. httpGet /healthz) and readinessProbe (e.g. httpGet /readyz) to every "
    "container of the pod template; init containers and Jobs need none"
)


@resource_rule("container-probes", LONG_RUNNING_TYPES)
def validate_container_probes(obj: K8sObject, settings: dict, report: Report) -> None:
    for container in containers(obj.pod_spec(), ("containers",)):
        missing = [p for p in ("livenessProbe", "readinessProbe") if container.spec.get(p) is None]
        if missing:
            report(f"{obj.display}: {container.display} has no {' and no '.join(missing)}. Fix: {PROBES_HINT}.")


container_probes = resource_policy(
    validate_container_probes,
    description="Every long-running container (Deployments, StatefulSets, DaemonSets) has a liveness "
    "probe, so Kubernetes restarts a hung agent, and a readiness probe, so traffic only reaches "
    "agents that can serve it.",
    remediation=PROBES_HINT[0].upper() + PROBES_HINT[1:] + ".",
    severity=Severity.HIGH,
)


TOPOLOGY_HINT = (
    "add spec.template.spec.topologySpreadConstraints, e.g. {maxSkew: 1, topologyKey: "
    "topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: "
    "<the pod's labels>}} and the same for kubernetes.io/hostname"
)


@resource_rule("topology-spread", [DEPLOYMENT])
def validate_topology_spread(obj: K8sObject, settings: dict, report: Report) -> None:
    pod_spec = obj.pod_spec()
    if pod_spec is UNKNOWN:
        return
    constraints = as_list(dig(pod_spec, "topologySpreadConstraints"))
    if constraints is UNKNOWN:
        return
    if not constraints:
        report(
            f"{obj.display} has no topologySpreadConstraints, so all its replicas may land on one "
            f"node or zone and fail together. Fix: {TOPOLOGY_HINT}."
        )
        return
    labels = obj.pod_template_labels()
    for i, constraint in enumerate(constraints):
        if not isinstance(constraint, dict) or "labelSelector" not in constraint:
            continue
        if selector_matches(constraint["labelSelector"], labels) is False:
            key = constraint.get("topologyKey")
            report(
                f"{obj.display}: topologySpreadConstraints[{i}] ({key}) has a labelSelector that does "
                f"not select this Deployment's own pods, so it spreads nothing. Fix: make its "
                f"labelSelector match the pod template labels."
            )


topology_spread = resource_policy(
    validate_topology_spread,
    description="Production Deployments spread their replicas across nodes and zones "
    "(topologySpreadConstraints), so one node or zone failure cannot take a whole agent cluster down.",
    remediation=TOPOLOGY_HINT[0].upper() + TOPOLOGY_HINT[1:] + ".",
)


@resource_rule("hpa-sane", [HPA])
def validate_hpa_sane(obj: K8sObject, settings: dict, report: Report) -> None:
    spec = dig(obj.props, "spec")
    if spec is UNKNOWN or spec is None:
        return
    min_r = as_number(dig(spec, "minReplicas"))
    if min_r is None:
        min_r = DEFAULT_HPA_MIN_REPLICAS
    max_r = as_number(dig(spec, "maxReplicas"))
    if isinstance(min_r, (int, float)) and isinstance(max_r, (int, float)) and min_r > max_r:
        report(
            f"{obj.display}: minReplicas {fmt_number(min_r)} is above maxReplicas {fmt_number(max_r)}, "
            f"so the autoscaler cannot satisfy both. Fix: set minReplicas <= maxReplicas."
        )

    threshold = settings["minScaleDownStabilizationSeconds"]
    scale_down = dig(spec, "behavior", "scaleDown")
    if scale_down is UNKNOWN or dig(scale_down, "selectPolicy") in ("Disabled", UNKNOWN):
        return  # unknown, or scale-down switched off entirely: nothing to flap
    window = as_number(dig(scale_down, "stabilizationWindowSeconds"))
    if window is UNKNOWN:
        return
    source = "stabilizationWindowSeconds"
    if window is None:
        window, source = DEFAULT_SCALE_DOWN_STABILIZATION_SECONDS, "the Kubernetes default window"
    if window < threshold:
        report(
            f"{obj.display}: scale-down {source} is {fmt_number(window)}s, shorter than the "
            f"{threshold}s this stack requires, so replicas flap on bursty agent traffic. Fix: set "
            f"spec.behavior.scaleDown.stabilizationWindowSeconds >= {threshold}."
        )


hpa_sane = resource_policy(
    validate_hpa_sane,
    description="HorizontalPodAutoscalers are consistent (minReplicas <= maxReplicas) and scale down "
    "only after a stabilization window (behavior.scaleDown.stabilizationWindowSeconds, config "
    "minScaleDownStabilizationSeconds), so agent clusters do not flap.",
    remediation="Set minReplicas <= maxReplicas and spec.behavior.scaleDown.stabilizationWindowSeconds "
    "at least the configured minimum.",
)


GRACE_HINT = (
    "set spec.template.spec.terminationGracePeriodSeconds to at least the "
    f"{ANN_MAX_RUN_SECONDS} annotation, and have the agent stop taking new work on SIGTERM"
)


def _annotation(obj: K8sObject, key: str) -> object:
    """An annotation of the workload, else of its pod template."""
    value = obj.annotation(key)
    if value is None:
        value = dig(obj.props, "spec", "template", "metadata", "annotations", key)
    return value


@resource_rule("agent-termination-grace", [DEPLOYMENT, STATEFULSET])
def validate_agent_termination_grace(obj: K8sObject, settings: dict, report: Report) -> None:
    max_run = _annotation(obj, ANN_MAX_RUN_SECONDS)
    if max_run is UNKNOWN:
        return
    if max_run is None:
        stateful = _annotation(obj, ANN_STATEFUL)
        if isinstance(stateful, str) and stateful.strip().lower() == "true":
            report(
                f"{obj.display} is a stateful agent ({ANN_STATEFUL}: \"true\") but has no "
                f"{ANN_MAX_RUN_SECONDS} annotation, so nobody knows how long shutdown must wait. "
                f"Fix: annotate it with the longest run in seconds and {GRACE_HINT}."
            )
        return
    try:
        max_run_seconds = float(str(max_run).strip())
    except ValueError:
        report(
            f"{obj.display}: {ANN_MAX_RUN_SECONDS} is {max_run!r}, not a number of seconds. "
            f"Fix: use a whole number of seconds such as \"600\"."
        )
        return
    pod_spec = obj.pod_spec()
    if pod_spec is UNKNOWN:
        return
    grace = as_number(dig(pod_spec, "terminationGracePeriodSeconds"))
    if grace is UNKNOWN:
        return
    source = "terminationGracePeriodSeconds"
    if grace is None:
        grace, source = DEFAULT_TERMINATION_GRACE_SECONDS, "the default terminationGracePeriodSeconds"
    if grace < max_run_seconds:
        report(
            f"{obj.display}: {source} is {fmt_number(grace)}s, shorter than its "
            f"{ANN_MAX_RUN_SECONDS} of {fmt_number(max_run_seconds)}s, so a rollout or scale-down "
            f"kills agents mid-run. Fix: {GRACE_HINT}."
        )


agent_termination_grace = resource_policy(
    validate_agent_termination_grace,
    description=f"An agent Deployment gives its pods at least {ANN_MAX_RUN_SECONDS} to finish on "
    "shutdown (terminationGracePeriodSeconds), so rollouts and scale-downs do not cut agent runs off; "
    "stateful agents must declare that annotation.",
    remediation=GRACE_HINT[0].upper() + GRACE_HINT[1:] + ".",
    severity=Severity.HIGH,
)

POLICIES = [container_probes, topology_spread, hpa_sane, agent_termination_grace]
