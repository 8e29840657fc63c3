"""PromQL for the typed alert rules, and the rule set every stack gets unless it opts out.

Pure functions, no Pulumi: `components/monitoring.py` puts `rule_groups(...)` into a
PrometheusRule's `spec.groups`, tests feed the same groups to `promtool`, and the gateway
evaluates the same `AlertRule`s in-process (`agent_runtime.alerts`) when there is no Prometheus.

Signals (see `agent_runtime.metrics_signals` for the metrics behind them):

| signal | PromQL (per route/cluster/source) |
|---|---|
| error_rate | 5xx share of gateway requests over the window (recorded) |
| availability | 1 - error_rate |
| latency_p99_seconds | histogram_quantile(0.99, ...duration_seconds_bucket rate over the window) |
| queue_length | sum of the agents' queue lengths per cluster |
| queue_oldest_age_seconds | max of the agents' oldest-item age per cluster |
| breaker_open | most breakers open (or half-open) that any gateway replica has on the route |
| endpoints_ejected | most endpoints ejected that any gateway replica has on the route |
| backup_age_seconds | time() - last successful backup, per source; +Inf for a source with none (absent()) |
| restore_drill_age_seconds | time() - last successful restore drill |
| restore_drill_rto_seconds / _rpo_seconds | as measured by the last drill |

Error ratios are recorded once per window (`route:agent_gateway_request_errors:ratio_rate5m`),
the naming scheme of the Prometheus docs (level:metric:operations), and alerts read the records.
The availability objective gets the multi-window, multi-burn-rate alerts of the Google SRE
workbook (chapter 5, "Alerting on SLOs"): 14.4x over 1h and 5m pages, 6x over 6h and 30m pages,
1x over 3d and 6h opens a ticket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent_runtime.alerts.annotations import RUNBOOK_BASE_URL, alert_annotations, alert_labels
from agent_runtime.alerts.signals import SIGNALS, Query, error_ratio_expr, error_ratio_record, selector
from agent_runtime.alerts.templates import duration
from agent_runtime.config import AlertRule, BackupConfig
from components.schedule import longest_gap_seconds

__all__ = [
    "BURN_RATE_WINDOWS",
    "RUNBOOK_BASE_URL",
    "alert_expr",
    "cron_period_seconds",
    "default_rules",
    "duration",
    "effective_rules",
    "error_ratio_record",
    "rule_groups",
    "selector",
    "signal_expr",
    "slo_burn_rate_rules",
]

# (name suffix, burn rate, long window, short window, severity): SRE workbook, table 5-8.
BURN_RATE_WINDOWS: tuple[tuple[str, float, float, float, str], ...] = (
    ("Fast", 14.4, 3600.0, 300.0, "critical"),
    ("Medium", 6.0, 6 * 3600.0, 1800.0, "critical"),
    ("Slow", 1.0, 3 * 86400.0, 6 * 3600.0, "warning"),
)

_OPS = {">", ">=", "<", "<=", "==", "!="}


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def signal_expr(
    signal: str,
    *,
    window_seconds: float = 300.0,
    route: str | None = None,
    exclude: Sequence[str] = (),
    matchers: Mapping[str, str] | None = None,
    recorded: bool = True,
) -> str:
    """The PromQL instant vector of one signal, one series per route/cluster/source.

    `route` keeps one route (cluster for queue signals, source for backups); `exclude` drops
    routes that have a rule of their own; `matchers` scope every metric (e.g. the namespace).
    The text comes from the signal's own object (`agent_runtime.alerts.signals`), which also
    computes the same value in-process.
    """
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r} (known: {', '.join(sorted(SIGNALS))})")
    query = Query(window_seconds, route, tuple(exclude), dict(matchers or {}), recorded)
    return SIGNALS[signal].promql(query)


def alert_expr(
    rule: AlertRule, *, exclude: Sequence[str] = (), matchers: Mapping[str, str] | None = None
) -> str:
    """The full alert condition: the signal compared with the threshold (over both windows)."""
    if rule.comparison not in _OPS:
        raise ValueError(f"rule {rule.name}: unknown comparison {rule.comparison!r}")

    def cond(window: float) -> str:
        expr = signal_expr(rule.signal, window_seconds=window, route=rule.route, exclude=exclude, matchers=matchers)
        return f"{expr} {rule.comparison} {_number(rule.threshold)}"

    if rule.short_window_seconds is None:
        return cond(rule.window_seconds)
    return f"({cond(rule.window_seconds)}) and ({cond(rule.short_window_seconds)})"


# ---------------------------------------------------------------------------------------------
# rule sets


def cron_period_seconds(schedule: str) -> float:
    """The longest time between two runs of a cron schedule (components.schedule): a missed-run
    alert waits that long, so a weekday schedule alerts after Friday-to-Monday, not a week."""
    return longest_gap_seconds(schedule)


def _missed_after(period: float) -> float:
    # One period plus slack for a slow run: a daily job alerts after about 26.4 h.
    return period + max(period * 0.1, 1800.0)


def default_rules(
    *,
    backup: BackupConfig | None = None,
    error_rate: float = 0.05,
    latency_p99_seconds: float = 10.0,
    queue_length: float = 100.0,
    queue_oldest_age_seconds: float = 600.0,
) -> tuple[AlertRule, ...]:
    """The agent-level rules every stack gets unless it opts out (per route / cluster / source)."""
    rules = [
        AlertRule(name="AgentHighErrorRate", signal="error_rate", threshold=error_rate, **{"for": 300.0}),
        AlertRule(
            name="AgentHighLatencyP99", signal="latency_p99_seconds", threshold=latency_p99_seconds, **{"for": 600.0}
        ),
        AlertRule(name="AgentQueueBacklog", signal="queue_length", threshold=queue_length, **{"for": 900.0}),
        AlertRule(
            name="AgentQueueStalled",
            signal="queue_oldest_age_seconds",
            threshold=queue_oldest_age_seconds,
            **{"for": 300.0},
        ),
        AlertRule(name="AgentBreakerOpen", signal="breaker_open", threshold=0, **{"for": 300.0}),
        AlertRule(name="AgentEndpointsEjected", signal="endpoints_ejected", threshold=0, **{"for": 600.0}),
    ]
    if backup is not None and backup.enabled:
        # One rule per source, so a source that has never been backed up fires too (absent()).
        rules += [
            AlertRule(
                name="AgentBackupMissed",
                signal="backup_age_seconds",
                threshold=_missed_after(cron_period_seconds(backup.schedule)),
                route=source.name,
                severity="critical",
                **{"for": 300.0},
            )
            for source in backup.sources
        ] or [
            # No sources named (yet): one rule over all of them, firing when none has a backup.
            AlertRule(
                name="AgentBackupMissed",
                signal="backup_age_seconds",
                threshold=_missed_after(cron_period_seconds(backup.schedule)),
                severity="critical",
                **{"for": 300.0},
            )
        ]
        if backup.drill.enabled:
            drill = backup.drill
            rules += [
                AlertRule(
                    name="AgentRestoreDrillMissed",
                    signal="restore_drill_age_seconds",
                    threshold=_missed_after(cron_period_seconds(drill.schedule)),
                    **{"for": 300.0},
                ),
                AlertRule(
                    name="AgentRestoreDrillRTOMissed",
                    signal="restore_drill_rto_seconds",
                    threshold=drill.rto_target_seconds,
                    **{"for": 0.0},
                ),
                AlertRule(
                    name="AgentRestoreDrillRPOMissed",
                    signal="restore_drill_rpo_seconds",
                    threshold=drill.rpo_target_seconds,
                    **{"for": 0.0},
                ),
            ]
    return tuple(rules)


def slo_burn_rate_rules(objective_percent: float) -> tuple[AlertRule, ...]:
    """Multi-window, multi-burn-rate alerts on the gateway availability objective (per route)."""
    if not 0 < objective_percent < 100:
        raise ValueError(f"availability objective must be between 0 and 100 (exclusive), got {objective_percent}")
    budget = 1 - objective_percent / 100
    rules = []
    for suffix, burn, long_w, short_w, severity in BURN_RATE_WINDOWS:
        threshold = round(1 - burn * budget, 12)
        rules.append(
            AlertRule(
                name=f"AgentErrorBudgetBurn{suffix}",
                signal="availability",
                comparison="<",
                threshold=threshold,
                window_seconds=long_w,
                short_window_seconds=short_w,
                severity=severity,
                labels={
                    "slo": "availability",
                    "objective": f"{objective_percent:g}",
                    "burn_rate": f"{burn:g}",
                    "long_window": duration(long_w),
                    "short_window": duration(short_w),
                },
                annotations={
                    "summary": (
                        f"Route {{{{ $labels.route }}}} burns its {objective_percent:g}% availability error "
                        f"budget at >= {burn:g}x"
                    ),
                    "description": (
                        f"Availability of route {{{{ $labels.route }}}} is {{{{ $value | humanizePercentage }}}} "
                        f"over {duration(long_w)} and below {threshold * 100:g}% over {duration(short_w)} too: "
                        f"at this rate the 30-day error budget of {budget * 100:g}% lasts "
                        f"{duration(30 * 86400 / burn)}."
                    ),
                },
                **{"for": 0.0},
            )
        )
    return tuple(rules)


def effective_rules(
    rules: Iterable[AlertRule] = (),
    *,
    include_defaults: bool = True,
    slo_objective_percent: float | None = 99.9,
    backup: BackupConfig | None = None,
) -> tuple[AlertRule, ...]:
    """Defaults, then the SLO burn-rate alerts, then the stack's own rules.

    A stack rule with the name of a default replaces that default (for every route), so a stack
    can retune `AgentHighErrorRate` without opting out of the rest.
    """
    own = tuple(rules)
    own_names = {r.name for r in own}
    out: list[AlertRule] = []
    if include_defaults:
        out += [r for r in default_rules(backup=backup) if r.name not in own_names]
    if slo_objective_percent is not None:
        out += [r for r in slo_burn_rate_rules(slo_objective_percent) if r.name not in own_names]
    return tuple(out) + own


def _exclusions(rules: Sequence[AlertRule]) -> dict[int, list[str]]:
    """For rules without `route`, the routes that have a same-named rule of their own."""
    specific: dict[str, list[str]] = {}
    for r in rules:
        if r.route is not None:
            specific.setdefault(r.name, []).append(r.route)
    return {i: specific.get(r.name, []) for i, r in enumerate(rules) if r.route is None}


def rule_groups(
    rules: Sequence[AlertRule],
    *,
    matchers: Mapping[str, str] | None = None,
    runbook_base_url: str = RUNBOOK_BASE_URL,
    interval_seconds: float | None = None,
    name: str = "agent-platform",
) -> list[dict[str, Any]]:
    """The rules as PrometheusRule `spec.groups`: the error-ratio records, then the alerts."""
    rules = list(rules)
    exclusions = _exclusions(rules)
    windows: set[float] = set()
    for r in rules:
        if r.signal in ("error_rate", "availability"):
            windows.add(r.window_seconds)
            if r.short_window_seconds is not None:
                windows.add(r.short_window_seconds)
    records = [
        {
            "record": error_ratio_record(w),
            "expr": error_ratio_expr(w, dict(matchers or {})),
        }
        for w in sorted(windows)
    ]
    alerts = []
    for i, r in enumerate(rules):
        alert: dict[str, Any] = {
            "alert": r.name,
            "expr": alert_expr(r, exclude=exclusions.get(i, ()), matchers=matchers),
        }
        if r.for_seconds:
            alert["for"] = duration(r.for_seconds)
        if r.keep_firing_for_seconds:
            alert["keep_firing_for"] = duration(r.keep_firing_for_seconds)
        alert["labels"] = alert_labels(r)
        alert["annotations"] = alert_annotations(r, runbook_base_url)
        alerts.append(alert)
    # One group: rules of a group run in order at the same timestamp, so each alert reads the
    # error ratio recorded an instant before it, not one evaluation interval stale.
    group: dict[str, Any] = {"name": name}
    if interval_seconds is not None:
        group["interval"] = duration(interval_seconds)
    group["rules"] = records + alerts
    return [group]
