"""Cron schedules of CronJobs, parsed by cronsim (the parser healthchecks.io runs on).

Kubernetes' CronJob controller takes the 5-field form (minute hour day-of-month month
day-of-week) and the `@hourly`/`@daily`/`@weekly`/`@monthly`/`@yearly` macros; `every day`
or a 4-field `0 3 * *` is refused here, with the field it fails on, instead of being created
and never run. The longest gap between two runs is what a missed-run alert must wait before it
fires: for `0 3 * * 1-5` it is Friday 03:00 to Monday 03:00 (72 h), not a week.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cronsim import CronSim, CronSimError

# Kubernetes' macros (robfig/cron's), which cronsim has no name for.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Far enough to see every gap of a schedule that repeats yearly; a leap day's schedule (29 Feb)
# repeats every 4 years, hence the window.
_WINDOW = timedelta(days=4 * 366 + 1)
_MAX_RUNS = 20_000
_START = datetime(2026, 1, 1)


def expand(schedule: str) -> str:
    return MACROS.get(schedule.strip(), schedule.strip())


def schedule_problem(schedule: str) -> str | None:
    """Why `schedule` is not a CronJob schedule (plain words), or None."""
    text = expand(schedule)
    fields = text.split()
    if len(fields) != 5:
        return (f"{schedule!r} is not a cron schedule: it needs 5 fields (minute hour day-of-month month "
                f"day-of-week, such as \"0 3 * * *\" for 03:00 every day) or a macro like @daily; "
                f"it has {len(fields)}")
    try:
        runs = CronSim(text, _START)
        next(runs)
    except CronSimError as exc:
        return f"{schedule!r} is not a cron schedule: {exc}"
    except StopIteration:
        return f"{schedule!r} never runs (no such date)"
    return None


def longest_gap_seconds(schedule: str) -> float:
    """The longest time between two consecutive runs of a valid schedule."""
    runs = CronSim(expand(schedule), _START)
    previous = next(runs)
    longest = 0.0
    for count, run in enumerate(runs):
        longest = max(longest, (run - previous).total_seconds())
        previous = run
        if run - _START > _WINDOW or count > _MAX_RUNS:
            break
    return longest
