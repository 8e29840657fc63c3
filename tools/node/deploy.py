"""The node stack (stacks/Pulumi.node.yaml) on a running node: what the stack needs from the node
before `pulumi up` (its images imported, PersistentVolumes for its claims) and where its gateway
answers afterwards. Shared by the node tier's fixture and `python -m tools.node deploy`."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from tools.node import platform_images
from tools.node.node import Node

STACK = "node"
NAMESPACE = "agents-node"
# The stack's claims: PostgreSQL's data and the backup target, 1Gi each, no storage class (a bare
# node has no provisioner, so they bind to these).
VOLUMES = ("pv-database", "pv-backups")
# The Secret (name, key) stacks/Pulumi.node.yaml names for its PostgreSQL password.
DATABASE_SECRETS = (("agent-state-db", "password"),)


def persistent_volumes(node: Node) -> list[str]:
    """hostPath PersistentVolumes under the node's work directory, owned by the uid the
    platform's pods run as (hostPath volumes ignore fsGroup)."""
    made = []
    for name in VOLUMES:
        path = node.workdir / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, platform_images.UID, platform_images.UID)
        status, body = node.api("POST", "/api/v1/persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(path)}}})
        if status not in (201, 409):
            raise RuntimeError(f"creating PersistentVolume {name}: {status} {body}")
        made.append(name)
    return made


def credentials(node: Node, namespace: str = NAMESPACE) -> None:
    """What an operator does before the first `pulumi up`: the namespace, and in it the Secret the
    stack names for its database password (stack files never hold a password). A password that
    exists is kept. The platform adopts the namespace (server-side apply)."""
    status, body = node.api("POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    if status not in (201, 409):
        raise RuntimeError(f"creating namespace {namespace}: {status} {body}")
    for name, key in DATABASE_SECRETS:
        password = base64.b64encode(secrets.token_urlsafe(24).encode()).decode()
        status, body = node.api("POST", f"/api/v1/namespaces/{namespace}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
            "data": {key: password}})
        if status not in (201, 409):
            raise RuntimeError(f"creating Secret {namespace}/{name}: {status} {body}")


def prepare(node: Node) -> dict[str, Path]:
    """Builds (when inputs changed) and imports the platform's images, makes the volumes and the
    database credentials."""
    images = platform_images.build_all()
    node.import_images(images)
    persistent_volumes(node)
    credentials(node)
    return images


def add_cluster_env(config: dict, cluster: str, env: dict[str, str]) -> None:
    """Edits a stack file's `config:` mapping in place: `env` added to one cluster's agents (what
    a drill's rolling update changes)."""
    clusters = config["agent-platform:clusters"]
    target = next((c for c in clusters if c["name"] == cluster), None)
    if target is None:
        raise KeyError(f"agent-platform:clusters has no cluster {cluster!r}")
    target.setdefault("env", {}).update(env)


def gateway_service(node: Node, namespace: str = NAMESPACE) -> tuple[str, int]:
    """The gateway Service's address and HTTP port inside the node's namespace."""
    status, svc = node.api("GET", f"/api/v1/namespaces/{namespace}/services/gateway")
    if status != 200:
        raise RuntimeError(f"no gateway Service in {namespace}: {status} {svc.get('message', '')}")
    port = next(p for p in svc["spec"]["ports"] if p["name"] == "http")["port"]
    return svc["spec"]["clusterIP"], port
