"""Is the source stack's restore drill green? Read from its cluster, never assumed.

The drill is the `restore-drill` CronJob of components/backup.py; each run is a Job it owns
(`kubectl create job --from=cronjob/restore-drill` makes one too), and `agent_runtime drill`
exits non-zero when a restore fails or misses its RTO/RPO target, so the Job's own conditions
say whether it passed. Green means: the newest finished drill Job completed, recently enough.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

DRILL_CRONJOB = "restore-drill"


@dataclasses.dataclass(frozen=True)
class DrillStatus:
    """The verdict and the sentence that explains it (it goes into the promotion report)."""

    green: bool
    reason: str


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _finished(job: dict[str, Any]) -> tuple[str, dt.datetime, str] | None:
    """("Complete" | "Failed", when, message) of a finished Job, None while it runs."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            when = (_time(condition.get("lastTransitionTime")) or _time(job["status"].get("completionTime"))
                    or _time(job["status"].get("startTime")))
            if when is None:
                continue
            message = condition.get("message") or condition.get("reason") or ""
            return condition["type"], when, message
    return None


def _owned_by_drill(job: dict[str, Any]) -> bool:
    owners = (job.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("kind") == "CronJob" and o.get("name") == DRILL_CRONJOB for o in owners)


def verdict(jobs: Iterable[dict[str, Any]], namespace: str, now: dt.datetime,
            max_age: dt.timedelta) -> DrillStatus:
    """The drill's status from the namespace's Jobs (wire format dicts)."""
    finished = []
    for job in jobs:
        if _owned_by_drill(job):
            result = _finished(job)
            if result is not None:
                finished.append((result[1], result[0], result[2], job["metadata"]["name"]))
    if not finished:
        return DrillStatus(
            False,
            f"no restore drill has finished in {namespace} "
            f"(run one: kubectl -n {namespace} create job --from=cronjob/{DRILL_CRONJOB} drill-now)",
        )
    when, outcome, message, name = max(finished)
    stamp = when.strftime("%Y-%m-%d %H:%M UTC")
    if outcome == "Failed":
        return DrillStatus(
            False,
            f"the last restore drill in {namespace} (Job {name}, {stamp}) failed" + (f": {message}" if message else ""),
        )
    age = now - when
    if age > max_age:
        hours = age.total_seconds() / 3600
        return DrillStatus(
            False,
            f"the last passing restore drill in {namespace} (Job {name}, {stamp}) is "
            f"{hours:.0f} h old, older than the {max_age.total_seconds() / 3600:.0f} h allowed",
        )
    return DrillStatus(True, f"the last restore drill in {namespace} (Job {name}, {stamp}) passed")


def cluster_jobs(context: str | None, namespace: str) -> list[dict[str, Any]]:
    """The namespace's Jobs from the cluster the stack deploys to (KUBECONFIG, the stack's context)."""
    from kubernetes import client, config

    api = config.new_client_from_config(context=context)
    try:
        found = client.BatchV1Api(api).list_namespaced_job(namespace, _preload_content=False)
        import json

        return json.loads(found.data).get("items", [])
    finally:
        api.close()
