"""What a cluster's monitoring namespace would run, for the node tier: Debian's Pushgateway and a
webhook receiver, run as processes on the node's address inside its network namespace and named
in the cluster by selectorless Services in `monitoring` (a Service plus an EndpointSlice pointing
at the node), the way a cluster names something it does not run as a pod."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.node import pods
from tools.node import netns
from tools.node.node import NODE_IP, Node

NAMESPACE = "monitoring"
REPO = Path(__file__).resolve().parents[2]
PUSHGATEWAY_PORT = 9091  # stacks/Pulumi.node.yaml backup.pushgateway_url
WEBHOOK_PORT = 9094  # stacks/Pulumi.node.yaml monitoring.webhook_url


def service_on_node(node: Node, name: str, port: int) -> None:
    """`name.monitoring.svc:port` reaches NODE_IP:port."""
    status, body = node.api("POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    assert status in (201, 409), body
    pods.create(node, NAMESPACE, "v1", "services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": port}]}})
    pods.create(node, NAMESPACE, "discovery.k8s.io/v1", "endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-node", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}]})


def start_in_node(node: Node, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*netns.wrap(node.netns), *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=REPO)


class Monitoring:
    """The Pushgateway and the webhook receiver, up until `stop()`."""

    def __init__(self, node: Node, workdir: Path) -> None:
        self.node = node
        self.notifications = workdir / "notifications.jsonl"
        self.procs = [
            start_in_node(node, ["prometheus-pushgateway", f"--web.listen-address={NODE_IP}:{PUSHGATEWAY_PORT}"]),
            start_in_node(node, [sys.executable, "-m", "tests.node.webhook_receiver", NODE_IP, str(WEBHOOK_PORT),
                                 str(self.notifications)]),
        ]
        service_on_node(node, "pushgateway", PUSHGATEWAY_PORT)
        service_on_node(node, "alert-receiver", WEBHOOK_PORT)

    def pushed_metrics(self) -> str:
        head, body = pods.http_get(self.node, NODE_IP, PUSHGATEWAY_PORT, "/metrics")
        assert pods.is_ok(head), head
        return body.decode(errors="replace")

    def received(self) -> list[dict]:
        """Every webhook payload received so far, in order."""
        if not self.notifications.exists():
            return []
        return [json.loads(line) for line in self.notifications.read_text().splitlines() if line]

    def wait_for_alert(self, name: str, status: str, timeout: float) -> dict:
        def arrived():
            for payload in self.received():
                for alert in payload.get("alerts", []):
                    if alert["labels"].get("alertname") == name and alert["status"] == status:
                        return payload
            return None

        return pods.wait_for(f"a {status} {name} notification", arrived, timeout=timeout, interval=1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        deadline = time.monotonic() + 10
        for proc in self.procs:
            proc.wait(max(0.1, deadline - time.monotonic()))
