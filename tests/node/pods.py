"""Small workloads for the node tier: restricted busybox pods (an HTTP server, a one-shot client)
and waiting on them through the node's API server."""

from __future__ import annotations

import time
from typing import Any

from tools.node import node as node_mod
from tools.node.images import BUSYBOX_IMAGE

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}
RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                  "seccompProfile": {"type": "RuntimeDefault"}}


def namespace(node: node_mod.Node, name: str) -> None:
    """A namespace that enforces the `restricted` Pod Security Standard, as the platform's do."""
    status, body = node.api("POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    assert status in (201, 409), body


def busybox(name: str, script: str, labels: dict[str, str] | None = None,
            restart: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "securityContext": RESTRICTED_POD, "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1, "enableServiceLinks": False,
            "containers": [{
                "name": "main", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                "command": ["/bin/busybox", "sh", "-c", script],
                "securityContext": RESTRICTED_CONTAINER,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                              "limits": {"cpu": "100m", "memory": "32Mi"}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


# Each replica answers GET / with its own pod name, so a client sees which one served it.
WEB_SCRIPT = ("mkdir -p /tmp/www && echo $HOSTNAME > /tmp/www/index.html && "
              "exec /bin/busybox httpd -f -p 8080 -h /tmp/www")


def web(node: node_mod.Node, ns: str, name: str = "web", replicas: int = 2) -> None:
    """A Deployment of busybox httpd replicas and a ClusterIP Service `name` on port 80."""
    pod = busybox(name, WEB_SCRIPT)
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    create(node, ns, "apps/v1", "deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": pod}})
    create(node, ns, "v1", "services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}})


def fetch(host: str, port: int, path: str = "/") -> str:
    """A shell snippet printing the body of GET http://host:port/path, or `unreachable`: busybox
    nc, since a static busybox's wget crashes looking up the `http` service through glibc."""
    return (f"{{ printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} > /tmp/answer; }}; "
            "if grep -q '^HTTP/1.[01] 200' /tmp/answer; then tail -1 /tmp/answer; else echo unreachable; fi")


def http_get(node: node_mod.Node, host: str, port: int, path: str = "/") -> tuple[bytes, bytes]:
    """One HTTP/1.0 GET from the node's namespace (as a client on the node sends it): (status
    line and headers, body)."""
    with node.connect(host, port, timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def is_ok(head: bytes) -> bool:
    return head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]


def create(node: node_mod.Node, ns: str, api_version: str, plural: str, obj: dict) -> dict:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    status, body = node.api("POST", f"{base}/namespaces/{ns}/{plural}", obj)
    assert status == 201, f"creating {plural}/{obj['metadata']['name']}: {status} {body}"
    return body


def wait_for(what: str, check, timeout: float = 120, interval: float = 0.5):
    """Polls check() until it returns something truthy; fails with the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not after {timeout:.0f}s (last: {last!r})")


def ready_pods(node: node_mod.Node, ns: str, selector: str) -> list[dict]:
    _, pods = node.api("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")
    return [p for p in pods.get("items", []) if any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def run_once(node: node_mod.Node, ns: str, name: str, script: str,
             labels: dict[str, str] | None = None, timeout: float = 90) -> tuple[str, str]:
    """Runs a busybox pod to completion; returns (phase, its log)."""
    create(node, ns, "v1", "pods", busybox(name, script, labels, restart="Never"))

    def finished():
        _, pod = node.api("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
        phase = pod.get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(f"pod {ns}/{name} to finish", finished, timeout)
    _, log = node.api("GET", f"/api/v1/namespaces/{ns}/pods/{name}/log")
    return phase, log.get("text", log.get("message", ""))
