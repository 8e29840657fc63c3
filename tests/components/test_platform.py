"""components/platform.py: the namespace it closes by default, and what it hands the gateway."""

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

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


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


def test_namespace_is_default_deny_with_only_the_needed_allows(run_stack):
    mocks = run_stack(stack_values("prod"), "prod")
    policies = {p.inputs["metadata"]["name"]: p.inputs["spec"] for p in mocks.of_type(NETWORK_POLICY)}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    to_agents = policies["allow-gateway-to-agents"]["ingress"][0]
    assert to_agents["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "gateway", "app.kubernetes.io/component": "gateway"}}}]
    assert {p["port"] for p in to_agents["ports"]} == {8080}
    assert {p["port"] for p in policies["allow-dns"]["egress"][0]["ports"]} == {53}
    assert "allow-metrics-scraping" in policies


def test_namespace_declares_state_sources_and_monitoring_for_the_policies(run_stack):
    mocks = run_stack(stack_values("staging"), "staging")
    namespace = mocks.of_type("kubernetes:core/v1:Namespace")[0].inputs["metadata"]
    assert namespace["name"] == "agents-staging"
    assert namespace["annotations"]["agent-platform.io/state-sources"] == "agent-state,workspace"
    assert namespace["annotations"]["agent-platform.io/monitoring"] == "prometheus-operator"
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_route_deadlines_default_to_the_clusters_longest_run_and_shorter_ones_are_refused():
    import copy

    import pytest

    from components.config import StackConfigError, validate_platform
    from components.platform import runtime_config

    values = copy.deepcopy(stack_values("prod"))
    config = validate_platform(values, "prod")
    for route in runtime_config(config).routes:
        longest = config.cluster(route.cluster).max_run_seconds
        assert route.deadline_seconds == longest and route.timeout_seconds == longest
    cluster = values["clusters"][0]
    values["routes"] = [{"cluster": cluster["name"], "deadline_seconds": 60}]
    with pytest.raises(StackConfigError) as caught:
        validate_platform(values, "prod")
    assert "routes[0].deadline_seconds (60) is shorter than clusters." in str(caught.value)
    values["routes"][0]["short_deadline"] = True  # the route says so: accepted
    assert validate_platform(values, "prod").routes[0].deadline_seconds == 60
