"""Tier 5: `pulumi up`, an update and `pulumi destroy` of a real stack against kube-apiserver.

The staging stack (every kind of object the platform makes: Deployments, Services, HPAs, PDBs,
NetworkPolicies, CronJobs, a PVC, ServiceMonitors, a PrometheusRule), pointed at the test
cluster, with `skip_await` because no kubelet runs there, and the policy pack on every `up`.
"""

from __future__ import annotations

import pytest

from tests.cluster import kube
from tests.engine_project import Project

pytestmark = pytest.mark.cluster

NAMESPACE = "agents-staging"


@pytest.fixture
def staging(tmp_path, toolchain, kube_cluster, monitoring_crds, monkeypatch) -> Project:
    project = Project(tmp_path)

    def into_test_cluster(config):
        # A cluster without nodes: pods never start, so don't wait for readiness.
        config["agent-platform:kubernetes"] = {"context": kube_cluster.context, "skip_await": True}

    project.edit("staging", into_test_cluster)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    return project


def _read(api, api_version, kind, name):
    found = kube.read_object(api, api_version, kind, name, NAMESPACE)
    assert found is not None, f"{kind} {NAMESPACE}/{name} does not exist"
    return found


def test_up_update_destroy(staging, kube_api):
    first = staging.run("up", "staging", policy_packs=["policies"])
    assert first.summary.result == "succeeded"

    namespace = kube.read_object(kube_api, "v1", "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    workers = _read(kube_api, "apps/v1", "Deployment", "workers")
    # Server-side defaulting happened: the API server accepted and completed the object.
    assert workers["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert workers["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = workers["spec"]["template"]["spec"]
    assert pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 10
    assert pod["terminationGracePeriodSeconds"] == 10 + 120 + 15
    for name in ("workers", "coordinators", "specialists", "gateway"):
        _read(kube_api, "apps/v1", "Deployment", name)
        service = _read(kube_api, "v1", "Service", name)
        assert service["spec"]["clusterIP"] not in (None, "None")
        pdb = _read(kube_api, "policy/v1", "PodDisruptionBudget", name)
        assert pdb["spec"]["maxUnavailable"] == 1
    headless = _read(kube_api, "v1", "Service", "workers-headless")
    assert headless["spec"]["clusterIP"] == "None"

    hpa = _read(kube_api, "autoscaling/v2", "HorizontalPodAutoscaler", "workers")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource", "External"}

    policies = {
        p["metadata"]["name"] for p in kube.list_objects(kube_api, "networking.k8s.io/v1", "NetworkPolicy", NAMESPACE)
    }
    assert {"default-deny", "allow-dns", "allow-gateway-to-agents"} <= policies

    cron_jobs = {c["metadata"]["name"]: c for c in kube.list_objects(kube_api, "batch/v1", "CronJob", NAMESPACE)}
    assert {"backup-agent-state", "backup-workspace", "restore-drill"} <= set(cron_jobs)
    assert cron_jobs["backup-agent-state"]["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron_jobs["restore-agent-state"]["spec"]["suspend"] is True

    monitors = kube.list_objects(kube_api, "monitoring.coreos.com/v1", "ServiceMonitor", NAMESPACE)
    assert {m["metadata"]["name"] for m in monitors} == {"workers", "coordinators", "specialists", "gateway"}
    rule = _read(kube_api, "monitoring.coreos.com/v1", "PrometheusRule", "agent-platform")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"AgentHighErrorRate", "AgentErrorBudgetBurnFast", "AgentBackupMissed", "AgentRestoreDrillMissed"} <= alerts

    def widen_workers(config):
        config["agent-platform:clusters"][0]["autoscaling"]["max_instances"] = 14

    staging.edit("staging", widen_workers)
    second = staging.run("up", "staging", policy_packs=["policies"])
    changes = {k: v for k, v in second.summary.resource_changes.items() if k != "same"}
    assert changes == {"update": 1}, second.summary.resource_changes
    assert _read(kube_api, "autoscaling/v2", "HorizontalPodAutoscaler", "workers")["spec"]["maxReplicas"] == 14

    staging.run("destroy", "staging")
    kube.wait_gone(kube_api, "v1", "Namespace", NAMESPACE, timeout=120)
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("batch/v1", "CronJob"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    ):
        assert kube.list_objects(kube_api, api_version, kind, NAMESPACE) == []
