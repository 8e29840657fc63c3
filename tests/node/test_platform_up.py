"""The node stack on the real node: `pulumi up` waits for every rollout (the agents, the gateway,
PostgreSQL run from images built on this machine), traffic goes through the deployed gateway to
every cluster, the NetworkPolicies keep a stranger out, and `pulumi destroy` takes it all away.
"""

from __future__ import annotations

import http.client
import json

from tests.node import pods
from tools.node import deploy

NAMESPACE = deploy.NAMESPACE



def _gateway(node):
    return node.forward(*deploy.gateway_service(node))


def _request(forward, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection(*forward.address, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_up_waited_for_every_rollout(platform):
    node, _, _ = platform
    for name in ("workers", "coordinators", "specialists", "gateway"):
        ready = pods.ready_pods(node, NAMESPACE, f"app.kubernetes.io/name={name}")
        assert len(ready) >= 2, name
    assert pods.ready_pods(node, NAMESPACE, "app.kubernetes.io/name=postgres")


def test_every_pod_serves_metrics(platform):
    node, _, _ = platform
    _, listed = node.api("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
    scraped = 0
    for pod in listed["items"]:
        annotations = pod["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        port = int(annotations["prometheus.io/port"])
        head, body = pods.http_get(node, pod["status"]["podIP"], port, "/metrics")
        assert pods.is_ok(head), pod["metadata"]["name"]
        assert b"# TYPE " in body, pod["metadata"]["name"]
        scraped += 1
    assert scraped >= 8  # six agents and two gateways


def test_each_route_reaches_its_cluster_through_the_gateway(platform):
    node, _, _ = platform
    with _gateway(node) as forward:
        for prefix, cluster in (("/v1/chat", "workers"), ("/v1/plans", "coordinators"),
                                ("/v1/tools", "specialists")):
            status, headers, body = _request(forward, "GET", f"{prefix}/capabilities")
            assert status == 200, (prefix, body)
            assert json.loads(body)["cluster"] == cluster
            assert headers["x-agent-pod"].startswith(cluster)


def test_a_streamed_run_completes_and_a_conversation_sticks_to_one_pod(platform):
    node, _, _ = platform
    with _gateway(node) as forward:
        served = set()
        for _ in range(4):
            status, headers, body = _request(
                forward, "POST", "/v1/plans/run", {"duration_seconds": 0.5, "interval_seconds": 0.1},
                headers={"x-conversation-id": "conversation-7"})
            assert status == 200, body
            assert b"event: done" in body
            served.add(headers["x-agent-pod"])
        assert len(served) == 1, served


def test_a_pod_outside_the_platform_cannot_reach_an_agent(platform):
    node, _, _ = platform
    agent = pods.ready_pods(node, NAMESPACE, "app.kubernetes.io/name=workers")[0]
    ip, port = agent["status"]["podIP"], 8080
    phase, log = pods.run_once(node, NAMESPACE, "stranger", pods.fetch(ip, port, "/healthz"))
    assert "unreachable" in log, log


def test_agents_keep_conversations_in_the_stack_database(platform):
    """The path the agents' NetworkPolicy must leave open: agent pods to the stack's PostgreSQL.
    Messages written through the gateway are read back through it, by whichever replica answers."""
    node, _, _ = platform
    with _gateway(node) as forward:
        written = []
        for n in range(4):
            status, headers, body = _request(forward, "POST", "/v1/chat/remember",
                                             {"conversation": "node-state", "text": f"message {n}"})
            assert status == 201, body
            written.append((f"message {n}", headers["x-agent-pod"]))
        status, _, body = _request(forward, "GET", "/v1/chat/history?conversation=node-state")
        assert status == 200, body
        assert [(m["text"], m["pod"]) for m in json.loads(body)["messages"]] == written
