"""components/schedule.py: CronJob schedules parsed by cronsim, and their longest gap between runs."""

from __future__ import annotations

import pytest

from components.schedule import longest_gap_seconds, schedule_problem

HOUR = 3600.0


@pytest.mark.parametrize(("schedule", "gap_hours"), [
    ("0 3 * * *", 24),
    ("0 3 * * 1-5", 72),  # Friday 03:00 to Monday 03:00, not a week
    ("0 3 * * MON-FRI", 72),
    ("15 * * * *", 1),
    ("*/5 * * * *", 5 / 60),
    ("0 3 * * 0", 7 * 24),
    ("0 0 1 * *", 31 * 24),  # the longest month
    ("@daily", 24),
    ("@hourly", 1),
])
def test_longest_gap(schedule, gap_hours):
    assert schedule_problem(schedule) is None
    assert longest_gap_seconds(schedule) == pytest.approx(gap_hours * HOUR)


@pytest.mark.parametrize(("schedule", "says"), [
    ("every day", "it needs 5 fields"),
    ("0 3 * *", "it has 4"),
    ("0 3 * * * *", "it has 6"),
    ("61 * * * *", "Bad minute"),
    ("0 3 31 2 *", "Bad day-of-month"),
    ("0 25 * * *", "Bad hour"),
])
def test_not_a_schedule(schedule, says):
    problem = schedule_problem(schedule)
    assert problem is not None and problem.startswith(f"{schedule!r} is not a cron schedule") and says in problem
