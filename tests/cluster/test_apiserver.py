"""The cluster fixture, checked the way a user of it would notice: a real v1.34.4 API server
with a working controller-manager, reachable through the kubeconfig it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

try:
    from . import kube
except ImportError:
    import kube

pytestmark = pytest.mark.cluster


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def namespace(kube_api):
    name = _name("ap-test")
    kube.create_object(kube_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete_object(kube_api, "v1", "Namespace", name)  # not awaited


def test_version_is_the_pinned_release(kube_cluster):
    status, body = kube_cluster.get("/version")
    assert status == 200, body
    version = json.loads(body)
    assert version["gitVersion"] == "v1.34.4"
    assert (version["major"], version["minor"]) == ("1", "34")
    assert version["gitTreeState"] == "clean"


def test_kubeconfig_alone_reaches_the_cluster(kube_cluster):
    # What `pulumi up` with KUBECONFIG set does: a separate process that knows only the file.
    script = textwrap.dedent("""
        from kubernetes import client, config
        config.load_kube_config()
        print(client.VersionApi().get_code().git_version)
        names = [ns.metadata.name for ns in client.CoreV1Api().list_namespace().items]
        print(",".join(sorted(names)))
    """)
    env = kube_cluster.env()
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    version, namespaces = proc.stdout.split()
    assert version == "v1.34.4"
    assert {"default", "kube-system", "kube-public"} <= set(namespaces.split(","))
    assert os.stat(kube_cluster.kubeconfig).st_mode & 0o077 == 0  # holds the admin token


def test_namespace_deletion_removes_its_contents(kube_api):
    # Deletion is finished by the controller-manager's namespace controller: without it the
    # namespace stays Terminating for ever.
    ns = _name("ap-delete")
    kube.create_object(kube_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.create_object(kube_api, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": ns}, "data": {"k": "v"},
    })
    assert kube.read_object(kube_api, "v1", "ConfigMap", "settings", ns)["data"] == {"k": "v"}
    assert kube.delete_object(kube_api, "v1", "Namespace", ns)
    assert kube.read_object(kube_api, "v1", "Namespace", ns)["status"]["phase"] == "Terminating"
    kube.wait_gone(kube_api, "v1", "Namespace", ns, timeout=120)
    assert kube.read_object(kube_api, "v1", "ConfigMap", "settings", ns) is None


def test_deployment_is_defaulted_and_garbage_collected(kube_api, namespace):
    labels = {"app.kubernetes.io/name": "echo"}
    kube.create_object(kube_api, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "echo", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "echo", "image": "example.invalid/echo:1.0"}]},
            },
        },
    })
    stored = kube.read_object(kube_api, "apps/v1", "Deployment", "echo", namespace)
    spec = stored["spec"]
    # Server-side defaulting, as a client that created the object would see it.
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": "25%"}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    container = spec["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert spec["template"]["spec"]["restartPolicy"] == "Always"

    # The deployment controller makes a ReplicaSet owned by the Deployment ...
    deadline = time.monotonic() + 60
    while not (replicasets := kube.list_objects(kube_api, "apps/v1", "ReplicaSet", namespace)):
        assert time.monotonic() < deadline, "the deployment controller made no ReplicaSet"
        time.sleep(0.25)
    owner = replicasets[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Deployment", "echo")

    # ... and a foreground delete (pulumi-kubernetes' default) completes only through the
    # garbage collector, which removes the ReplicaSet (and its never-scheduled Pods) first.
    kube.delete_object(kube_api, "apps/v1", "Deployment", "echo", namespace, propagation="Foreground")
    kube.wait_gone(kube_api, "apps/v1", "Deployment", "echo", namespace, timeout=120)
    assert kube.list_objects(kube_api, "apps/v1", "ReplicaSet", namespace) == []


def test_monitoring_crds_accept_objects(kube_api, monitoring_crds, namespace):
    assert sorted(monitoring_crds) == [
        "prometheusrules.monitoring.coreos.com",
        "scaledobjects.keda.sh",
        "servicemonitors.monitoring.coreos.com",
    ]
    # Installing again is a no-op.
    assert sorted(kube.install_monitoring_crds(kube_api)) == sorted(monitoring_crds)

    rule_spec = {"groups": [{"name": "agents", "rules": [{
        "alert": "AgentErrorRateHigh",
        "expr": 'sum(rate(agent_requests_total{code=~"5.."}[5m])) > 1',
        "for": "5m",
        "labels": {"severity": "page"},
    }]}]}
    kube.create_object(kube_api, {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "agents", "namespace": namespace}, "spec": rule_spec,
    })
    kube.create_object(kube_api, {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "agents", "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/part-of": "agents"}},
                 "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]},
    })
    kube.create_object(kube_api, {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "agents", "namespace": namespace},
        "spec": {"scaleTargetRef": {"name": "agents"}, "minReplicaCount": 1, "maxReplicaCount": 5,
                 "triggers": [{"type": "prometheus", "metadata": {"threshold": "10"}}]},
    })

    rule = kube.read_object(kube_api, "monitoring.coreos.com/v1", "PrometheusRule", "agents", namespace)
    assert rule["spec"] == rule_spec
    monitors = kube.list_objects(kube_api, "monitoring.coreos.com/v1", "ServiceMonitor", namespace)
    assert [m["metadata"]["name"] for m in monitors] == ["agents"]
    scaled = kube.read_object(kube_api, "keda.sh/v1alpha1", "ScaledObject", "agents", namespace)
    assert scaled["spec"]["maxReplicaCount"] == 5
