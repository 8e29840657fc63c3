"""In-process alert rules for stacks without Prometheus, with Prometheus' semantics.

The same typed `AlertRule`s that `components/promql.py` turns into a PrometheusRule are evaluated
here against the gateway's own registry, a scraped `/metrics` page or a textfile:

- each signal is computed as its PromQL would be (`agent_runtime.metrics_signals` names the
  metrics): ratios and quantiles over the rule's window from counter increases this evaluator
  remembers between evaluations, gauges as they are now;
- each rule's alerts go inactive -> pending -> firing after `for`, stay firing for
  `keep_firing_for` after the condition clears, and resolve (Prometheus' `rules/alerting.go`);
- firing and resolved alerts are grouped by `group_by`, deduplicated by fingerprint and POSTed
  to a webhook in Alertmanager's webhook format (version "4"); an unchanged group is sent again
  only after `repeat_interval_seconds`, and a failed POST is retried at the next evaluation.

Time comes from an injectable clock, so tests step it instead of sleeping.

Differences from Prometheus + Alertmanager, on purpose: no `group_wait` (one evaluation already
batches), and each gateway replica evaluates its own registry, so N replicas notify N times;
point `metrics_urls` of one standalone evaluator (`python -m agent_runtime alerts`) at all of
them when that matters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
import sys
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from .config import AlertingConfig, AlertRule, ConfigError, format_validation_error
from .metrics_signals import (
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
    SIGNALS,
)

__all__ = [
    "RUNBOOK_BASE_URL",
    "Alert",
    "alert_annotations",
    "alert_labels",
    "duration",
    "AlertEvaluator",
    "FileSource",
    "HttpSource",
    "Notification",
    "Notifier",
    "RegistrySource",
    "RuleEvaluator",
    "Sample",
    "SignalComputer",
    "fingerprint",
    "histogram_quantile",
    "register",
    "render_template",
    "samples_from_registry",
    "samples_from_text",
]

log = logging.getLogger("agent_runtime.alerts")

Labels = tuple[tuple[str, str], ...]

# Prometheus keeps a resolved alert this long so it is reported as resolved (rules/alerting.go).
RESOLVED_RETENTION_SECONDS = 15 * 60.0
# Counters the windowed signals need; everything else is read as an instant gauge.
_WINDOWED_METRICS = (REQUESTS_TOTAL, REQUEST_DURATION + "_bucket")


class Sample(NamedTuple):
    """One exposition-format sample: full sample name, sorted labels, value."""

    name: str
    labels: Labels
    value: float


def _labels(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


# ---------------------------------------------------------------------------------------------
# sources


def samples_from_registry(registry: Any, extra: Mapping[str, str] | None = None) -> list[Sample]:
    """Every sample a prometheus_client registry (or collector) would expose."""
    out = []
    for family in registry.collect():
        for s in family.samples:
            out.append(Sample(s.name, _labels({**s.labels, **(extra or {})}), float(s.value)))
    return out


def samples_from_text(text: str, extra: Mapping[str, str] | None = None) -> list[Sample]:
    """Samples parsed from the Prometheus text exposition format (a scraped /metrics page)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append(Sample(s.name, _labels({**s.labels, **(extra or {})}), float(s.value)))
    return out


class MetricsSource(Protocol):
    async def collect(self) -> list[Sample]: ...


@dataclass
class RegistrySource:
    """The gateway's own registry, read in-process."""

    registry: Any
    labels: Mapping[str, str] = field(default_factory=dict)

    async def collect(self) -> list[Sample]:
        return samples_from_registry(self.registry, self.labels)


@dataclass
class HttpSource:
    """A /metrics URL; samples get `instance` = host:port so replicas stay apart."""

    url: str
    timeout_seconds: float = 5.0
    session: Any = None

    async def collect(self) -> list[Sample]:
        import aiohttp
        from yarl import URL

        instance = URL(self.url).authority
        own = self.session is None
        session = self.session or aiohttp.ClientSession()
        try:
            async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=self.timeout_seconds)) as resp:
                resp.raise_for_status()
                text = await resp.text()
        finally:
            if own:
                await session.close()
        return samples_from_text(text, {"instance": instance})


@dataclass
class FileSource:
    """A textfile-collector file, such as the one the backup and drill jobs write."""

    path: str | Path

    async def collect(self) -> list[Sample]:
        try:
            text = Path(self.path).read_text()
        except FileNotFoundError:
            return []
        return samples_from_text(text)


# ---------------------------------------------------------------------------------------------
# signals


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
    counts = []
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


def _key_ok(value: str | None, route: str | None, exclude: Sequence[str]) -> bool:
    if route is not None:
        return value == route
    return value not in exclude


class SignalComputer:
    """Computes each signal of the catalogue from successive sample snapshots, like its PromQL."""

    def __init__(self, *, max_window_seconds: float = 3600.0, resolution_seconds: float = 1.0) -> None:
        self.max_window = max_window_seconds
        self.resolution = resolution_seconds
        self._series: dict[tuple[str, Labels], _Series] = {}
        self._gauges: list[Sample] = []
        self._last_ingest: float | None = None
        self.now = 0.0

    def ingest(self, now: float, samples: Iterable[Sample]) -> None:
        self.now = now
        gauges = []
        seen = set()
        for s in samples:
            if s.name in _WINDOWED_METRICS:
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

    def _increases(self, metric: str, window: float) -> list[tuple[dict[str, str], float]]:
        out = []
        for (name, labels), series in self._series.items():
            if name != metric:
                continue
            inc = series.increase(self.now, window)
            if inc is not None:
                out.append((dict(labels), inc))
        return out

    def _gauge(self, metric: str) -> list[tuple[dict[str, str], float]]:
        return [(dict(s.labels), s.value) for s in self._gauges if s.name == metric]

    def compute(
        self, signal: str, *, window_seconds: float = 300.0, route: str | None = None, exclude: Sequence[str] = ()
    ) -> dict[Labels, float]:
        """The signal's instant vector: output labels -> value (NaN-valued series dropped)."""
        spec = SIGNALS[signal]
        key = spec.key_label
        out: dict[Labels, float] = {}
        if signal in ("error_rate", "availability"):
            errors: dict[str, float] = {}
            totals: dict[str, float] = {}
            for labels, inc in self._increases(REQUESTS_TOTAL, window_seconds):
                r = labels.get("route", "")
                if not _key_ok(r, route, exclude):
                    continue
                totals[r] = totals.get(r, 0.0) + inc
                if labels.get("code", "").startswith("5"):
                    errors[r] = errors.get(r, 0.0) + inc
            for r, total in totals.items():
                if total > 0:
                    ratio = errors.get(r, 0.0) / total
                    out[(("route", r),)] = ratio if signal == "error_rate" else 1 - ratio
        elif signal == "latency_p99_seconds":
            per_route: dict[str, dict[float, float]] = {}
            for labels, inc in self._increases(REQUEST_DURATION + "_bucket", window_seconds):
                r = labels.get("route", "")
                if not _key_ok(r, route, exclude):
                    continue
                le = float(labels.get("le", "nan"))
                per_route.setdefault(r, {})
                per_route[r][le] = per_route[r].get(le, 0.0) + inc
            for r, buckets in per_route.items():
                value = histogram_quantile(0.99, buckets.items())
                if not math.isnan(value):
                    out[(("route", r),)] = value
        elif signal in ("queue_length", "queue_oldest_age_seconds"):
            metric, agg = (QUEUE_LENGTH, sum) if signal == "queue_length" else (QUEUE_OLDEST_AGE, max)
            groups: dict[str, list[float]] = {}
            for labels, v in self._gauge(metric):
                c = labels.get("cluster", "")
                if _key_ok(c, route, exclude):
                    groups.setdefault(c, []).append(v)
            out = {(("cluster", c),): agg(vs) for c, vs in groups.items()}
        elif signal == "breaker_open":
            per_replica: dict[Labels, float] = {}
            for labels, v in self._gauge(BREAKER_STATE):
                if not _key_ok(labels.get("route", ""), route, exclude):
                    continue
                rest = _labels({k: x for k, x in labels.items() if k != "endpoint"})
                per_replica[rest] = per_replica.get(rest, 0.0) + (1.0 if v > 0 else 0.0)
            for rest, count in per_replica.items():
                r = (("route", dict(rest).get("route", "")),)
                out[r] = max(out.get(r, -math.inf), count)
        elif signal == "endpoints_ejected":
            for labels, v in self._gauge(ENDPOINTS_EJECTED):
                r = labels.get("route", "")
                if _key_ok(r, route, exclude):
                    out[(("route", r),)] = max(out.get((("route", r),), -math.inf), v)
        elif signal == "backup_age_seconds":
            newest: dict[str, float] = {}
            for labels, v in self._gauge(BACKUP_LAST_SUCCESS):
                s = labels.get("source", "")
                if _key_ok(s, route, exclude):
                    newest[s] = max(newest.get(s, -math.inf), v)
            out = {(("source", s),): self.now - v for s, v in newest.items()}
        else:
            metric = {
                "restore_drill_age_seconds": DRILL_LAST_SUCCESS,
                "restore_drill_rto_seconds": DRILL_RTO,
                "restore_drill_rpo_seconds": DRILL_RPO,
            }[signal]
            values = [v for _, v in self._gauge(metric)]
            if values:
                v = max(values)
                out = {(): self.now - v if signal == "restore_drill_age_seconds" else v}
        assert key is None or all(len(k) == 1 for k in out)
        return {k: v for k, v in out.items() if not math.isnan(v)}


# Each alert's runbook_url is this plus `#<alertname in lower case>`.
RUNBOOK_BASE_URL = "https://github.com/agent-platform/agent-platform/blob/main/docs/runbooks.md"
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: 300 -> "5m", 5400 -> "1h30m", 0.5 -> "500ms"."""
    if seconds < 0:
        raise ValueError(f"duration must be >= 0, got {seconds}")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    out = []
    for unit, size in _UNITS:
        count, millis = divmod(millis, size * 1000)
        if count:
            out.append(f"{count}{unit}")
    if millis:
        out.append(f"{millis}ms")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# labels and annotations (components/promql.py uses the same, so both sides say the same)

_WHAT = {
    "error_rate": ("5xx ratio", "humanizePercentage"),
    "availability": ("availability (non-5xx ratio)", "humanizePercentage"),
    "latency_p99_seconds": ("p99 latency", "humanizeDuration"),
    "queue_length": ("queue length", "humanize"),
    "queue_oldest_age_seconds": ("age of the oldest queued item", "humanizeDuration"),
    "breaker_open": ("endpoints with an open circuit breaker", "humanize"),
    "endpoints_ejected": ("endpoints ejected by outlier detection", "humanize"),
    "backup_age_seconds": ("time since the last successful backup", "humanizeDuration"),
    "restore_drill_age_seconds": ("time since the last successful restore drill", "humanizeDuration"),
    "restore_drill_rto_seconds": ("restore drill RTO", "humanizeDuration"),
    "restore_drill_rpo_seconds": ("restore drill RPO", "humanizeDuration"),
}
_SUBJECT = {"route": "route", "cluster": "cluster", "source": "backup source"}


def _threshold_text(signal: str, value: float) -> str:
    unit = SIGNALS[signal].unit
    if unit == "ratio":
        return f"{value * 100:g}%"
    if unit == "seconds":
        return duration(value) if value >= 0.001 else f"{value:g}s"
    return f"{value:g}"


def alert_annotations(rule: AlertRule, runbook_base_url: str = "") -> dict[str, str]:
    what, fmt = _WHAT[rule.signal]
    key = SIGNALS[rule.signal].key_label
    subject = f"{_SUBJECT[key]} {{{{ $labels.{key} }}}}" if key else "the platform"
    window = f" over {duration(rule.window_seconds)}" if SIGNALS[rule.signal].windowed else ""
    if rule.short_window_seconds is not None:
        window += f" (and over {duration(rule.short_window_seconds)})"
    held = f" for {duration(rule.for_seconds)}" if rule.for_seconds else ""
    out = {
        "summary": f"{rule.name}: {what} of {subject} is {{{{ $value | {fmt} }}}}",
        "description": (
            f"The {what} of {subject}{window} is {{{{ $value | {fmt} }}}}, "
            f"{rule.comparison} {_threshold_text(rule.signal, rule.threshold)}{held} "
            f"(signal {rule.signal}, severity {rule.severity})."
        ),
    }
    if runbook_base_url:
        out["runbook_url"] = f"{runbook_base_url}#{rule.name.lower()}"
    out.update(rule.annotations)
    return out


def alert_labels(rule: AlertRule) -> dict[str, str]:
    labels = dict(rule.labels)
    labels["severity"] = rule.severity
    labels["signal"] = rule.signal
    return labels


# ---------------------------------------------------------------------------------------------
# templates (the subset of Prometheus' alert templating the generated annotations use)


def _go_float(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def _humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return "%.4g" % v
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return "%.4g%s" % (v, prefix)
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return "%.4g%s" % (v, prefix)


def _humanize_duration(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return "%.4g" % v
    if v == 0:
        return "%.4gs" % v
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        v = abs(v)
        d = int(v)
        seconds, minutes, hours, days = d % 60, (d // 60) % 60, (d // 3600) % 24, d // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return "%s%.4gs" % (sign, v)
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return "%.4g%ss" % (v, prefix)


_FILTERS: dict[str, Callable[[float], str]] = {
    "humanize": _humanize,
    "humanizeDuration": _humanize_duration,
    "humanizePercentage": lambda v: "%.4g%%" % (v * 100),
}
_ACTION = re.compile(r"\{\{\s*(\$labels\.([A-Za-z_][A-Za-z0-9_]*)|\$value)\s*(?:\|\s*([A-Za-z]+)\s*)?\}\}")


def render_template(text: str, labels: Mapping[str, str], value: float) -> str:
    """Expand `{{ $labels.x }}`, `{{ $value }}` and `{{ $value | humanize* }}` as Prometheus does."""

    def expand(m: re.Match[str]) -> str:
        if m.group(2) is not None:
            out: Any = labels.get(m.group(2), "")
            if m.group(3):
                raise ValueError(f"filter {m.group(3)!r} on a label is not supported in-process: {text!r}")
            return str(out)
        if m.group(3):
            if m.group(3) not in _FILTERS:
                raise ValueError(f"unsupported template function {m.group(3)!r} in {text!r}")
            return _FILTERS[m.group(3)](value)
        return _go_float(value)

    return _ACTION.sub(expand, text)


# ---------------------------------------------------------------------------------------------
# rules


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint: FNV-1a 64 over sorted name/value pairs, 0xff-separated."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h ^= byte
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"


@dataclass
class Alert:
    """One alert instance of a rule, with Prometheus' lifecycle timestamps."""

    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    state: str
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    keep_firing_since: float | None = None
    # Set once the resolved state has reached the webhook.
    resolved_notified: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


class RuleEvaluator:
    """One rule's alerts through inactive / pending / firing, as Prometheus' AlertingRule.Eval."""

    def __init__(self, rule: AlertRule, *, exclude: Sequence[str] = (), runbook_base_url: str = "") -> None:
        self.rule = rule
        self.annotations = alert_annotations(rule, runbook_base_url)
        self.exclude = tuple(exclude)
        self.active: dict[str, Alert] = {}
        self.compare = _COMPARE[rule.comparison]

    def _condition(self, signals: SignalComputer) -> dict[Labels, float]:
        r = self.rule

        def holds(window: float) -> dict[Labels, float]:
            values = signals.compute(r.signal, window_seconds=window, route=r.route, exclude=self.exclude)
            return {k: v for k, v in values.items() if self.compare(v, r.threshold)}

        result = holds(r.window_seconds)
        if r.short_window_seconds is not None and result:
            short = holds(r.short_window_seconds)
            result = {k: v for k, v in result.items() if k in short}
        return result

    def eval(self, signals: SignalComputer, ts: float) -> None:
        rule = self.rule
        seen: set[str] = set()
        for series, value in self._condition(signals).items():
            labels = dict(series)
            labels.update(alert_labels(rule))
            labels["alertname"] = rule.name
            annotations = {k: render_template(v, dict(series), value) for k, v in self.annotations.items()}
            fp = fingerprint(labels)
            seen.add(fp)
            alert = self.active.get(fp)
            if alert is not None and alert.state != INACTIVE:
                alert.value, alert.annotations = value, annotations
                alert.keep_firing_since = None
                continue
            self.active[fp] = Alert(labels, annotations, value, PENDING, active_at=ts)
        for fp, alert in list(self.active.items()):
            if fp not in seen:
                keep = False
                if alert.state == FIRING and rule.keep_firing_for_seconds > 0:
                    if alert.keep_firing_since is None:
                        alert.keep_firing_since = ts
                    keep = ts - alert.keep_firing_since < rule.keep_firing_for_seconds
                if alert.state == PENDING or (
                    alert.resolved_at is not None and ts - alert.resolved_at > RESOLVED_RETENTION_SECONDS
                ):
                    del self.active[fp]
                if alert.state != INACTIVE and not keep:
                    alert.state = INACTIVE
                    alert.resolved_at = ts
                if not keep:
                    continue
            if alert.state == PENDING and ts - alert.active_at >= rule.for_seconds:
                alert.state = FIRING
                alert.fired_at = ts

    def alerts(self) -> list[Alert]:
        return list(self.active.values())


# ---------------------------------------------------------------------------------------------
# notifications


def _rfc3339(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    common = dict(dicts[0])
    for d in dicts[1:]:
        common = {k: v for k, v in common.items() if d.get(k) == v}
    return common


@dataclass
class Notification:
    """One webhook call: a group's firing alerts plus those resolved since the last call."""

    group_key: str
    payload: dict[str, Any]


@dataclass
class _GroupState:
    firing: frozenset[str] = frozenset()
    last_sent: float | None = None


class Notifier:
    """Alertmanager's grouping and deduplication, reduced to what one process needs."""

    def __init__(
        self,
        *,
        group_by: Sequence[str] = ("alertname",),
        receiver: str = "agent-runtime",
        external_url: str = "",
        repeat_interval_seconds: float = 4 * 3600.0,
    ) -> None:
        self.group_by = tuple(group_by)
        self.receiver = receiver
        self.external_url = external_url
        self.repeat_interval = repeat_interval_seconds
        self._groups: dict[str, _GroupState] = {}

    def _group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if "..." in self.group_by:  # Alertmanager: group by every label
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}

    def _group_key(self, group_labels: Mapping[str, str]) -> str:
        inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(group_labels.items()))
        return "{}:{" + inner + "}"

    def pending(self, alerts: Iterable[Alert], now: float) -> list[tuple[Notification, list[Alert], frozenset[str]]]:
        """What should be sent now, without marking anything as sent."""
        by_fp: dict[str, Alert] = {}
        for a in alerts:
            if a.state == FIRING or (a.state == INACTIVE and a.fired_at is not None and not a.resolved_notified):
                by_fp.setdefault(a.fingerprint, a)  # deduplicate identical label sets
        groups: dict[str, tuple[dict[str, str], list[Alert]]] = {}
        for a in by_fp.values():
            gl = self._group_labels(a.labels)
            groups.setdefault(self._group_key(gl), (gl, []))[1].append(a)
        out = []
        for key, (gl, members) in sorted(groups.items()):
            state = self._groups.get(key, _GroupState())
            firing = frozenset(a.fingerprint for a in members if a.state == FIRING)
            resolved = [a for a in members if a.state == INACTIVE]
            changed = firing != state.firing or bool(resolved)
            repeat = bool(firing) and state.last_sent is not None and now - state.last_sent >= self.repeat_interval
            if not (changed or repeat):
                continue
            members.sort(key=lambda a: (a.state != FIRING, sorted(a.labels.items())))
            payload = {
                "version": "4",
                "groupKey": key,
                "truncatedAlerts": 0,
                "status": "firing" if firing else "resolved",
                "receiver": self.receiver,
                "groupLabels": gl,
                "commonLabels": _common([a.labels for a in members]),
                "commonAnnotations": _common([a.annotations for a in members]),
                "externalURL": self.external_url,
                "alerts": [
                    {
                        "status": "firing" if a.state == FIRING else "resolved",
                        "labels": a.labels,
                        "annotations": a.annotations,
                        "startsAt": _rfc3339(a.fired_at),
                        "endsAt": _rfc3339(a.resolved_at if a.state == INACTIVE else None),
                        "generatorURL": self.external_url,
                        "fingerprint": a.fingerprint,
                    }
                    for a in members
                ],
            }
            out.append((Notification(key, payload), resolved, firing))
        return out

    def sent(self, group_key: str, resolved: Sequence[Alert], firing: frozenset[str], now: float) -> None:
        for a in resolved:
            a.resolved_notified = True
        self._groups[group_key] = _GroupState(firing=firing, last_sent=now)
        if not firing:
            self._groups.pop(group_key, None)


Send = Callable[[dict[str, Any]], Awaitable[None]]


class AlertEvaluator:
    """Evaluates an `AlertingConfig` against metric sources and notifies its webhook."""

    def __init__(
        self,
        config: AlertingConfig,
        *,
        sources: Sequence[MetricsSource],
        clock: Callable[[], float] = time.time,
        send: Send | None = None,
    ) -> None:
        self.config = config
        self.sources = list(sources)
        self.clock = clock
        specific: dict[str, list[str]] = {}
        for r in config.rules:
            if r.route is not None:
                specific.setdefault(r.name, []).append(r.route)
        self.rules = [
            RuleEvaluator(
                r,
                exclude=specific.get(r.name, []) if r.route is None else (),
                runbook_base_url=config.runbook_base_url,
            )
            for r in config.rules
        ]
        windows = [r.window_seconds for r in config.rules if SIGNALS[r.signal].windowed] or [300.0]
        self.signals = SignalComputer(
            max_window_seconds=max(windows), resolution_seconds=config.evaluation_interval_seconds
        )
        self.notifier = Notifier(
            group_by=config.group_by,
            receiver=config.receiver,
            external_url=config.external_url,
            repeat_interval_seconds=config.repeat_interval_seconds,
        )
        self._send = send
        self._session: Any = None
        self.notifications_sent = 0
        self.notification_failures = 0

    async def _post(self, payload: dict[str, Any]) -> None:
        import aiohttp

        if self.config.webhook_url is None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            self.config.webhook_url, json=payload, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"webhook answered {resp.status}")

    async def collect(self) -> list[Sample]:
        out: list[Sample] = []
        for source in self.sources:
            try:
                out.extend(await source.collect())
            except Exception as exc:  # one unreachable replica must not silence the others
                log.warning(json.dumps({"msg": "metrics source failed", "source": repr(source), "error": str(exc)}))
        return out

    def evaluate(self, samples: Iterable[Sample], now: float | None = None) -> list[Alert]:
        """Ingest one snapshot and step every rule; returns every active alert."""
        now = self.clock() if now is None else now
        self.signals.ingest(now, samples)
        for rule in self.rules:
            rule.eval(self.signals, now)
        return self.alerts()

    def alerts(self) -> list[Alert]:
        return [a for r in self.rules for a in r.alerts()]

    async def notify(self, now: float | None = None) -> list[Notification]:
        now = self.clock() if now is None else now
        send = self._send or self._post
        done = []
        for note, resolved, firing in self.notifier.pending(self.alerts(), now):
            try:
                await send(note.payload)
            except Exception as exc:
                self.notification_failures += 1
                log.warning(json.dumps({"msg": "webhook failed; retrying next evaluation", "error": str(exc)}))
                continue
            self.notifier.sent(note.group_key, resolved, firing, now)
            self.notifications_sent += 1
            done.append(note)
        return done

    async def evaluate_once(self) -> list[Notification]:
        """Collect, evaluate and notify: one tick of `run`."""
        samples = await self.collect()
        now = self.clock()
        self.evaluate(samples, now)
        return await self.notify(now)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.evaluate_once()
            except Exception:
                log.exception("alert evaluation failed")
            try:
                await asyncio.wait_for(stop.wait(), self.config.evaluation_interval_seconds)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# ---------------------------------------------------------------------------------------------
# command line


def _load_alerting(path: str) -> AlertingConfig:
    from pydantic import ValidationError

    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from None
    # Either the gateway's runtime.json (alerts under "alerts") or an AlertingConfig on its own.
    section = raw.get("alerts", {}) if isinstance(raw, dict) and "routes" in raw else raw
    try:
        return AlertingConfig.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None


def register(subparsers: Any) -> None:
    """Add `alerts` to `python -m agent_runtime`'s subcommands."""
    p = subparsers.add_parser(
        "alerts",
        help="evaluate alert rules against /metrics URLs and notify a webhook (stacks without Prometheus)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--config", required=True, help="runtime.json or an AlertingConfig JSON file")
    p.add_argument("--metrics-url", action="append", default=[], help="a /metrics URL to scrape (repeatable)")
    p.add_argument("--metrics-file", action="append", default=[], help="a textfile to read (repeatable)")
    p.add_argument("--webhook-url", help="overrides webhook_url from the config")
    p.add_argument("--once", action="store_true", help="evaluate once and exit (status 1 if anything fires)")
    p.set_defaults(func=_cmd_alerts)


def _cmd_alerts(args: argparse.Namespace) -> int:
    try:
        config = _load_alerting(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.webhook_url:
        config = config.model_copy(update={"webhook_url": args.webhook_url})
    sources: list[MetricsSource] = [HttpSource(u) for u in (*config.metrics_urls, *args.metrics_url)]
    sources += [FileSource(f) for f in args.metrics_file]
    if not sources:
        print("alerts: no metrics source (give --metrics-url or metrics_urls in the config)", file=sys.stderr)
        return 2

    async def main() -> int:
        evaluator = AlertEvaluator(config, sources=sources)
        try:
            if args.once:
                await evaluator.evaluate_once()
                firing = [a for a in evaluator.alerts() if a.state == FIRING]
                for a in firing:
                    print(json.dumps({"alert": a.labels, "value": a.value}))
                return 1 if firing else 0
            await evaluator.run()
            return 0
        finally:
            await evaluator.close()

    return asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_runtime.alerts")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["alerts", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
