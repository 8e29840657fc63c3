"""Label and annotation conventions shared by every component (and read by the policy pack)."""

from __future__ import annotations

from components.image_ref import split_image

PART_OF = "agent-platform"

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
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component}


def standard_labels(name: str, component: str, environment: str, version: str | None = None) -> dict[str, str]:
    labels = {
        **selector_labels(name, component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
        "agent-platform.io/environment": environment,
    }
    if version:
        labels["app.kubernetes.io/version"] = version[:63]
    return labels


def image_version(image: str) -> str | None:
    """The tag (or short digest) of an image reference, for the version label."""
    _, tag, digest = split_image(image)
    if digest is not None and digest.startswith("sha256:"):
        return digest[len("sha256:"):][:12] or None
    return tag or None
