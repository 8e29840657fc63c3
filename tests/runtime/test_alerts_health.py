"""Per-rule health (Prometheus' rules/alerting.go): one broken rule never silences the others.

A template error renders `<error expanding template: ...>` in that rule's annotation, marks that
rule unhealthy and is counted; the alert is still sent, and every other rule notifies as usual.
Notification failures and rule health are exported as metrics on the registry the evaluator
reads (the gateway's /metrics). Webhooks are real aiohttp servers on 127.0.0.1.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent_runtime.alerts import AlertEvaluator, RegistrySource, SignalComputer, samples_from_text
from agent_runtime.alerts.rules import HEALTH_ERR, HEALTH_OK, HEALTH_UNKNOWN
from agent_runtime.config import AlertingConfig, AlertRule
from tests.gateway_metrics import GatewayReplica
from tests.runtime.conftest import Receiver
from tests.runtime.test_alerts import Clock


def _metric(replica: GatewayReplica, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(replica.render().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def _breaker_rule(name: str, annotations: dict[str, str] | None = None) -> AlertRule:
    return AlertRule(name=name, signal="breaker_open", threshold=0, annotations=annotations or {}, **{"for": 0})


@pytest.mark.asyncio
async def test_a_broken_template_marks_only_its_rule_and_the_rest_still_notify(receiver: Receiver) -> None:
    gw = GatewayReplica()
    good = _breaker_rule("BreakerGood", {"summary": "route {{ $labels.route | toUpper }} is open"})
    bad = _breaker_rule("BreakerBad", {"summary": "{{ $value | humanize }} on {{ $labels.route | humanize }}"})
    config = AlertingConfig(rules=(bad, good), webhook_url=receiver.url)
    ev = AlertEvaluator(config, sources=[RegistrySource(gw.registry)], clock=Clock())
    try:
        assert [r.health for r in ev.rules] == [HEALTH_UNKNOWN, HEALTH_UNKNOWN]
        gw.breaker_state.labels("chat", "e1").set(1)
        await ev.evaluate_once()
        notes = {n["groupLabels"]["alertname"]: n for n in receiver.take()}
        assert set(notes) == {"BreakerGood", "BreakerBad"}, "the broken rule does not stop the good one"
        # toUpper, which Prometheus accepts, works in-process
        assert notes["BreakerGood"]["alerts"][0]["annotations"]["summary"] == "route CHAT is open"
        summary = notes["BreakerBad"]["alerts"][0]["annotations"]["summary"]
        assert summary.startswith("<error expanding template: ") and "chat" in summary
        # the rest of the broken rule's annotations still expand
        assert notes["BreakerBad"]["alerts"][0]["annotations"]["description"].startswith("The endpoints with")
        bad_ev, good_ev = ev.rules
        assert (bad_ev.health, good_ev.health) == (HEALTH_ERR, HEALTH_OK)
        assert "annotation summary" in (bad_ev.last_error or "")
        assert _metric(gw, "agent_alert_rule_healthy", alertname="BreakerBad") == 0
        assert _metric(gw, "agent_alert_rule_healthy", alertname="BreakerGood") == 1
        assert _metric(gw, "agent_alert_template_expansion_failures_total") == 1
    finally:
        await ev.close()
    assert _metric(gw, "agent_alert_rule_healthy", alertname="BreakerBad") is None, "unregistered on close"


@pytest.mark.asyncio
async def test_a_failing_signal_marks_its_rule_and_spares_the_others(receiver: Receiver,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from agent_runtime.alerts.signals import SIGNALS

    gw = GatewayReplica()
    broken = SIGNALS["endpoints_ejected"]

    def explode(data: object, q: object) -> dict:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(broken, "compute", explode)
    rules = (AlertRule(name="Ejected", signal="endpoints_ejected", threshold=0, **{"for": 0}), _breaker_rule("Open"))
    ev = AlertEvaluator(AlertingConfig(rules=rules, webhook_url=receiver.url), sources=[RegistrySource(gw.registry)])
    try:
        gw.breaker_state.labels("chat", "e1").set(1)
        await ev.evaluate_once()
        assert [n["groupLabels"]["alertname"] for n in receiver.take()] == ["Open"]
        assert ev.rules[0].health == HEALTH_ERR and "boom" in (ev.rules[0].last_error or "")
        assert _metric(gw, "agent_alert_rule_evaluation_failures_total", alertname="Ejected") == 1
        assert _metric(gw, "agent_alert_rule_evaluation_failures_total", alertname="Open") == 0
    finally:
        await ev.close()


@pytest.mark.asyncio
async def test_notification_failures_are_exported(receiver: Receiver) -> None:
    gw = GatewayReplica()
    clock = Clock()
    config = AlertingConfig(rules=(_breaker_rule("Open"),), webhook_url=receiver.url, receiver="oncall")
    ev = AlertEvaluator(config, sources=[RegistrySource(gw.registry)], clock=clock)
    try:
        gw.breaker_state.labels("chat", "e1").set(1)
        receiver.fail_next = 2
        await ev.evaluate_once()
        clock.advance(15)
        await ev.evaluate_once()
        assert receiver.take() == []
        assert _metric(gw, "agent_alert_notifications_failed_total", receiver="oncall") == 2
        clock.advance(15)
        await ev.evaluate_once()  # the webhook is back: the retry goes through
        assert len(receiver.take()) == 1
        assert _metric(gw, "agent_alert_notifications_total", receiver="oncall") == 3
        assert _metric(gw, "agent_alert_notifications_failed_total", receiver="oncall") == 2
    finally:
        await ev.close()


def test_backup_never_made_fires_in_process_as_in_promql() -> None:
    """absent(): a named source with no backup at all is infinitely old; an unnamed rule fires
    only when no source has any backup."""
    s = SignalComputer()
    s.ingest(1000.0, samples_from_text('agent_backup_last_success_timestamp_seconds{source="files"} 400\n'))
    assert s.compute("backup_age_seconds", route="db") == {(("source", "db"),): math.inf}
    assert s.compute("backup_age_seconds", route="files") == {(("source", "files"),): 600.0}
    assert s.compute("backup_age_seconds") == {(("source", "files"),): 600.0}
    s.ingest(1010.0, [])
    assert s.compute("backup_age_seconds") == {(): math.inf}


def test_promql_does_not_load_the_evaluator() -> None:
    """components/promql.py gets its text from signals/annotations, not from the evaluator."""
    code = (
        "import sys, components.promql\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('agent_runtime.alerts.'))\n"
        "print(loaded)\n"
        "assert 'agent_runtime.alerts.rules' not in sys.modules, loaded\n"
        "assert 'agent_runtime.alerts.evaluator' not in sys.modules, loaded\n"
        "assert 'aiohttp' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
