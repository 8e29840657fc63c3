"""tools/node: the single node runs pods, resolves Service names, balances Services, enforces
NetworkPolicies and Pod Security, and reports pod metrics (what the platform's manifests rely on).
"""

from __future__ import annotations

import time

from tests.node import pods

NS = "node-basics"


def _get(node, host: str, port: int, path: str = "/") -> str:
    head, body = pods.http_get(node, host, port, path)
    assert pods.is_ok(head), head
    return body.decode().strip()


def _wait_answering(node, host: str, port: int) -> None:
    """kube-proxy writes a Service's rules a moment after its endpoints turn Ready."""
    def answers():
        try:
            return _get(node, host, port)
        except OSError:
            return None

    pods.wait_for(f"{host}:{port} answering", answers, timeout=30)


def _service_ip(node, ns: str, name: str) -> str:
    _, svc = node.api("GET", f"/api/v1/namespaces/{ns}/services/{name}")
    return svc["spec"]["clusterIP"]


def test_a_deployment_rolls_out_and_its_service_balances_over_both_pods(node_cluster):
    node = node_cluster
    pods.namespace(node, NS)
    pods.web(node, NS)
    ready = pods.wait_for("two web pods Ready", lambda: len(pods.ready_pods(node, NS, "app=web")) == 2)
    assert ready
    names = {p["metadata"]["name"] for p in pods.ready_pods(node, NS, "app=web")}
    ip = _service_ip(node, NS, "web")
    _wait_answering(node, ip, 80)
    # kube-proxy's rules pick a backend at random per connection; they may hold one endpoint for a
    # moment after both pods are Ready, so connections keep going (bounded) until both answered.
    served: set[str] = set()
    deadline = time.monotonic() + 30
    while served != names and time.monotonic() < deadline:
        served |= {_get(node, ip, 80) for _ in range(20)}
    assert served == names


def test_pods_resolve_service_names_through_coredns(node_cluster):
    node = node_cluster
    pods.namespace(node, NS)
    if not pods.ready_pods(node, NS, "app=web"):
        pods.web(node, NS)
        pods.wait_for("web pods Ready", lambda: pods.ready_pods(node, NS, "app=web"))
    _wait_answering(node, _service_ip(node, NS, "web"), 80)
    # busybox's own resolver (its wget would use glibc's, which a static binary cannot load).
    name = f"web.{NS}.svc.cluster.local"
    phase, log = pods.run_once(
        node, NS, "dns-client",
        f"addr=$(nslookup {name} | sed -n 's/^Address: *//p' | tail -1); echo resolved $addr; "
        + pods.fetch("$addr", 80))
    assert phase == "Succeeded", log
    resolved, served = log.split("\n", 1)
    assert resolved == f"resolved {_service_ip(node, NS, 'web')}", log
    assert served.strip().startswith("web-"), log


def test_network_policies_are_enforced(node_cluster):
    node = node_cluster
    ns = "node-netpol"
    pods.namespace(node, ns)
    pods.web(node, ns, replicas=1)
    pods.wait_for("web pod Ready", lambda: pods.ready_pods(node, ns, "app=web"))
    ip = _service_ip(node, ns, "web")
    _wait_answering(node, ip, 80)
    fetch = pods.fetch(ip, 80)
    phase, log = pods.run_once(node, ns, "before", fetch)
    assert log.startswith("web-"), log

    pods.create(node, ns, "networking.k8s.io/v1", "networkpolicies", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    pods.create(node, ns, "networking.k8s.io/v1", "networkpolicies", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "web-from-clients"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                              "ports": [{"port": 8080}]}]}})
    # kube-router syncs policies on a watch event; give it a few seconds, then a pod without
    # the label stays out and one with it gets in.
    attempts = iter(range(100))

    def blocked():
        phase, log = pods.run_once(node, ns, f"stranger-{next(attempts)}", fetch)
        return "unreachable" in log

    pods.wait_for("the stranger blocked", blocked, timeout=60, interval=1)
    phase, log = pods.run_once(node, ns, "client", fetch, labels={"role": "client"})
    assert log.startswith("web-"), log


def test_the_restricted_pod_security_standard_is_enforced(node_cluster):
    node = node_cluster
    pods.namespace(node, NS)
    privileged = pods.busybox("privileged", "sleep 1")
    privileged["spec"]["securityContext"] = {}
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    status, body = node.api("POST", f"/api/v1/namespaces/{NS}/pods", privileged)
    assert status == 403, body
    assert 'violates PodSecurity "restricted' in body["message"], body


def test_metrics_server_reports_pod_cpu_and_memory(node_cluster):
    node = node_cluster
    pods.namespace(node, NS)
    if not pods.ready_pods(node, NS, "app=web"):
        pods.web(node, NS)

    def usage():
        status, body = node.api("GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods")
        items = [i for i in body.get("items", []) if i["metadata"]["name"].startswith("web-")]
        return items if status == 200 and items else None

    # metrics-server scrapes every 15 s and needs two scrapes for a CPU rate.
    items = pods.wait_for("pod metrics", usage, timeout=120, interval=2)
    memory = items[0]["containers"][0]["usage"]["memory"]
    assert memory.endswith("Ki") and int(memory[:-2]) > 0, items
