"""The capacity report: requests and limits against actual usage per cluster, recommendations,
a projection from the trend, and the price of each cluster.

Usage comes from the kubelet's cAdvisor metrics, requests and limits from kube-state-metrics
(the names below are theirs). Pods map to their cluster by name: a Deployment's pods are
`<deployment>-<pod-template-hash>-<suffix>`, a StatefulSet's `<name>-<ordinal>`.

Recommendations follow the VPA recommender (which Goldilocks displays): per pod, the request is
the 90th percentile of the usage samples plus a 15% safety margin (`targetCPUPercentile` /
`targetMemoryPeaksPercentile` 0.9, `--recommendation-margin-fraction` 0.15), never below the
VPA's minimums (25m CPU, 250Mi memory); the limit is Goldilocks' "guaranteed" ceiling, the VPA
upper bound's 95th percentile plus the same margin. Unlike the VPA, which decays older samples
with a 24 h half-life, every sample of the period weighs the same.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ..alerts.templates import duration
from .data import Window, percentile, sum_by_time, trend_per_day
from .plots import pyplot
from .prometheus import Prometheus, Series

__all__ = [
    "CPU_USAGE",
    "LIMIT_PERCENTILE",
    "MARGIN",
    "MEMORY_WORKING_SET",
    "RESOURCE_LIMITS",
    "RESOURCE_REQUESTS",
    "TARGET_PERCENTILE",
    "capacity",
]

# cAdvisor (kubelet /metrics/cadvisor) and kube-state-metrics names.
CPU_USAGE = "container_cpu_usage_seconds_total"
MEMORY_WORKING_SET = "container_memory_working_set_bytes"
RESOURCE_REQUESTS = "kube_pod_container_resource_requests"
RESOURCE_LIMITS = "kube_pod_container_resource_limits"

TARGET_PERCENTILE = 90
LIMIT_PERCENTILE = 95
MARGIN = 0.15
MIN_CPU_CORES = 0.025
MIN_MEMORY_BYTES = 250 * 2**20
HOURS_PER_MONTH = 730
GIB = 2**30

_DEPLOYMENT_POD = re.compile(r"^(?P<name>.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$")
_STATEFUL_POD = re.compile(r"^(?P<name>.+)-\d+$")
_CONTAINERS = 'container!="",container!="POD"'


def cluster_of(pod: str) -> str:
    for pattern in (_DEPLOYMENT_POD, _STATEFUL_POD):
        if m := pattern.match(pod):
            return m.group("name")
    return pod


def _scope(matchers: dict[str, str], *extra: str) -> str:
    parts = [f'{k}="{v}"' for k, v in sorted(matchers.items())] + list(extra)
    return "{" + ",".join(parts) + "}"


def _by_cluster(series: list[Series]) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = {}
    for s in series:
        out.setdefault(cluster_of(s.labels.get("pod", "")), []).append(s)
    return out


def _per_pod(rows: dict[str, list[Series]], resource: str) -> dict[str, float]:
    """The median per-pod request (or limit) of each cluster for one resource."""
    out = {}
    for cluster, series in rows.items():
        values = [v for s in series if s.labels.get("resource") == resource for v in s.values]
        if values:
            out[cluster] = percentile(values, 50)
    return out


def capacity(
    prom: Prometheus,
    w: Window,
    out_dir: Path,
    matchers: dict[str, str],
    *,
    cpu_cost: float,
    memory_cost: float,
    project_days: float,
) -> dict[str, Any]:
    rw = duration(w.rate_window)
    cpu = _by_cluster(prom.range(
        f"sum by (namespace, pod) (rate({CPU_USAGE}{_scope(matchers, _CONTAINERS)}[{rw}]))", w.start, w.end, w.step
    ))
    mem = _by_cluster(prom.range(
        f"sum by (namespace, pod) ({MEMORY_WORKING_SET}{_scope(matchers, _CONTAINERS)})", w.start, w.end, w.step
    ))
    res = 'resource=~"cpu|memory"'
    requests = _by_cluster(prom.range(
        f"sum by (namespace, pod, resource) ({RESOURCE_REQUESTS}{_scope(matchers, res)})", w.start, w.end, w.step
    ))
    limits = _by_cluster(prom.range(
        f"sum by (namespace, pod, resource) ({RESOURCE_LIMITS}{_scope(matchers, res)})", w.start, w.end, w.step
    ))
    req = {k: _per_pod(requests, k) for k in ("cpu", "memory")}
    lim = {k: _per_pod(limits, k) for k in ("cpu", "memory")}
    clusters: dict[str, dict[str, Any]] = {}
    for name in sorted(set(cpu) | set(mem) | set(requests)):
        cpu_samples = [v for s in cpu.get(name, []) for v in s.values]
        mem_samples = [v for s in mem.get(name, []) for v in s.values]
        cpu_t, cpu_total = sum_by_time(cpu.get(name, []))
        mem_t, mem_total = sum_by_time(mem.get(name, []))
        pod_t, pods = _pod_counts(cpu.get(name, []) or mem.get(name, []))
        mean_pods = sum(pods) / len(pods) if pods else 0.0
        rec_cpu = _at_least(percentile(cpu_samples, TARGET_PERCENTILE) * (1 + MARGIN), MIN_CPU_CORES)
        rec_mem = _at_least(percentile(mem_samples, TARGET_PERCENTILE) * (1 + MARGIN), MIN_MEMORY_BYTES)
        lim_cpu = _at_least(percentile(cpu_samples, LIMIT_PERCENTILE) * (1 + MARGIN), rec_cpu)
        lim_mem = _at_least(percentile(mem_samples, LIMIT_PERCENTILE) * (1 + MARGIN), rec_mem)
        req_cpu, req_mem = req["cpu"].get(name, math.nan), req["memory"].get(name, math.nan)
        cpu_slope = trend_per_day(cpu_t, cpu_total)
        mem_slope = trend_per_day(mem_t, mem_total)
        now_cpu = _fitted_end(cpu_t, cpu_total, cpu_slope)
        now_mem = _fitted_end(mem_t, mem_total, mem_slope)
        proj_cpu = _at_least(now_cpu + _or0(cpu_slope) * project_days, 0.0)
        proj_mem = _at_least(now_mem + _or0(mem_slope) * project_days, 0.0)

        def monthly(pods: float, cores: float, memory: float) -> float:
            return pods * (cores * cpu_cost + memory / GIB * memory_cost) * HOURS_PER_MONTH

        clusters[name] = {
            "pods_mean": mean_pods,
            "cpu_request_cores": req_cpu,
            "cpu_limit_cores": lim["cpu"].get(name, math.nan),
            "memory_request_bytes": req_mem,
            "memory_limit_bytes": lim["memory"].get(name, math.nan),
            "cpu_usage_p50_cores": percentile(cpu_samples, 50),
            "cpu_usage_p90_cores": percentile(cpu_samples, TARGET_PERCENTILE),
            "cpu_usage_max_cores": max(cpu_samples, default=math.nan),
            "memory_usage_p90_bytes": percentile(mem_samples, TARGET_PERCENTILE),
            "memory_usage_max_bytes": max(mem_samples, default=math.nan),
            "cpu_utilisation_of_request": (sum(cpu_samples) / len(cpu_samples)) / req_cpu if cpu_samples else math.nan,
            "recommended_cpu_request_cores": rec_cpu,
            "recommended_cpu_limit_cores": lim_cpu,
            "recommended_memory_request_bytes": rec_mem,
            "recommended_memory_limit_bytes": lim_mem,
            "cpu_trend_cores_per_day": cpu_slope,
            "memory_trend_bytes_per_day": mem_slope,
            "projected_cpu_cores": proj_cpu,
            "projected_memory_bytes": proj_mem,
            "projected_pods_at_recommendation": _pods(proj_cpu / rec_cpu, proj_mem / rec_mem),
            "monthly_cost_requests": monthly(mean_pods, req_cpu, req_mem),
            "monthly_cost_recommended": monthly(mean_pods, rec_cpu, rec_mem),
        }
        clusters[name]["_plot"] = (cpu.get(name, []), mem.get(name, []), pod_t)
    plot = _plot(out_dir / "capacity.png", clusters)
    for f in clusters.values():
        f.pop("_plot")
    return {
        "clusters": clusters,
        "unit_costs": {"cpu_core_hour": cpu_cost, "memory_gib_hour": memory_cost},
        "project_days": project_days,
        "plots": [plot.name],
    }


def _at_least(value: float, minimum: float) -> float:
    """max() that keeps NaN (no samples: no recommendation) instead of returning the minimum."""
    return value if math.isnan(value) else max(value, minimum)


def _or0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def _pods(*needs: float) -> int | None:
    known = [n for n in needs if not math.isnan(n)]
    return math.ceil(max(known)) if known else None


def _pod_counts(series: list[Series]) -> tuple[list[float], list[float]]:
    counts: dict[float, float] = {}
    for s in series:
        for t in s.times:
            counts[t] = counts.get(t, 0.0) + 1
    times = sorted(counts)
    return times, [counts[t] for t in times]


def _fitted_end(times: list[float], values: list[float], slope_per_day: float) -> float:
    if not times:
        return math.nan
    if math.isnan(slope_per_day):
        return values[-1]
    mt, mv = sum(times) / len(times), sum(values) / len(values)
    return mv + slope_per_day * (times[-1] - mt) / 86400


def _plot(path: Path, clusters: dict[str, dict[str, Any]]) -> Path:
    """Per cluster: per-pod usage (median and p90 across pods at each step) against request and limit."""
    import datetime as dt

    plt = pyplot()
    names = list(clusters) or ["(no clusters)"]
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.6 * len(names) + 0.6), squeeze=False)
    for row, name in enumerate(names):
        f = clusters.get(name)
        for col, (kind, scale, unit) in enumerate((("cpu", 1.0, "cores"), ("memory", 1 / 2**20, "MiB"))):
            axis = axes[row, col]
            axis.set_title(f"{name}: {kind} per pod", fontsize=9)
            axis.set_ylabel(unit)
            axis.grid(True, alpha=0.3)
            if f is None:
                continue
            series = f["_plot"][0 if kind == "cpu" else 1]
            at: dict[float, list[float]] = {}
            for s in series:
                for t, v in zip(s.times, s.values, strict=False):
                    at.setdefault(t, []).append(v * scale)
            times = sorted(at)
            dates = [dt.datetime.fromtimestamp(t, dt.UTC) for t in times]
            axis.plot(dates, [percentile(at[t], 50) for t in times], label="usage (median pod)", color="black")
            axis.plot(dates, [max(at[t]) for t in times], label="usage (busiest pod)", color="grey", linewidth=0.8)
            for label, key, colour, style in (
                ("request", f"{kind}_request", "tab:blue", "-"),
                ("limit", f"{kind}_limit", "tab:red", "-"),
                ("recommended request", f"recommended_{kind}_request", "tab:green", "--"),
            ):
                suffix = "_cores" if kind == "cpu" else "_bytes"
                value = f[key + suffix]
                if not math.isnan(value):
                    axis.axhline(value * scale, color=colour, linestyle=style, linewidth=1, label=label)
            axis.legend(fontsize=6, loc="upper left")
            axis.tick_params(axis="x", labelsize=7, rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def markdown(figures: dict[str, Any]) -> list[str]:
    c = figures["unit_costs"]
    lines = [
        f"Recommendations: request = p{TARGET_PERCENTILE} of usage + {MARGIN:.0%}, limit = "
        f"p{LIMIT_PERCENTILE} + {MARGIN:.0%} (the VPA recommender's target and upper bound, as Goldilocks "
        f"shows them). Prices: {c['cpu_core_hour']:g} per core-hour, {c['memory_gib_hour']:g} per GiB-hour "
        f"of requests, {HOURS_PER_MONTH} h a month.",
        "",
        "| cluster | pods | CPU req / limit | CPU p50 / p90 / max | CPU rec. req / limit | mem req / limit "
        "| mem p90 / max | mem rec. req / limit | utilisation |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, f in figures["clusters"].items():
        lines.append(
            f"| {n} | {f['pods_mean']:.1f} | {_c(f['cpu_request_cores'])} / {_c(f['cpu_limit_cores'])} "
            f"| {_c(f['cpu_usage_p50_cores'])} / {_c(f['cpu_usage_p90_cores'])} / {_c(f['cpu_usage_max_cores'])} "
            f"| {_c(f['recommended_cpu_request_cores'])} / {_c(f['recommended_cpu_limit_cores'])} "
            f"| {_m(f['memory_request_bytes'])} / {_m(f['memory_limit_bytes'])} "
            f"| {_m(f['memory_usage_p90_bytes'])} / {_m(f['memory_usage_max_bytes'])} "
            f"| {_m(f['recommended_memory_request_bytes'])} / {_m(f['recommended_memory_limit_bytes'])} "
            f"| {_pct(f['cpu_utilisation_of_request'])} |"
        )
    lines += [
        "",
        f"### Projection ({figures['project_days']:g} days) and cost",
        "",
        "| cluster | CPU trend | projected CPU | projected memory | pods at recommendation | monthly now "
        "| monthly at recommendation |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, f in figures["clusters"].items():
        lines.append(
            f"| {n} | {_c(f['cpu_trend_cores_per_day'])}/day | {_c(f['projected_cpu_cores'])} "
            f"| {_m(f['projected_memory_bytes'])} | {f['projected_pods_at_recommendation'] or 'n/a'} "
            f"| {_money(f['monthly_cost_requests'])} | {_money(f['monthly_cost_recommended'])} |"
        )
    lines += ["", *(f"![{p}]({p})" for p in figures["plots"])]
    return lines


def _c(cores: float) -> str:
    return "n/a" if math.isnan(cores) else f"{cores * 1000:.0f}m"


def _m(b: float) -> str:
    return "n/a" if math.isnan(b) else f"{b / 2**20:.0f}Mi"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.0%}"


def _money(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.2f}"
