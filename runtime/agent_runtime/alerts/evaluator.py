"""The in-process evaluator: collect samples, step every rule, notify the webhook.

Its own health is exported as metrics on the registry it is given (by default the registry of
its first `RegistrySource`, i.e. the gateway's /metrics), with the names Prometheus and
Alertmanager use for theirs:

- ``agent_alert_notifications_total{receiver}`` / ``agent_alert_notifications_failed_total{receiver}``
  (Alertmanager's ``alertmanager_notifications_total`` / ``_failed_total``): webhook calls tried
  and failed; a failed call is retried at the next evaluation.
- ``agent_alert_rule_evaluation_failures_total{alertname,route}`` (Prometheus'
  ``prometheus_rule_evaluation_failures_total``) and ``agent_alert_rule_healthy{alertname,route}``
  (1 ok, 0 err; Prometheus shows this health on its /rules page).
- ``agent_alert_template_expansion_failures_total`` (Prometheus'
  ``prometheus_template_text_expansion_failures_total``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

from ..config import AlertingConfig
from .notifier import Notification, Notifier
from .rules import HEALTH_ERR, Alert, RuleEvaluator
from .signals import SIGNALS, SignalComputer
from .sources import MetricsSource, RegistrySource, Sample

__all__ = ["AlertEvaluator", "EvaluatorMetrics", "Send"]

log = logging.getLogger("agent_runtime.alerts")

Send = Callable[[dict[str, Any]], Awaitable[None]]


class EvaluatorMetrics:
    """A prometheus_client collector exposing one evaluator's notification and rule health."""

    def __init__(self, evaluator: AlertEvaluator) -> None:
        self.evaluator = evaluator

    def describe(self) -> list[Any]:
        return []  # collected lazily: the families depend on the rules

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ev = self.evaluator
        receiver = ev.config.receiver
        sent = CounterMetricFamily(
            "agent_alert_notifications", "Webhook notifications attempted by the in-process evaluator.",
            labels=["receiver"],
        )
        sent.add_metric([receiver], ev.notifications_sent + ev.notification_failures)
        failed = CounterMetricFamily(
            "agent_alert_notifications_failed", "Webhook notifications that failed (retried next evaluation).",
            labels=["receiver"],
        )
        failed.add_metric([receiver], ev.notification_failures)
        rule_failures = CounterMetricFamily(
            "agent_alert_rule_evaluation_failures", "Evaluations of a rule that failed.", labels=["alertname", "route"]
        )
        healthy = GaugeMetricFamily(
            "agent_alert_rule_healthy", "1 if the rule's last evaluation was clean, 0 if it failed or a template "
            "did not expand.", labels=["alertname", "route"],
        )
        templates = CounterMetricFamily(
            "agent_alert_template_expansion_failures", "Annotation templates that failed to expand."
        )
        template_failures = 0
        for rule in ev.rules:
            key = [rule.rule.name, rule.rule.route or ""]
            rule_failures.add_metric(key, rule.evaluation_failures)
            healthy.add_metric(key, 0.0 if rule.health == HEALTH_ERR else 1.0)
            template_failures += rule.template_failures
        templates.add_metric([], template_failures)
        yield from (sent, failed, rule_failures, healthy, templates)


class AlertEvaluator:
    """Evaluates an `AlertingConfig` against metric sources and notifies its webhook."""

    def __init__(
        self,
        config: AlertingConfig,
        *,
        sources: Sequence[MetricsSource],
        clock: Callable[[], float] = time.time,
        send: Send | None = None,
        registry: Any = None,
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
                external_url=config.external_url,
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
        if registry is None:
            registry = next((s.registry for s in self.sources if isinstance(s, RegistrySource)), None)
        self._registry = registry
        self.metrics = EvaluatorMetrics(self)
        if registry is not None:
            registry.register(self.metrics)

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
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._registry is not None:
            try:
                self._registry.unregister(self.metrics)
            except KeyError:
                pass  # already unregistered
            self._registry = None
        if self._session is not None:
            await self._session.close()
            self._session = None
