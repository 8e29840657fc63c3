"""The labels and annotation text every alert gets, the same for PrometheusRule and in-process.

`components/promql.py` writes these into the PrometheusRule; the in-process evaluator expands
the same templates (`templates.expand`), so an alert reads the same wherever it was evaluated.
"""

from __future__ import annotations

from ..config import RUNBOOK_BASE_URL, AlertRule
from .signals import SIGNALS
from .templates import duration

__all__ = ["RUNBOOK_BASE_URL", "alert_annotations", "alert_labels", "runbook_anchor", "threshold_text"]

_SUBJECT = {"route": "route", "cluster": "cluster", "source": "backup source"}


def runbook_anchor(alertname: str) -> str:
    """The anchor of an alert's section in docs/runbooks.md: its name in lower case."""
    return alertname.lower()


def threshold_text(signal: str, value: float) -> str:
    """A threshold as people read it: 5%, 26h24m, 100."""
    unit = SIGNALS[signal].unit
    if unit == "ratio":
        return f"{value * 100:g}%"
    if unit == "seconds":
        return duration(value) if value >= 0.001 else f"{value:g}s"
    return f"{value:g}"


def alert_annotations(rule: AlertRule, runbook_base_url: str = "") -> dict[str, str]:
    """summary, description and runbook_url (templates), then the rule's own annotations."""
    signal = SIGNALS[rule.signal]
    what, fmt, key = signal.what, signal.humanize, signal.key_label
    subject = f"{_SUBJECT[key]} {{{{ $labels.{key} }}}}" if key else "the platform"
    window = f" over {duration(rule.window_seconds)}" if signal.windowed else ""
    if rule.short_window_seconds is not None:
        window += f" (and over {duration(rule.short_window_seconds)})"
    held = f" for {duration(rule.for_seconds)}" if rule.for_seconds else ""
    out = {
        "summary": f"{rule.name}: {what} of {subject} is {{{{ $value | {fmt} }}}}",
        "description": (
            f"The {what} of {subject}{window} is {{{{ $value | {fmt} }}}}, "
            f"{rule.comparison} {threshold_text(rule.signal, rule.threshold)}{held} "
            f"(signal {rule.signal}, severity {rule.severity})."
        ),
    }
    if runbook_base_url:
        out["runbook_url"] = f"{runbook_base_url}#{runbook_anchor(rule.name)}"
    out.update(rule.annotations)
    return out


def alert_labels(rule: AlertRule) -> dict[str, str]:
    """The rule's labels plus `severity` and `signal` (the alert-coverage policy reads `signal`)."""
    labels = dict(rule.labels)
    labels["severity"] = rule.severity
    labels["signal"] = rule.signal
    return labels
