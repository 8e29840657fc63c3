"""Pure generation for monitoring: PrometheusRule groups and the Grafana dashboard JSON.

No Pulumi here: `components/monitoring.py` puts these into a PrometheusRule and a dashboard
ConfigMap, the tests feed them to promtool and a real Prometheus, and a stack without the
Prometheus Operator gets the same rules evaluated in-process (`agent_runtime.alerts`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from agent_runtime.config import AlertRule, BackupConfig
from agent_runtime.metrics_signals import (
    BACKUP_LAST_SUCCESS,
    DRILL_LAST_SUCCESS,
    DRILL_RPO,
    DRILL_RTO,
    QUEUE_LENGTH,
    QUEUE_OLDEST_AGE,
    REQUESTS_TOTAL,
    RETRIES_TOTAL,
    RETRY_BUDGET_EXHAUSTED_TOTAL,
)
from components.promql import effective_rules, rule_groups, selector, signal_expr

__all__ = ["dashboard_json", "prometheus_rule_groups", "render_dashboard"]

TEMPLATES = Path(__file__).parent / "templates"


def prometheus_rule_groups(
    rules: Iterable[AlertRule] = (),
    *,
    include_defaults: bool = True,
    slo_objective_percent: float | None = 99.9,
    backup: BackupConfig | None = None,
    matchers: Mapping[str, str] | None = None,
    interval_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """`spec.groups` of the stack's PrometheusRule: defaults, SLO burn rates and its own rules."""
    return rule_groups(
        effective_rules(
            rules, include_defaults=include_defaults, slo_objective_percent=slo_objective_percent, backup=backup
        ),
        matchers=matchers,
        interval_seconds=interval_seconds,
    )


@dataclass
class _Target:
    expr: str
    legend: str


@dataclass
class _Panel:
    title: str
    description: str
    unit: str
    targets: list[_Target]
    type: str = "timeseries"
    min: float | None = None
    max: float | None = None
    threshold: float | None = None
    # Values under the threshold are the bad ones (availability), not those above it.
    bad_below: bool = False
    id: int = 0


@dataclass
class _Row:
    title: str
    panels: list[_Panel] = field(default_factory=list)
    id: int = 0
    y: int = 0


def _route_panels(route: str, m: dict[str, str], objective: float | None, window: str) -> list[_Panel]:
    sel = {**m, "route": route}
    availability = signal_expr("availability", route=route, matchers=m, recorded=False)
    return [
        _Panel(
            f"{route}: requests/s by status",
            f"Requests the gateway answered on route {route}, by status code.",
            "reqps",
            [_Target(f"sum by (code) (rate({selector(REQUESTS_TOTAL, sel)}[{window}]))", "{{code}}")],
            min=0,
        ),
        _Panel(
            f"{route}: availability",
            f"Share of non-5xx answers over {window}"
            + (f"; the objective is {objective:g}%." if objective is not None else "."),
            "percentunit",
            [_Target(availability, "availability")],
            max=1,
            threshold=None if objective is None else round(objective / 100, 10),
            bad_below=True,
        ),
        _Panel(
            f"{route}: p99 latency",
            f"99th percentile of gateway request duration over {window}, retries included.",
            "s",
            [_Target(signal_expr("latency_p99_seconds", route=route, matchers=m), "p99")],
            min=0,
        ),
        _Panel(
            f"{route}: resilience",
            "Endpoints with a breaker not closed and endpoints ejected (worst gateway replica); "
            "retries and retries refused by the budget, per second.",
            "short",
            [
                _Target(signal_expr("breaker_open", route=route, matchers=m), "breakers open"),
                _Target(signal_expr("endpoints_ejected", route=route, matchers=m), "ejected"),
                _Target(f"sum(rate({selector(RETRIES_TOTAL, sel)}[{window}]))", "retries/s"),
                _Target(f"sum(rate({selector(RETRY_BUDGET_EXHAUSTED_TOTAL, sel)}[{window}]))", "budget exhausted/s"),
            ],
            min=0,
        ),
    ]


def _cluster_panels(cluster: str, m: dict[str, str]) -> list[_Panel]:
    sel = {**m, "cluster": cluster}
    return [
        _Panel(
            f"{cluster}: queue length",
            f"Work items waiting in cluster {cluster}: total and per agent.",
            "short",
            [
                _Target(f"sum({selector(QUEUE_LENGTH, sel)})", "total"),
                _Target(selector(QUEUE_LENGTH, sel), "{{pod}}"),
            ],
            min=0,
        ),
        _Panel(
            f"{cluster}: oldest queued item",
            f"Age of the oldest waiting item in cluster {cluster}; a line that only grows is a stall.",
            "s",
            [_Target(f"max({selector(QUEUE_OLDEST_AGE, sel)})", "oldest")],
            min=0,
        ),
    ]


def _recovery_panels(m: dict[str, str], backup: BackupConfig | None) -> list[_Panel]:
    drill = backup.drill if backup is not None else None
    return [
        _Panel(
            "backup age",
            "Time since the newest complete backup of each source.",
            "s",
            [_Target(f"time() - max by (source) ({selector(BACKUP_LAST_SUCCESS, m)})", "{{source}}")],
            min=0,
        ),
        _Panel(
            "restore drill age",
            "Time since the last restore drill that met its targets.",
            "s",
            [_Target(f"time() - max({selector(DRILL_LAST_SUCCESS, m)})", "since last good drill")],
            min=0,
        ),
        _Panel(
            "restore drill RTO",
            "Measured time to restore and verify the newest backup in the last drill.",
            "s",
            [_Target(f"max({selector(DRILL_RTO, m)})", "RTO")],
            min=0,
            threshold=drill.rto_target_seconds if drill else None,
        ),
        _Panel(
            "restore drill RPO",
            "Age of the newest restorable point when the last drill ran.",
            "s",
            [_Target(f"max({selector(DRILL_RPO, m)})", "RPO")],
            min=0,
            threshold=drill.rpo_target_seconds if drill else None,
        ),
    ]


def render_dashboard(
    *,
    routes: Sequence[str],
    clusters: Sequence[str],
    stack: str = "local",
    title: str | None = None,
    uid: str | None = None,
    datasource: str = "prometheus",
    matchers: Mapping[str, str] | None = None,
    slo_objective_percent: float | None = 99.9,
    backup: BackupConfig | None = None,
    window: str = "5m",
) -> str:
    """The Grafana dashboard JSON text for one stack: a row per route and per cluster."""
    m = dict(matchers or {})
    rows = [_Row(f"Route {r}", _route_panels(r, m, slo_objective_percent, window)) for r in routes]
    rows += [_Row(f"Cluster {c}", _cluster_panels(c, m)) for c in clusters]
    rows.append(_Row("Backups and restore drills", _recovery_panels(m, backup)))
    next_id, y = 1, 0
    for row in rows:
        row.id, row.y = next_id, y
        next_id += 1
        for panel in row.panels:
            panel.id = next_id
            next_id += 1
        y += 1 + 8 * ((len(row.panels) + 3) // 4)
    alert_matchers = "".join(f",{k}={json.dumps(v)}" for k, v in sorted(m.items()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    text = env.get_template("dashboard.json.j2").render(
        rows=rows,
        stack=stack,
        title=title or f"agent-platform / {stack}",
        uid=uid or f"agent-platform-{stack}"[:40],
        datasource=datasource,
        alert_matchers=alert_matchers,
    )
    json.loads(text)  # a template bug fails here, at generation, not in Grafana
    return text


def dashboard_json(**kwargs: Any) -> dict[str, Any]:
    """`render_dashboard` parsed: the dashboard as a dict."""
    return json.loads(render_dashboard(**kwargs))
