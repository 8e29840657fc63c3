"""The performance report: throughput, response-time trends and bottlenecks per route.

Read from the gateway's own metrics (`agent_runtime.metrics_signals`): request counts by route
and status code, the request-duration histogram, retries and the retry budget. Quantiles over the
whole period come from the histogram's bucket increases (Prometheus' `histogram_quantile`
interpolation, `agent_runtime.alerts.signals.histogram_quantile`); the plotted ones from
`rate()` over the report's rate window.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..alerts.signals import LatencyQuantile, Query, histogram_quantile, selector
from ..alerts.templates import duration
from ..metrics_signals import REQUEST_DURATION, REQUESTS_TOTAL, RETRIES_TOTAL, RETRY_BUDGET_EXHAUSTED_TOTAL
from .data import Window, counter_increase, trend_per_day
from .plots import Line, save_lines
from .prometheus import Prometheus

__all__ = ["QUANTILES", "performance"]

QUANTILES = (0.5, 0.95, 0.99)
# A route whose retries exceed this share of its requests is named a bottleneck.
RETRY_SHARE_BOTTLENECK = 0.05


def request_totals(prom: Prometheus, w: Window, matchers: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per route, requests answered by status code over the window (exact, from raw counters)."""
    out: dict[str, dict[str, float]] = {}
    for s in prom.range(selector(REQUESTS_TOTAL, matchers), w.start, w.end, w.step):
        codes = out.setdefault(s.labels.get("route", ""), {})
        code = s.labels.get("code", "")
        codes[code] = codes.get(code, 0.0) + counter_increase(s, w)
    return out


def _per_route_increase(prom: Prometheus, metric: str, w: Window, matchers: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in prom.range(selector(metric, matchers), w.start, w.end, w.step):
        r = s.labels.get("route", "")
        out[r] = out.get(r, 0.0) + counter_increase(s, w)
    return out


def performance(prom: Prometheus, w: Window, out_dir: Path, matchers: dict[str, str]) -> dict[str, Any]:
    """Compute the figures, draw the plots into out_dir and return the figures by route."""
    totals = request_totals(prom, w, matchers)
    buckets: dict[str, dict[float, float]] = {}
    for s in prom.range(selector(REQUEST_DURATION + "_bucket", matchers), w.start, w.end, w.step):
        per_le = buckets.setdefault(s.labels.get("route", ""), {})
        le = float(s.labels.get("le", "nan"))
        per_le[le] = per_le.get(le, 0.0) + counter_increase(s, w)
    retries = _per_route_increase(prom, RETRIES_TOTAL, w, matchers)
    refused = _per_route_increase(prom, RETRY_BUDGET_EXHAUSTED_TOTAL, w, matchers)
    rw = duration(w.rate_window)
    rates = {
        s.labels.get("route", ""): s
        for s in prom.range(
            f"sum by (route) (rate({selector(REQUESTS_TOTAL, matchers)}[{rw}]))", w.start, w.end, w.step
        )
    }
    quantile_series: dict[float, dict[str, Any]] = {}
    for q in QUANTILES:
        expr = LatencyQuantile("report", q).promql(Query(window_seconds=w.rate_window, matchers=matchers))
        quantile_series[q] = {s.labels.get("route", ""): s for s in prom.range(expr, w.start, w.end, w.step)}

    routes: dict[str, dict[str, Any]] = {}
    for route in sorted(set(totals) | set(buckets)):
        codes = totals.get(route, {})
        requests = sum(codes.values())
        errors = sum(n for c, n in codes.items() if c.startswith("5"))
        rate = rates.get(route)
        p99 = quantile_series[0.99].get(route)
        figures: dict[str, Any] = {
            "requests": round(requests),
            "errors_5xx": round(errors),
            "codes": {c: round(n) for c, n in sorted(codes.items())},
            "mean_rps": requests / w.seconds,
            "peak_rps": max(rate.values) if rate and rate.values else 0.0,
            "retries": round(retries.get(route, 0.0)),
            "retries_refused_by_budget": round(refused.get(route, 0.0)),
            "p99_trend_seconds_per_day": trend_per_day(p99.times, p99.values) if p99 else math.nan,
        }
        for q in QUANTILES:
            figures[f"p{q * 100:g}_seconds"] = histogram_quantile(q, buckets.get(route, {}).items())
        routes[route] = figures

    bottlenecks = []
    if routes:
        slowest = max(routes, key=lambda r: _or(routes[r]["p99_seconds"], -1.0))
        if not math.isnan(routes[slowest]["p99_seconds"]):
            bottlenecks.append(f"slowest route: `{slowest}` (p99 {routes[slowest]['p99_seconds'] * 1000:.0f} ms)")
        for r, f in routes.items():
            if f["requests"] and f["retries"] / f["requests"] > RETRY_SHARE_BOTTLENECK:
                bottlenecks.append(
                    f"`{r}`: retries are {f['retries'] / f['requests']:.1%} of requests (upstream failing or slow)"
                )
            if f["retries_refused_by_budget"]:
                bottlenecks.append(f"`{r}`: {f['retries_refused_by_budget']} retries refused by the retry budget")
            if f["p99_trend_seconds_per_day"] > 0 and not math.isnan(f["p99_trend_seconds_per_day"]):
                bottlenecks.append(f"`{r}`: p99 rising by {f['p99_trend_seconds_per_day'] * 1000:.1f} ms/day")

    plots = [
        save_lines(
            out_dir / "performance-throughput.png",
            "Requests per second by route",
            [("requests/s", [Line(r, s.times, s.values) for r, s in sorted(rates.items())])],
        ),
        save_lines(
            out_dir / "performance-latency.png",
            f"Response time by route (rate over {rw})",
            [
                (f"p{q * 100:g} (ms)", [_ms_line(r, s) for r, s in sorted(series.items())])
                for q, series in quantile_series.items()
            ],
        ),
    ]
    return {"routes": routes, "bottlenecks": bottlenecks, "plots": [p.name for p in plots]}


def _ms_line(route: str, s: Any) -> Line:
    return Line(route, s.times, [v * 1000 for v in s.values])


def _or(value: float, default: float) -> float:
    return default if math.isnan(value) else value


def markdown(figures: dict[str, Any]) -> list[str]:
    lines = [
        "| route | requests | mean rps | peak rps | p50 | p95 | p99 | 5xx | retries |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, f in figures["routes"].items():
        ms = [_ms(f[f"p{q * 100:g}_seconds"]) for q in QUANTILES]
        lines.append(
            f"| {r} | {f['requests']} | {f['mean_rps']:.2f} | {f['peak_rps']:.2f} | {' | '.join(ms)} "
            f"| {f['errors_5xx']} | {f['retries']} |"
        )
    lines += ["", "### Bottlenecks", ""]
    lines += [f"- {b}" for b in figures["bottlenecks"]] or ["- none found"]
    lines += ["", *(f"![{p}]({p})" for p in figures["plots"])]
    return lines


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"
