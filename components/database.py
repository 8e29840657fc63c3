"""A PostgreSQL the stack runs itself for agent state: a StatefulSet of one with a kept volume.

For stacks whose agents keep conversation state in a database of their own namespace (the node
stack, small installs). A managed database outside the cluster needs none of this: name its host
in the backup sources. The pod runs under the restricted profile like every other; the image's
entry point initialises an empty data directory on first start (`POSTGRES_*` environment, the
password from a Secret). Agents find it at `<name>:<port>` (a ClusterIP Service); the
NetworkPolicies (components/platform.py) open that port to agent pods and the backup Jobs only.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import labels as L
from components import workload
from components.config import DatabaseConfig

COMPONENT = "database"
DATA_DIR = "/var/lib/postgresql/data"
# PostgreSQL's own shutdown (fast mode) checkpoints; a minute covers a busy checkpoint.
TERMINATION_GRACE_SECONDS = 60


def database_selector(name: str) -> dict[str, str]:
    return L.selector_labels(name, COMPONENT)


def serves(db: DatabaseConfig, host: str | None, namespace: str) -> bool:
    """Whether a client's `host` names this database's Service (short or namespace-qualified)."""
    return host in {db.name, f"{db.name}.{namespace}", f"{db.name}.{namespace}.svc",
                    f"{db.name}.{namespace}.svc.cluster.local"}


def database_pod(db: DatabaseConfig) -> dict[str, Any]:
    env = [
        {"name": "POSTGRES_DB", "value": db.database},
        {"name": "POSTGRES_USER", "value": db.user},
        {"name": "PGDATA", "value": f"{DATA_DIR}/pgdata"},
        {"name": "PGPORT", "value": str(db.port)},
        {"name": "POSTGRES_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": db.password_secret, "key": db.password_secret_key}}},
    ]
    # A TCP probe: what clients need (the port accepts), with no client tool required in the image.
    probe = {"tcpSocket": {"port": db.port}, "periodSeconds": 5, "timeoutSeconds": 3}
    container = {
        "name": "postgres",
        "image": db.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "postgres", "containerPort": db.port, "protocol": "TCP"}],
        "env": env,
        "resources": workload.resources(db.resources),
        "securityContext": workload.container_security_context(),
        "startupProbe": {**probe, "failureThreshold": 60},
        "readinessProbe": {**probe, "failureThreshold": 2},
        "livenessProbe": {**probe, "failureThreshold": 6},
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
        ],
    }
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": workload.pod_security_context(),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "run", "emptyDir": {}}],
    }


class Database(pulumi.ComponentResource):
    """One PostgreSQL: Service `<name>` and StatefulSet `<name>` with the claim `data-<name>-0`."""

    host: str

    def __init__(self, name: str, db: DatabaseConfig, *, namespace: pulumi.Input[str], environment: str,
                 skip_await: bool, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agent-platform:index:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        selector = database_selector(db.name)
        labels = L.standard_labels(db.name, COMPONENT, environment)
        annotations = {L.SKIP_AWAIT: "true"} if skip_await else {}
        metadata = {"name": db.name, "namespace": namespace, "labels": labels, "annotations": annotations}
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata,
            spec={"selector": selector,
                  "ports": [{"name": "postgres", "port": db.port, "targetPort": db.port, "protocol": "TCP"}]},
            opts=child,
        )
        k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata=metadata,
            spec={
                "replicas": 1,
                "serviceName": db.name,
                "selector": {"matchLabels": selector},
                # The data outlives the set: deleting or scaling the set never deletes the claim.
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "template": {"metadata": {"labels": labels}, "spec": database_pod(db)},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": db.volume_size}},
                        **({"storageClassName": db.storage_class} if db.storage_class is not None else {}),
                    },
                }],
            },
            opts=child,
        )
        self.host = db.name
        self.register_outputs({"host": self.host})
