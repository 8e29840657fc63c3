"""Tier 5: the off-cluster backup objects, as the real kube-apiserver accepts and defaults them.

The staging stack with an s3 target and WAL archiving on its PostgreSQL source: the API server
must accept the receiver's StatefulSet (volumeClaimTemplates, PVC retention policy, exec probes)
and the CronJobs whose credentials come only from Secrets; the mocks cannot tell.
"""

from __future__ import annotations

import pytest

from tests.cluster import kube
from tests.engine_project import Project

pytestmark = pytest.mark.cluster

NAMESPACE = "agents-staging"


@pytest.fixture
def staging_s3(tmp_path, toolchain, kube_cluster, monitoring_crds, monkeypatch) -> Project:
    project = Project(tmp_path)

    def s3_and_wal(config):
        config["agent-platform:kubernetes"] = {"context": kube_cluster.context, "skip_await": True}
        backup = config["agent-platform:backup"]
        backup["target"] = {"kind": "s3", "endpoint": "https://s3.backup.example.com", "bucket": "agent-backups",
                            "prefix": "agents/staging", "credentials_secret": "backup-s3",
                            "encryption_secret": "backup-key", "size": "30Gi"}
        source = next(s for s in backup["sources"] if s["kind"] == "postgres")
        source["wal_archiving"] = {"enabled": True, "push_interval_seconds": 10, "volume_size": "15Gi"}

    project.edit("staging", s3_and_wal)
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    return project


def _env(pod_spec: dict) -> dict[str, dict]:
    return {e["name"]: e for e in pod_spec["containers"][0]["env"]}


def test_s3_target_and_wal_receiver_are_accepted_and_hold_no_secret_values(staging_s3, kube_api):
    up = staging_s3.run("up", "staging", policy_packs=["policies"])
    assert up.summary.result == "succeeded"
    try:
        receiver = kube.read_object(kube_api, "apps/v1", "StatefulSet", "wal-agent-state", NAMESPACE)
        assert receiver is not None, "the WAL receiver's StatefulSet was not created"
        spec = receiver["spec"]
        assert spec["replicas"] == 1
        assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
        assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "15Gi"
        pod = spec["template"]["spec"]
        env = _env(pod)
        assert env["RESTIC_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "backup-key", "key": "RESTIC_PASSWORD"}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "backup-s3"
        assert pod["containers"][0]["livenessProbe"]["exec"]["command"][0] == "python"

        cron_jobs = {c["metadata"]["name"]: c for c in kube.list_objects(kube_api, "batch/v1", "CronJob", NAMESPACE)}
        assert {"backup-agent-state", "basebackup-agent-state", "restore-drill"} <= set(cron_jobs)
        for name in ("backup-agent-state", "basebackup-agent-state"):
            job_pod = cron_jobs[name]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            staging = next(v for v in job_pod["volumes"] if v["name"] == "target")
            assert staging["emptyDir"]["sizeLimit"] == "30Gi", name
            assert all("value" not in e for e in _env(job_pod).values()), name
        # Nothing the stack sent carries a credential value: the Secrets are only named.
        settings = kube.read_object(kube_api, "v1", "ConfigMap", "backup-settings", NAMESPACE)
        assert '"credentials_secret": "backup-s3"' in settings["data"]["backup.json"]
        assert "AWS_SECRET_ACCESS_KEY" not in settings["data"]["backup.json"]
    finally:
        staging_s3.run("destroy", "staging")
        kube.wait_gone(kube_api, "v1", "Namespace", NAMESPACE, timeout=120)
