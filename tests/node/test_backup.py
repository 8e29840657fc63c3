"""Backups on the node: the backup CronJob, run as a Job now, dumps the stack's own PostgreSQL pod
to its volume through the NetworkPolicies a cluster enforces (the defect this tier was made to
catch: they left backup Jobs DNS only) and pushes its metrics to the Pushgateway the alert rules
read, and the restore-drill CronJob's Job restores that dump and reports."""

from __future__ import annotations

from tests.node import pods
from tools.node import deploy

NAMESPACE = deploy.NAMESPACE


def _run_job_from(node, cron_job: str, job: str, timeout: float = 240) -> dict:
    """What `kubectl create job --from=cronjob/...` does; waits for it to end."""
    _, cron = node.api("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/{cron_job}")
    assert "spec" in cron, cron
    pods.create(node, NAMESPACE, "batch/v1", "jobs", {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job, "labels": cron["spec"]["jobTemplate"].get("metadata", {}).get("labels", {})},
        "spec": cron["spec"]["jobTemplate"]["spec"]})

    def ended():
        _, body = node.api("GET", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job}")
        conditions = {c["type"]: c["status"] for c in body.get("status", {}).get("conditions", [])}
        return body if conditions.get("Complete") == "True" or conditions.get("Failed") == "True" else None

    try:
        return pods.wait_for(f"job {job} to end", ended, timeout=timeout, interval=1)
    except AssertionError as err:
        _, listed = node.api("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=job-name={job}")
        states = [(p["metadata"]["name"], p["status"].get("phase"),
                   [c.get("state") for c in p["status"].get("containerStatuses", [])],
                   p["status"].get("conditions")) for p in listed.get("items", [])]
        _, events = node.api("GET", f"/api/v1/namespaces/{NAMESPACE}/events")
        recent = [(e["involvedObject"]["name"], e["reason"], e["message"][:300])
                  for e in events.get("items", [])[-10:]]
        raise AssertionError(f"{err}; pods: {states}; events: {recent}; log: {_job_log(node, job)[-2000:]}") from None


def _job_log(node, job: str) -> str:
    _, listed = node.api("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=job-name={job}")
    logs = []
    for pod in listed.get("items", []):
        _, log = node.api("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}/log")
        logs.append(log.get("text", log.get("message", str(log))))
    return "\n".join(logs)


def test_a_backup_job_dumps_the_database_and_pushes_its_metrics(platform, monitoring):
    node, _, _ = platform
    job = _run_job_from(node, "backup-agent-state", "backup-now")
    log = _job_log(node, "backup-now")
    assert job["status"].get("succeeded") == 1, log
    dumps = list((node.workdir / "volumes" / "pv-backups").rglob("*"))
    assert any(p.is_file() and p.stat().st_size > 0 for p in dumps), (dumps, log)
    metrics = monitoring.pushed_metrics()
    success = [line for line in metrics.splitlines()
               if line.startswith("agent_backup_last_success_timestamp_seconds{") and 'source="agent-state"' in line]
    assert success, (metrics[-2000:], log)


def test_the_restore_drill_restores_the_newest_backup_and_reports(platform, monitoring):
    node, _, _ = platform
    job = _run_job_from(node, "restore-drill", "restore-drill-now")
    log = _job_log(node, "restore-drill-now")
    assert job["status"].get("succeeded") == 1, log
    metrics = monitoring.pushed_metrics()
    assert any(line.startswith("agent_restore_drill_success") and line.endswith(" 1")
               for line in metrics.splitlines()), (metrics[-2000:], log)
