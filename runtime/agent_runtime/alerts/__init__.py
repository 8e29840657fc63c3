"""In-process alert rules for stacks without Prometheus, with Prometheus' semantics.

The same typed `AlertRule`s that `components/promql.py` turns into a PrometheusRule are evaluated
here against the gateway's own registry, a scraped `/metrics` page or a textfile. One module per
concept:

- `sources`: where samples come from (`RegistrySource`, `HttpSource`, `DnsSource`, `FileSource`);
- `signals`: one object per alert signal, yielding both its PromQL and its in-process value
  (ratios and quantiles over the rule's window from counter increases remembered between
  evaluations, gauges as they are now);
- `templates`: Prometheus' annotation templating (`{{ $value | humanizePercentage }}`,
  `{{ $labels.route | toUpper }}`) and duration format; `annotations`: the text every rule gets;
- `rules`: each rule's alerts go inactive -> pending -> firing after `for`, stay firing for
  `keep_firing_for` after the condition clears, and resolve; each rule has a health, and a
  template that fails renders `<error expanding template: ...>` in that rule only, as
  Prometheus' `rules/alerting.go` does (which only logs it, where we also mark the rule "err");
- `notifier`: grouping by `group_by`, deduplication by fingerprint, Alertmanager's webhook
  format (version "4"), `repeat_interval_seconds`; a failed POST is retried next evaluation;
- `evaluator`: `AlertEvaluator` ties them together and exports its own health as metrics;
- `cli`: `python -m agent_runtime alerts`.

Time comes from an injectable clock, so tests step it instead of sleeping.

Differences from Prometheus + Alertmanager, on purpose: no `group_wait` (one evaluation already
batches), and each gateway replica evaluates its own registry, so N replicas notify N times;
point `metrics_urls` of one standalone evaluator (`python -m agent_runtime alerts`) at all of
them when that matters.

Names are imported lazily, so `components/promql.py` can import `signals` and `annotations`
without loading the evaluator.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .annotations import RUNBOOK_BASE_URL, alert_annotations, alert_labels
    from .cli import main, register
    from .evaluator import AlertEvaluator
    from .notifier import Notification, Notifier
    from .rules import Alert, RuleEvaluator, fingerprint
    from .signals import SIGNALS, Signal, SignalComputer, histogram_quantile
    from .sources import (
        DnsSource,
        FileSource,
        HttpSource,
        RegistrySource,
        Sample,
        samples_from_registry,
        samples_from_text,
    )
    from .templates import TemplateError, check_template, duration, expand

_EXPORTS = {
    "RUNBOOK_BASE_URL": "annotations",
    "alert_annotations": "annotations",
    "alert_labels": "annotations",
    "main": "cli",
    "register": "cli",
    "AlertEvaluator": "evaluator",
    "Notification": "notifier",
    "Notifier": "notifier",
    "Alert": "rules",
    "RuleEvaluator": "rules",
    "fingerprint": "rules",
    "SIGNALS": "signals",
    "Signal": "signals",
    "SignalComputer": "signals",
    "histogram_quantile": "signals",
    "DnsSource": "sources",
    "FileSource": "sources",
    "HttpSource": "sources",
    "RegistrySource": "sources",
    "Sample": "sources",
    "samples_from_registry": "sources",
    "samples_from_text": "sources",
    "TemplateError": "templates",
    "check_template": "templates",
    "duration": "templates",
    "expand": "templates",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
