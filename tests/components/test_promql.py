"""components/promql.py: what the rule set derives from a stack's schedules."""

from __future__ import annotations

from agent_runtime.config import BackupConfig
from components.promql import default_rules


def _missed_threshold(schedule: str) -> float:
    source = {"name": "agent-state", "kind": "postgres", "host": "db", "database": "agents", "user": "backup",
              "password_secret": "db"}
    backup = BackupConfig(enabled=True, schedule=schedule, sources=[source])
    (rule,) = [r for r in default_rules(backup=backup) if r.name == "AgentBackupMissed"]
    return rule.threshold


def test_a_weekday_backup_missed_alert_waits_a_weekend_not_a_week():
    # Friday 03:00 -> Monday 03:00 is 72 h; the field counting this replaced read `1-5` as
    # weekly (168 h), so a missed Tuesday backup went unseen for a week.
    assert _missed_threshold("0 3 * * 1-5") == 72 * 3600 + 0.1 * 72 * 3600
    assert _missed_threshold("0 3 * * *") == 24 * 3600 + 2.4 * 3600
