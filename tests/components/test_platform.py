"""components/platform.py: what the platform hands the gateway, tested as pure functions."""

from __future__ import annotations

import copy
import json

from agent_runtime.alerts import AlertEvaluator, RegistrySource, samples_from_registry
from agent_runtime.alerts.signals import SIGNALS
from components.config import validate_platform
from components.monitoring import alert_rules
from components.platform import runtime_config
from tests.gateway_metrics import GatewayReplica
from tests.stacks import stack_values


def _in_process_with_backups():
    values = copy.deepcopy(stack_values("dev"))
    config = validate_platform(values, "dev")
    assert config.monitoring.mode == "in-process"
    return config


def test_in_process_gateway_gets_only_rules_its_registry_can_answer():
    config = _in_process_with_backups()
    rules = alert_rules(config)
    handed = runtime_config(config, rules).alerts.rules
    assert {r.name for r in handed} >= {"AgentHighErrorRate", "AgentErrorBudgetBurnFast", "AgentBreakerOpen"}
    assert all(SIGNALS[r.signal].exporter == "gateway" for r in handed)
    assert config.backup.enabled
    assert "AgentBackupMissed" in {r.name for r in rules} - {r.name for r in handed}


def test_in_process_rules_stay_silent_on_a_healthy_gateway():
    """Every rule handed to the gateway evaluates on its real registry and none fires falsely."""
    config = _in_process_with_backups()
    alerting = runtime_config(config, alert_rules(config)).alerts
    gateway = GatewayReplica()
    gateway.request("chat", 200, seconds=0.05, n=50)
    ev = AlertEvaluator(alerting.model_copy(update={"webhook_url": None}), sources=[RegistrySource(gateway.registry)])

    for t in (0.0, 600.0):
        gateway.request("chat", 200, seconds=0.05, n=50)
        ev.evaluate(samples_from_registry(gateway.registry), t)
    assert ev.alerts() == []
    assert all(r.health == "ok" for r in ev.rules), [(r.rule.name, r.last_error) for r in ev.rules]
    json.dumps(alerting.model_dump(mode="json"))  # what goes into the ConfigMap serialises
