"""The reliability report: uptime, error-rate trend, incidents and MTTR, SLO compliance per route.

- Uptime: the share of the report's steps, from the route's first sample on, at which the
  gateway said the route could serve (`agent_gateway_route_ready` 1). A step with no sample (the
  gateway not scraped, so its series went stale) counts as down.
- Availability and SLO compliance: non-5xx requests over all requests in the period, from the
  raw counters (exact counts); the error budget spent is the 5xx share over (1 - objective), as
  the stack's burn-rate alerts count it.
- Incidents: maximal runs of steps whose own 5xx ratio (the counters' increase since the previous
  step) exceeds `incident_error_ratio`, or at which the route was not ready. MTTR is their mean
  duration, from the first bad step to the first good one.
- Error-rate trend: the 5xx ratio over the report's rate window (the stack's recording-rule
  expression, `agent_runtime.alerts.signals.error_ratio_expr`) and its least-squares slope.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from ..alerts.signals import error_ratio_expr, selector
from ..metrics_signals import REQUESTS_TOTAL, ROUTE_READY
from .data import Window, counter_deltas, trend_per_day
from .performance import request_totals
from .plots import Line, save_lines
from .prometheus import Prometheus

__all__ = ["reliability"]


def _incidents(bad_steps: list[float], all_steps: list[float], step: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    bad = set(bad_steps)
    start: float | None = None
    for t in all_steps:
        if t in bad and start is None:
            start = t - step  # the bad interval began after the previous (good) step
        elif t not in bad and start is not None:
            out.append({"start": start, "end": t - step, "seconds": t - step - start})
            start = None
    if start is not None:
        out.append({"start": start, "end": None, "seconds": all_steps[-1] - start, "ongoing": True})
    return out


def reliability(
    prom: Prometheus,
    w: Window,
    out_dir: Path,
    matchers: dict[str, str],
    *,
    objective_percent: float,
    incident_error_ratio: float,
) -> dict[str, Any]:
    totals = request_totals(prom, w, matchers)
    ready: dict[str, dict[float, float]] = {}
    for s in prom.range(f"max by (route) ({selector(ROUTE_READY, matchers)})", w.start, w.end, w.step):
        ready[s.labels.get("route", "")] = dict(zip(s.times, s.values, strict=False))
    deltas: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    for s in prom.range(selector(REQUESTS_TOTAL, matchers), w.start, w.end, w.step):
        all_inc, err_inc = deltas.setdefault(s.labels.get("route", ""), ({}, {}))
        is_error = s.labels.get("code", "").startswith("5")
        for t, d in counter_deltas(s, w).items():
            all_inc[t] = all_inc.get(t, 0.0) + d
            if is_error:
                err_inc[t] = err_inc.get(t, 0.0) + d
    ratio = {
        s.labels.get("route", ""): s
        for s in prom.range(error_ratio_expr(w.rate_window, matchers), w.start, w.end, w.step)
    }
    steps_total = int(round(w.seconds / w.step)) + 1
    grid = [w.start + i * w.step for i in range(steps_total)]
    budget = 1 - objective_percent / 100
    routes: dict[str, dict[str, Any]] = {}
    for route in sorted(set(totals) | set(ready)):
        codes = totals.get(route, {})
        requests = sum(codes.values())
        errors = sum(n for c, n in codes.items() if c.startswith("5"))
        seen = [t for t in ready.get(route, {})] + [t for t in deltas.get(route, ({}, {}))[0]]
        first = min(seen) if seen else w.start
        steps = [t for t in grid if t >= first - 1e-6]
        ready_at = ready.get(route, {})
        up = [t for t in steps if _near(ready_at, t) == 1.0]
        all_inc, err_inc = deltas.get(route, ({}, {}))
        bad = [t for t in steps if _near(ready_at, t) != 1.0]
        for t, n in all_inc.items():
            if n > 0 and err_inc.get(t, 0.0) / n > incident_error_ratio:
                bad.append(min(steps, key=lambda g: abs(g - t)) if steps else t)
        incidents = _incidents(sorted(set(bad)), steps, w.step) if steps else []
        closed = [i["seconds"] for i in incidents if not i.get("ongoing")]
        availability = 1 - errors / requests if requests else math.nan
        r = ratio.get(route)
        routes[route] = {
            "requests": round(requests),
            "errors_5xx": round(errors),
            "uptime_percent": 100 * len(up) / len(steps) if steps else math.nan,
            "availability_percent": 100 * availability if requests else math.nan,
            "objective_percent": objective_percent,
            "slo_met": bool(requests) and availability * 100 >= objective_percent,
            "error_budget_spent": (errors / requests) / budget if requests else math.nan,
            "incidents": incidents,
            "mttr_seconds": sum(closed) / len(closed) if closed else math.nan,
            "error_ratio_trend_per_day": trend_per_day(r.times, r.values) if r else math.nan,
        }
    plot = save_lines(
        out_dir / "reliability-errors.png",
        "5xx ratio by route",
        [
            ("5xx ratio (%)", [Line(rt, s.times, [v * 100 for v in s.values]) for rt, s in sorted(ratio.items())]),
            (
                "route ready",
                [
                    Line(rt, sorted(v), [v[t] for t in sorted(v)], drawstyle="steps-post")
                    for rt, v in sorted(ready.items())
                ],
            ),
        ],
    )
    return {"routes": routes, "plots": [plot.name]}


def _near(values: dict[float, float], t: float) -> float | None:
    v = values.get(t)
    if v is None:  # step times are floats from JSON: match within a millisecond
        for k, x in values.items():
            if abs(k - t) < 1e-3:
                return x
    return v


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def markdown(figures: dict[str, Any]) -> list[str]:
    lines = [
        "| route | requests | uptime | availability | objective | SLO | budget spent | incidents | MTTR |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r, f in figures["routes"].items():
        mttr = "n/a" if math.isnan(f["mttr_seconds"]) else f"{f['mttr_seconds']:.0f} s"
        avail = "n/a" if math.isnan(f["availability_percent"]) else f"{f['availability_percent']:.3f}%"
        spent = "n/a" if math.isnan(f["error_budget_spent"]) else f"{f['error_budget_spent']:.0%}"
        lines.append(
            f"| {r} | {f['requests']} | {f['uptime_percent']:.2f}% | {avail} | {f['objective_percent']:g}% "
            f"| {'met' if f['slo_met'] else 'MISSED'} | {spent} | {len(f['incidents'])} | {mttr} |"
        )
    lines += ["", "### Incidents", ""]
    rows = [
        f"- `{r}`: {_when(i['start'])} UTC, {i['seconds']:.0f} s{' (ongoing)' if i.get('ongoing') else ''}"
        for r, f in figures["routes"].items()
        for i in f["incidents"]
    ]
    lines += rows or ["- none"]
    lines += ["", "### Error-rate trend", ""]
    for r, f in figures["routes"].items():
        slope = f["error_ratio_trend_per_day"]
        lines.append(f"- `{r}`: " + ("n/a" if math.isnan(slope) else f"{slope * 100:+.3f} percentage points/day"))
    lines += ["", *(f"![{p}]({p})" for p in figures["plots"])]
    return lines
