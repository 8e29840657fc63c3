"""What the reports compute from range-query series: exact counter increases, per-step deltas,
percentiles and linear trends.

Counter increases are taken from the raw samples (the last value minus the first, counter resets
added back as Prometheus' `rate()` assumes), not from `increase()`, which extrapolates to the
window's edges: the reports' request counts are then the counts the gateway served. A series born
inside the window (its first sample later than one step after the start) counted from 0, as the
in-process alert evaluator does: the gateway creates a series with its first request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .prometheus import Series

__all__ = ["Window", "counter_deltas", "counter_increase", "percentile", "trend_per_day"]


@dataclass(frozen=True)
class Window:
    """The period a report covers, its query step and the `rate()` window of its plotted rates."""

    start: float
    end: float
    step: float
    rate_window: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def counter_increase(series: Series, window: Window) -> float:
    """What the counter counted inside the window (resets added back; no extrapolation)."""
    if not series.values:
        return 0.0
    born_inside = series.times[0] > window.start + window.step
    total = series.values[0] if born_inside else 0.0
    for before, after in zip(series.values, series.values[1:], strict=False):
        total += after - before if after >= before else after
    return total


def counter_deltas(series: Series, window: Window) -> dict[float, float]:
    """Per step time, what the counter counted since the previous step (born-inside counted)."""
    out: dict[float, float] = {}
    if not series.values:
        return out
    if series.times[0] > window.start + window.step:
        out[series.times[0]] = series.values[0]
    for i in range(1, len(series.values)):
        before, after = series.values[i - 1], series.values[i]
        out[series.times[i]] = after - before if after >= before else after
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between samples (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def trend_per_day(times: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of values over time, per day (NaN with fewer than 3 samples)."""
    if len(times) < 3:
        return math.nan
    n = len(times)
    mt, mv = sum(times) / n, sum(values) / n
    var = sum((t - mt) ** 2 for t in times)
    if var == 0:
        return math.nan
    cov = sum((t - mt) * (v - mv) for t, v in zip(times, values, strict=False))
    return cov / var * 86400


def sum_by_time(series: Iterable[Series]) -> tuple[list[float], list[float]]:
    """Several series added up at each step time they share (missing counts as absent)."""
    acc: dict[float, float] = {}
    for s in series:
        for t, v in zip(s.times, s.values, strict=False):
            acc[t] = acc.get(t, 0.0) + v
    times = sorted(acc)
    return times, [acc[t] for t in times]
