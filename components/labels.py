"""Label and annotation conventions shared by every component (and read by the policy pack)."""

from __future__ import annotations

from components.image_ref import split_image

PART_OF = "agent-platform"

# Kubernetes' recommended label keys (app.kubernetes.io/*).
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
PART_OF_KEY = "app.kubernetes.io/part-of"

# Annotations the policy pack reads (README.md, "Policies (CrossGuard)"); the pack keeps its own
# copy in policies/agent_policies/k8s.py.
STATEFUL = "agent-platform.io/stateful"
MAX_RUN_SECONDS = "agent-platform.io/max-run-seconds"
STATE_SOURCES = "agent-platform.io/state-sources"
MONITORING = "agent-platform.io/monitoring"
ENVIRONMENT = "agent-platform.io/environment"
BACKUP_SOURCE = "agent-platform.io/backup-source"
RETENTION = "agent-platform.io/retention"
SKIP_AWAIT = "pulumi.com/skipAwait"
# Marks the headless Service used for discovery, so monitors select only the ClusterIP one.
HEADLESS = "agent-platform.io/headless"


def selector_labels(name: str, component: str) -> dict[str, str]:
    """The immutable subset used in selectors: changing it would orphan running pods."""
    return {NAME: name, COMPONENT: component}


def gateway_selector() -> dict[str, str]:
    """The gateway's pods, as its Deployment and the NetworkPolicies select them."""
    return selector_labels("gateway", "gateway")


def agents_selector() -> dict[str, str]:
    """Every agent pod of the platform, whatever its cluster."""
    return {PART_OF_KEY: PART_OF, COMPONENT: "agent"}


def headless_service_name(cluster: str) -> str:
    """The headless Service of an agent cluster, which the gateway resolves to pod addresses."""
    return f"{cluster}-headless"


def headless_dns_name(cluster: str, namespace: str) -> str:
    """The in-cluster DNS name of that Service (one A record per ready pod)."""
    return f"{headless_service_name(cluster)}.{namespace}.svc.cluster.local"


def standard_labels(name: str, component: str, environment: str, version: str | None = None) -> dict[str, str]:
    labels = {
        **selector_labels(name, component),
        PART_OF_KEY: PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
        "agent-platform.io/environment": environment,
    }
    if version and (value := label_value(version)):
        labels["app.kubernetes.io/version"] = value
    return labels


def label_value(text: str) -> str:
    """`text` as a valid label value: at most 63 characters, starting and ending with a letter or
    digit. An image tag may be 128 characters and start with `_`; cut bluntly, a 70-character
    tag would leave a label ending in `-`, which the API server rejects."""
    return text[:63].strip("-_.")


def image_version(image: str) -> str | None:
    """The tag (or short digest) of an image reference, for the version label."""
    _, tag, digest = split_image(image)
    if digest is not None and digest.startswith("sha256:"):
        return digest[len("sha256:"):][:12] or None
    return tag or None
