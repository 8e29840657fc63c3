"""tools/pipeline/drills.py: a promotion's drill gate from the source namespace's Jobs."""

from __future__ import annotations

import datetime as dt

from tools.pipeline.drills import verdict

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=48)


def job(name, outcome, hours_ago, owner="restore-drill", message=""):
    when = (NOW - dt.timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")
    condition = {"type": outcome, "status": "True", "lastTransitionTime": when, "message": message}
    return {"metadata": {"name": name, "ownerReferences": [{"kind": "CronJob", "name": owner}]},
            "status": {"conditions": [condition] if outcome else []}}


def test_newest_finished_drill_decides():
    jobs = [job("d-1", "Failed", 30, message="restore of agent-state missed its RTO"), job("d-2", "Complete", 5)]
    status = verdict(jobs, "agents-staging", NOW, DAY)
    assert status.green and "d-2" in status.reason
    jobs.append(job("d-3", "Failed", 1, message="BackoffLimitExceeded"))
    status = verdict(jobs, "agents-staging", NOW, DAY)
    assert not status.green
    assert "Job d-3" in status.reason and "failed: BackoffLimitExceeded" in status.reason


def test_running_drill_does_not_count_and_other_jobs_are_ignored():
    jobs = [job("d-1", "Complete", 10), job("d-2", None, 0), job("backup-1", "Failed", 0, owner="backup-agent-state")]
    assert verdict(jobs, "ns", NOW, DAY).green


def test_no_drill_or_a_stale_one_is_not_green():
    status = verdict([], "agents-staging", NOW, DAY)
    assert not status.green and "no restore drill has finished in agents-staging" in status.reason
    assert "create job --from=cronjob/restore-drill" in status.reason
    stale = verdict([job("d-1", "Complete", 72)], "ns", NOW, DAY)
    assert not stale.green and "72 h old, older than the 48 h allowed" in stale.reason
