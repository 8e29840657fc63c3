"""The alert signals: one object per signal yields both its PromQL and its in-process value.

A signal is what an `AlertRule` compares with its threshold (`error_rate`, `backup_age_seconds`,
...). Each object here says which metric it reads, the label that tells its instances apart
(route, cluster, source), how to write it in PromQL (`components/promql.py` builds the
PrometheusRule from `promql()`) and how to compute the same value from successive sample
snapshots (`compute()`, used by the in-process evaluator), so a new signal is added in one place
and the two sides cannot drift. The metric names come from `agent_runtime.metrics_signals`.

In-process values follow the PromQL: counter increases over the window from the history
`SignalComputer` keeps between evaluations (resets handled as `rate()` does), gauges as they are
now, `histogram_quantile` as Prometheus' bucketQuantile.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..metrics_signals import (
    BACKUP_LAST_SUCCESS,
    BREAKER_STATE,
    DRILL_LAST_SUCCESS,
    DRILL_RPO,
    DRILL_RTO,
    ENDPOINTS_EJECTED,
    QUEUE_LENGTH,
    QUEUE_OLDEST_AGE,
    REQUEST_DURATION,
    REQUESTS_TOTAL,
)
from .sources import Labels, Sample, labels_of
from .templates import duration

__all__ = [
    "SIGNALS",
    "Query",
    "Signal",
    "SignalComputer",
    "error_ratio_expr",
    "error_ratio_record",
    "histogram_quantile",
    "quote",
    "selector",
]


# --- PromQL text ------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(metric: str, matchers: Mapping[str, str], *extra: str) -> str:
    """`metric{k="v",...}` with the given equality matchers and any extra matcher text."""
    parts = [f"{k}={quote(v)}" for k, v in sorted(matchers.items())] + list(extra)
    return metric + ("{" + ",".join(parts) + "}" if parts else "")


def error_ratio_record(window_seconds: float) -> str:
    """Name of the recording rule holding the per-route 5xx ratio over a window."""
    return f"route:agent_gateway_request_errors:ratio_rate{duration(window_seconds)}"


def error_ratio_expr(window_seconds: float, matchers: Mapping[str, str], *key: str) -> str:
    """The per-route 5xx ratio over a window, as the recording rule computes it."""
    w = duration(window_seconds)
    errors = selector(REQUESTS_TOTAL, matchers, *key, 'code=~"5.."')
    total = selector(REQUESTS_TOTAL, matchers, *key)
    # `or ... * 0`: a route with traffic but no 5xx series yet has ratio 0, not "no data".
    return (
        f"(sum by (route) (rate({errors}[{w}]))"
        f" or sum by (route) (rate({total}[{w}])) * 0)"
        f" / sum by (route) (rate({total}[{w}]))"
    )


@dataclass(frozen=True)
class Query:
    """One evaluation of a signal: its window, which instances, and the scope of every metric.

    `route` keeps one instance (a route, a cluster for queue signals, a source for backups);
    `exclude` drops instances that have a rule of their own; `matchers` scope every metric
    (e.g. the namespace) in PromQL.
    """

    window_seconds: float = 300.0
    route: str | None = None
    exclude: Sequence[str] = ()
    matchers: Mapping[str, str] = field(default_factory=dict)
    # PromQL only: read error ratios from their recording rules instead of computing them.
    recorded: bool = True

    def key_matchers(self, key_label: str | None) -> list[str]:
        if key_label is None:
            return []
        if self.route is not None:
            return [f"{key_label}={quote(self.route)}"]
        if self.exclude:
            return [f"{key_label}!~{quote('|'.join(re.escape(e) for e in sorted(self.exclude)))}"]
        return []

    def keeps(self, value: str) -> bool:
        if self.route is not None:
            return value == self.route
        return value not in self.exclude


# --- counter history --------------------------------------------------------------------------


class _Series:
    """One counter's history: (time, reset-adjusted value), thinned with age."""

    __slots__ = ("times", "values", "offset", "last_raw")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[float] = []
        self.offset = 0.0
        self.last_raw: float | None = None

    def add(self, t: float, raw: float) -> None:
        if self.last_raw is not None and raw < self.last_raw:
            self.offset += self.last_raw  # a counter reset, as Prometheus' rate() assumes
        self.last_raw = raw
        self.times.append(t)
        self.values.append(raw + self.offset)

    def prune(self, now: float, horizon: float, resolution: float) -> None:
        # Drop what no window reaches, keeping one sample at or before the horizon.
        cut = bisect_right(self.times, now - horizon) - 1
        if cut > 0:
            del self.times[:cut], self.values[:cut]
        # Thin old samples: keep spacing of about 1% of their age (never finer than resolution),
        # so a 3-day window costs a few hundred samples, not 17,000.
        if len(self.times) < 64:
            return
        keep_t, keep_v = [self.times[0]], [self.values[0]]
        for i in range(1, len(self.times) - 1):
            age = now - self.times[i]
            if self.times[i] - keep_t[-1] >= max(resolution, age / 100):
                keep_t.append(self.times[i])
                keep_v.append(self.values[i])
        keep_t.append(self.times[-1])
        keep_v.append(self.values[-1])
        self.times, self.values = keep_t, keep_v

    def increase(self, now: float, window: float) -> float | None:
        if not self.times:
            return None
        i = bisect_right(self.times, now - window) - 1
        base = self.values[max(i, 0)]
        return self.values[-1] - base


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus' bucketQuantile: linear interpolation inside the bucket holding rank q."""
    b = sorted(buckets)
    if len(b) < 2 or not math.isinf(b[-1][0]):
        return math.nan
    # Cumulative counts can dip through scrape races; Prometheus forces them monotonic.
    counts: list[float] = []
    for _, c in b:
        counts.append(max(c, counts[-1]) if counts else c)
    total = counts[-1]
    if total == 0 or math.isnan(total):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    rank = q * total
    idx = next(i for i, c in enumerate(counts) if c >= rank)
    if idx == len(b) - 1:
        return b[-2][0]
    if idx == 0 and b[0][0] <= 0:
        return b[0][0]
    start, count_before = (0.0, 0.0) if idx == 0 else (b[idx - 1][0], counts[idx - 1])
    end = b[idx][0]
    in_bucket = counts[idx] - count_before
    if in_bucket == 0:
        return end
    return start + (end - start) * (rank - count_before) / in_bucket


# --- the signals ------------------------------------------------------------------------------

Vector = dict[Labels, float]
Rows = list[tuple[dict[str, str], float]]


class Signal:
    """One alert signal: its metric, the label of its instances, its PromQL and in-process value."""

    name: str
    metric: str
    # The label an alert on this signal is per (route, cluster, source), or None for one series.
    key_label: str | None
    # Ratio and rate signals are computed over the rule's window; gauges are read as they are.
    windowed: bool = False
    unit: str = "items"  # ratio | seconds | items | endpoints
    # What the generated annotations call it, and the template function that formats its value.
    what: str = ""
    humanize: str = "humanize"
    # Who exports its metric: "gateway" (on the registry the in-process evaluator reads),
    # "agents" (each agent pod's /metrics), "backup" or "drill" (the jobs' textfile/Pushgateway).
    exporter: str = "gateway"

    def counters(self) -> tuple[str, ...]:
        """Sample names whose history the in-process evaluator must keep for this signal."""
        return ()

    def promql(self, q: Query) -> str:
        raise NotImplementedError

    def compute(self, data: SignalComputer, q: Query) -> Vector:
        raise NotImplementedError

    def _key(self, value: str) -> Labels:
        return ((self.key_label, value),) if self.key_label else ()


class ErrorRatio(Signal):
    """The 5xx share of gateway requests per route (or its complement, availability)."""

    def __init__(self, name: str, *, complement: bool) -> None:
        self.name, self.complement = name, complement
        self.metric, self.key_label, self.windowed, self.unit = REQUESTS_TOTAL, "route", True, "ratio"
        self.what = "availability (non-5xx ratio)" if complement else "5xx ratio"
        self.humanize = "humanizePercentage"

    def counters(self) -> tuple[str, ...]:
        return (REQUESTS_TOTAL,)

    def promql(self, q: Query) -> str:
        key = q.key_matchers(self.key_label)
        if q.recorded:
            ratio = selector(error_ratio_record(q.window_seconds), {}, *key)
        else:
            ratio = f"({error_ratio_expr(q.window_seconds, q.matchers, *key)})"
        return f"(1 - {ratio})" if self.complement else ratio

    def compute(self, data: SignalComputer, q: Query) -> Vector:
        errors: dict[str, float] = {}
        totals: dict[str, float] = {}
        for labels, inc in data.increases(REQUESTS_TOTAL, q.window_seconds):
            r = labels.get("route", "")
            if not q.keeps(r):
                continue
            totals[r] = totals.get(r, 0.0) + inc
            if labels.get("code", "").startswith("5"):
                errors[r] = errors.get(r, 0.0) + inc
        out = {}
        for r, total in totals.items():
            if total > 0:
                ratio = errors.get(r, 0.0) / total
                out[self._key(r)] = 1 - ratio if self.complement else ratio
        return out


class LatencyQuantile(Signal):
    """A quantile of the gateway's request duration per route, from its histogram."""

    def __init__(self, name: str, quantile: float) -> None:
        self.name, self.quantile = name, quantile
        self.metric, self.key_label, self.windowed, self.unit = REQUEST_DURATION, "route", True, "seconds"
        self.what, self.humanize = f"p{quantile * 100:g} latency", "humanizeDuration"

    def counters(self) -> tuple[str, ...]:
        return (REQUEST_DURATION + "_bucket",)

    def promql(self, q: Query) -> str:
        buckets = selector(REQUEST_DURATION + "_bucket", q.matchers, *q.key_matchers(self.key_label))
        rate = f"rate({buckets}[{duration(q.window_seconds)}])"
        return f"histogram_quantile({self.quantile:g}, sum by (route, le) ({rate}))"

    def compute(self, data: SignalComputer, q: Query) -> Vector:
        per_route: dict[str, dict[float, float]] = {}
        for labels, inc in data.increases(REQUEST_DURATION + "_bucket", q.window_seconds):
            r = labels.get("route", "")
            if not q.keeps(r):
                continue
            le = float(labels.get("le", "nan"))
            buckets = per_route.setdefault(r, {})
            buckets[le] = buckets.get(le, 0.0) + inc
        out = {}
        for r, buckets in per_route.items():
            value = histogram_quantile(self.quantile, buckets.items())
            if not math.isnan(value):
                out[self._key(r)] = value
        return out


_AGGREGATE: dict[str, Callable[[list[float]], float]] = {"sum": sum, "max": max}


class GaugeAggregate(Signal):
    """A gauge summed or maxed per instance label (queues per cluster, ejections per route)."""

    def __init__(
        self, name: str, metric: str, key_label: str, agg: str, *, unit: str, what: str, humanize: str
    ) -> None:
        self.name, self.metric, self.key_label, self.agg = name, metric, key_label, agg
        self.unit, self.what, self.humanize = unit, what, humanize
        self.exporter = "agents" if metric in (QUEUE_LENGTH, QUEUE_OLDEST_AGE) else "gateway"

    def promql(self, q: Query) -> str:
        return (
            f"{self.agg} by ({self.key_label}) ({selector(self.metric, q.matchers, *q.key_matchers(self.key_label))})"
        )

    def compute(self, data: SignalComputer, q: Query) -> Vector:
        groups: dict[str, list[float]] = {}
        for labels, v in data.gauge(self.metric):
            k = labels.get(self.key_label or "", "")
            if q.keeps(k):
                groups.setdefault(k, []).append(v)
        return {self._key(k): _AGGREGATE[self.agg](vs) for k, vs in groups.items()}


class BreakerOpen(Signal):
    """Per route, the most endpoints whose breaker is not closed that any gateway replica has."""

    def __init__(self) -> None:
        self.name, self.metric, self.key_label, self.unit = "breaker_open", BREAKER_STATE, "route", "endpoints"
        self.what = "endpoints with an open circuit breaker"

    def promql(self, q: Query) -> str:
        sel = selector(BREAKER_STATE, q.matchers, *q.key_matchers(self.key_label))
        # Per gateway replica, count the endpoints whose breaker is not closed; take the worst.
        return f"max by (route) (sum without (endpoint) ({sel} > bool 0))"

    def compute(self, data: SignalComputer, q: Query) -> Vector:
        per_replica: dict[Labels, float] = {}
        for labels, v in data.gauge(BREAKER_STATE):
            if not q.keeps(labels.get("route", "")):
                continue
            rest = labels_of({k: x for k, x in labels.items() if k != "endpoint"})
            per_replica[rest] = per_replica.get(rest, 0.0) + (1.0 if v > 0 else 0.0)
        out: Vector = {}
        for rest, count in per_replica.items():
            r = self._key(dict(rest).get("route", ""))
            out[r] = max(out.get(r, -math.inf), count)
        return out


class SinceLast(Signal):
    """Time since the newest success a job recorded as a Unix timestamp (per source, or one).

    With `fire_when_absent`, an instance that has never recorded a success counts as infinitely
    old (PromQL's `absent()`), so "no backup at all" fires instead of staying silent. With
    `route` set that is the named source; otherwise the whole metric being absent.
    """

    def __init__(self, name: str, metric: str, key_label: str | None, *, what: str, fire_when_absent: bool) -> None:
        self.name, self.metric, self.key_label, self.unit = name, metric, key_label, "seconds"
        self.what, self.humanize, self.fire_when_absent = what, "humanizeDuration", fire_when_absent
        self.exporter = "backup" if metric == BACKUP_LAST_SUCCESS else "drill"

    def promql(self, q: Query) -> str:
        sel = selector(self.metric, q.matchers, *q.key_matchers(self.key_label))
        by = f" by ({self.key_label})" if self.key_label else ""
        age = f"time() - max{by} ({sel})"
        if not self.fire_when_absent:
            return age
        # absent() yields 1 labelled with the equality matchers (the source, when a rule names
        # one); times +Inf it is older than any threshold.
        return f"(({age}) or (max{by} (absent({sel})) * +Inf))"

    def compute(self, data: SignalComputer, q: Query) -> Vector:
        newest: dict[str, float] = {}
        for labels, v in data.gauge(self.metric):
            k = labels.get(self.key_label or "", "")
            if q.keeps(k):
                newest[k] = max(newest.get(k, -math.inf), v)
        out = {self._key(k): data.now - v for k, v in newest.items()}
        if self.fire_when_absent and not out:
            out[self._key(q.route) if q.route is not None else ()] = math.inf
        return out


class GaugeMax(Signal):
    """The largest value of a single-series gauge (the last drill's RTO or RPO)."""

    def __init__(self, name: str, metric: str, *, what: str) -> None:
        self.name, self.metric, self.key_label, self.unit = name, metric, None, "seconds"
        self.what, self.humanize, self.exporter = what, "humanizeDuration", "drill"

    def promql(self, q: Query) -> str:
        return f"max({selector(self.metric, q.matchers)})"

    def compute(self, data: SignalComputer, q: Query) -> Vector:
        values = [v for _, v in data.gauge(self.metric)]
        return {(): max(values)} if values else {}


SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in (
        ErrorRatio("error_rate", complement=False),
        ErrorRatio("availability", complement=True),
        LatencyQuantile("latency_p99_seconds", 0.99),
        GaugeAggregate(
            "queue_length", QUEUE_LENGTH, "cluster", "sum", unit="items", what="queue length", humanize="humanize"
        ),
        GaugeAggregate(
            "queue_oldest_age_seconds",
            QUEUE_OLDEST_AGE,
            "cluster",
            "max",
            unit="seconds",
            what="age of the oldest queued item",
            humanize="humanizeDuration",
        ),
        BreakerOpen(),
        GaugeAggregate(
            "endpoints_ejected",
            ENDPOINTS_EJECTED,
            "route",
            "max",
            unit="endpoints",
            what="endpoints ejected by outlier detection",
            humanize="humanize",
        ),
        SinceLast(
            "backup_age_seconds",
            BACKUP_LAST_SUCCESS,
            "source",
            what="time since the last successful backup",
            fire_when_absent=True,
        ),
        SinceLast(
            "restore_drill_age_seconds",
            DRILL_LAST_SUCCESS,
            None,
            what="time since the last successful restore drill",
            fire_when_absent=False,
        ),
        GaugeMax("restore_drill_rto_seconds", DRILL_RTO, what="restore drill RTO"),
        GaugeMax("restore_drill_rpo_seconds", DRILL_RPO, what="restore drill RPO"),
    )
}


# --- the in-process state ---------------------------------------------------------------------


class SignalComputer:
    """Computes each signal from successive sample snapshots, as its PromQL would."""

    def __init__(self, *, max_window_seconds: float = 3600.0, resolution_seconds: float = 1.0) -> None:
        self.max_window = max_window_seconds
        self.resolution = resolution_seconds
        self._windowed = frozenset(c for s in SIGNALS.values() for c in s.counters())
        self._series: dict[tuple[str, Labels], _Series] = {}
        self._gauges: list[Sample] = []
        self._last_ingest: float | None = None
        self.now = 0.0

    def ingest(self, now: float, samples: Iterable[Sample]) -> None:
        self.now = now
        gauges = []
        seen = set()
        for s in samples:
            if s.name in self._windowed:
                key = (s.name, s.labels)
                seen.add(key)
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series()
                    if self._last_ingest is not None:
                        # Born since the last look: it was 0 then (Prometheus would miss this
                        # first increment; the evaluator knows better).
                        series.add(self._last_ingest, 0.0)
                series.add(now, s.value)
            else:
                gauges.append(s)
        self._gauges = gauges
        for key in [k for k, v in self._series.items() if k not in seen and v.times[-1] < now - self.max_window]:
            del self._series[key]
        for series in self._series.values():
            series.prune(now, self.max_window + self.resolution, self.resolution)
        self._last_ingest = now

    def increases(self, metric: str, window: float) -> Rows:
        """Each series of a counter with its increase over the window ending now."""
        out = []
        for (name, labels), series in self._series.items():
            if name != metric:
                continue
            inc = series.increase(self.now, window)
            if inc is not None:
                out.append((dict(labels), inc))
        return out

    def gauge(self, metric: str) -> Rows:
        """Each series of a gauge with its value in the latest snapshot."""
        return [(dict(s.labels), s.value) for s in self._gauges if s.name == metric]

    def compute(
        self, signal: str, *, window_seconds: float = 300.0, route: str | None = None, exclude: Sequence[str] = ()
    ) -> Vector:
        """The signal's instant vector: output labels -> value (NaN-valued series dropped)."""
        out = SIGNALS[signal].compute(self, Query(window_seconds, route, tuple(exclude)))
        return {k: v for k, v in out.items() if not math.isnan(v)}
