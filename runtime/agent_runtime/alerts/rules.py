"""One alerting rule's alerts through inactive / pending / firing, as Prometheus' AlertingRule.

Each rule has a health with Prometheus' values ("unknown" before its first evaluation, "ok"
after a clean one, "err"), and a rule that fails never stops the other rules. A template that
fails renders `<error expanding template: ...>` in that annotation and the alert is still sent,
as in Prometheus' `rules/alerting.go`.

Where we differ on purpose: Prometheus only logs a failed template expansion (a warning per
alert, every evaluation) and keeps the rule's health "ok"; its health goes "err" only when the
query fails or the result breaks the rule (duplicate label sets, the alert limit). Here a failed
template also marks the rule "err" with the annotation and error as `last_error`, so it shows
in `agent_alert_rule_healthy` (there is no rules page to look at); the warning is logged when
the rule's error changes, not every evaluation, and each failure is still counted in
`agent_alert_template_expansion_failures_total`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..config import AlertRule
from .annotations import alert_annotations, alert_labels
from .signals import SignalComputer
from .sources import Labels
from .templates import expand_or_error

__all__ = [
    "FIRING",
    "HEALTH_ERR",
    "HEALTH_OK",
    "HEALTH_UNKNOWN",
    "INACTIVE",
    "PENDING",
    "RESOLVED_RETENTION_SECONDS",
    "Alert",
    "RuleEvaluator",
    "fingerprint",
]

log = logging.getLogger("agent_runtime.alerts")

# Prometheus keeps a resolved alert this long so it is reported as resolved (rules/alerting.go).
RESOLVED_RETENTION_SECONDS = 15 * 60.0

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"
HEALTH_UNKNOWN, HEALTH_OK, HEALTH_ERR = "unknown", "ok", "err"


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint: FNV-1a 64 over sorted name/value pairs, 0xff-separated."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                h ^= byte
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


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
    """One rule's alerts and health, stepped by `eval` as Prometheus' AlertingRule.Eval."""

    def __init__(self, rule: AlertRule, *, exclude: Sequence[str] = (), runbook_base_url: str = "",
                 external_url: str = "") -> None:
        self.rule = rule
        self.annotations = alert_annotations(rule, runbook_base_url)
        self.exclude = tuple(exclude)
        self.external_url = external_url
        self.active: dict[str, Alert] = {}
        self.compare = _COMPARE[rule.comparison]
        self.health = HEALTH_UNKNOWN
        self.last_error: str | None = None
        # Counted for `agent_alert_template_expansion_failures_total`.
        self.template_failures = 0
        self.evaluation_failures = 0

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

    def _expand(self, series: Mapping[str, str], value: float) -> tuple[dict[str, str], str | None]:
        out, first_error = {}, None
        for key, text in self.annotations.items():
            out[key], error = expand_or_error(text, series, value, external_url=self.external_url)
            if error is not None:
                self.template_failures += 1
                first_error = first_error or f"annotation {key}: {error}"
        return out, first_error

    def eval(self, signals: SignalComputer, ts: float) -> None:
        """Step the rule once; a failure marks this rule unhealthy and leaves its alerts as they were."""
        try:
            condition = self._condition(signals)
        except Exception as exc:  # a bug in one signal must not stop the other rules
            self.evaluation_failures += 1
            self._set_health(HEALTH_ERR, f"evaluating {self.rule.signal}: {exc!r}")
            return
        error = None
        rule = self.rule
        seen: set[str] = set()
        for series, value in condition.items():
            labels = dict(series)
            labels.update(alert_labels(rule))
            labels["alertname"] = rule.name
            annotations, template_error = self._expand(dict(series), value)
            error = error or template_error
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
        self._set_health(HEALTH_ERR if error else HEALTH_OK, error)

    def _set_health(self, health: str, error: str | None) -> None:
        if health == HEALTH_ERR and error != self.last_error:
            # Logged when the error changes, not every evaluation.
            log.warning(json.dumps({"msg": "alert rule unhealthy", "rule": self.rule.name, "error": error}))
        self.health, self.last_error = health, error

    def alerts(self) -> list[Alert]:
        return list(self.active.values())
