"""Compute resources: every container asks for and is capped at CPU and memory."""

from __future__ import annotations

from pulumi_policy import Severity

from .base import Report, resource_policy, resource_rule
from .k8s import UNKNOWN, WORKLOAD_TYPES, K8sObject, as_dict, containers
from .quantity import parse_quantity

_RESOURCES = ("cpu", "memory")

RESOURCES_HINT = (
    "set resources.requests and resources.limits for cpu and memory on every container and init "
    "container, each limit at least its request (e.g. requests {cpu: 250m, memory: 256Mi}, "
    "limits {cpu: '1', memory: 512Mi})"
)


@resource_rule("container-resources", WORKLOAD_TYPES)
def validate_container_resources(obj: K8sObject, settings: dict, report: Report) -> None:
    for container in containers(obj.pod_spec()):
        resources = as_dict(container.spec.get("resources"))
        if resources is UNKNOWN:
            continue
        problems: list[str] = []
        parsed: dict[tuple[str, str], object] = {}
        for section in ("requests", "limits"):
            values = as_dict(resources.get(section))
            if values is UNKNOWN:
                continue
            for res in _RESOURCES:
                raw = values.get(res)
                if raw is UNKNOWN:
                    continue
                if raw is None:
                    problems.append(f"no {section}.{res} set")
                    continue
                try:
                    parsed[(section, res)] = parse_quantity(raw)
                except ValueError:
                    problems.append(f"{section}.{res} {raw!r} is not a Kubernetes quantity")
        for res in _RESOURCES:
            request, limit = parsed.get(("requests", res)), parsed.get(("limits", res))
            if request is not None and limit is not None and limit < request:  # type: ignore[operator]
                problems.append(
                    f"limits.{res} {resources['limits'][res]} is below requests.{res} "
                    f"{resources['requests'][res]}"
                )
        if problems:
            report(f"{obj.display}: {container.display}: {'; '.join(problems)}. Fix: {RESOURCES_HINT}.")


container_resources = resource_policy(
    validate_container_resources,
    description="Every container (including init containers and Job/CronJob pods) declares CPU and "
    "memory requests and limits, with each limit at least its request, so the scheduler can place "
    "agents and one runaway agent cannot starve its node.",
    remediation=RESOURCES_HINT[0].upper() + RESOURCES_HINT[1:] + ".",
    severity=Severity.HIGH,
)

POLICIES = [container_resources]
