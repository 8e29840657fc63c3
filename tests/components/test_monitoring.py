"""Monitoring: CRDs only with the Prometheus Operator; otherwise the gateway gets the rules."""

from __future__ import annotations

import copy
import json

from tests.stacks import stack_values

SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"


def _alerts(rule) -> list[dict]:
    return [r for g in rule.inputs["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_operator_stack_gets_monitors_rules_and_dashboard(run_stack):
    mocks = run_stack(stack_values("staging"), "staging")
    monitors = {m.inputs["metadata"]["name"]: m.inputs["spec"] for m in mocks.of_type(SERVICE_MONITOR)}
    assert set(monitors) == {"workers", "coordinators", "specialists", "gateway"}
    assert monitors["workers"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "workers", "app.kubernetes.io/component": "agent"}
    alerts = _alerts(mocks.of_type(PROMETHEUS_RULE)[0])
    signals = {a["labels"]["signal"] for a in alerts}
    assert {"error_rate", "availability", "latency_p99_seconds", "breaker_open", "endpoints_ejected",
            "backup_age_seconds", "restore_drill_age_seconds"} <= signals
    burn = [a for a in alerts if a["labels"]["signal"] == "availability"]
    assert len(burn) == 3, "fast, medium and slow burn-rate alerts"
    rules = [r for g in mocks.of_type(PROMETHEUS_RULE)[0].inputs["spec"]["groups"] for r in g["rules"]]
    selecting = [r for r in rules if "{" in r["expr"]]
    assert selecting and all('namespace="agents-staging"' in r["expr"] for r in selecting)
    dashboard = next(c for c in mocks.of_type("kubernetes:core/v1:ConfigMap") if "dashboard" in c.name)
    assert dashboard.inputs["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard.inputs["data"]["agent-platform.json"])
    assert "workers" in json.dumps(panels)


def test_headless_services_are_not_scraped_twice(run_stack):
    mocks = run_stack(stack_values("staging"), "staging")
    headless = [s for s in mocks.of_type("kubernetes:core/v1:Service") if s.inputs["spec"].get("clusterIP") == "None"]
    for monitor in mocks.of_type(SERVICE_MONITOR):
        selector = monitor.inputs["spec"]["selector"]
        for service in headless:
            labels = service.inputs["metadata"]["labels"]
            excluded = any(e["operator"] == "DoesNotExist" and e["key"] in labels for e in selector["matchExpressions"])
            assert excluded or not selector["matchLabels"].items() <= labels.items()


def test_in_process_stack_hands_the_same_rules_to_the_gateway(run_stack):
    mocks = run_stack(stack_values("local"), "local")
    assert mocks.of_type(SERVICE_MONITOR) == [] and mocks.of_type(PROMETHEUS_RULE) == []
    config_map = mocks.one("kubernetes:core/v1:ConfigMap", "gateway-runtime-config")
    rules = json.loads(config_map.inputs["data"]["runtime.json"])["alerts"]["rules"]
    assert {"error_rate", "availability"} <= {r["signal"] for r in rules}


def test_opting_out_of_default_rules_keeps_only_own_and_slo_rules(run_stack):
    values = copy.deepcopy(stack_values("staging"))
    values["monitoring"]["default_rules"] = False
    values["monitoring"]["rules"] = [{"name": "WorkersSlow", "signal": "latency_p99_seconds",
                                      "threshold": 3, "route": "workers", "severity": "critical"}]
    mocks = run_stack(values, "staging")
    names = {a["alert"] for a in _alerts(mocks.of_type(PROMETHEUS_RULE)[0])}
    assert "AgentHighErrorRate" not in names
    assert "WorkersSlow" in names
    assert {n for n in names if n.startswith("AgentErrorBudgetBurn")} == {
        "AgentErrorBudgetBurnFast", "AgentErrorBudgetBurnMedium", "AgentErrorBudgetBurnSlow"}


def test_monitoring_for_an_in_process_stack_is_refused_by_the_component(mocked_engine):
    import pytest

    from components.config import validate_platform
    from components.errors import ResourceError
    from components.monitoring import Monitoring

    config = validate_platform(stack_values("local"), "local")
    assert config.monitoring.mode == "in-process"
    with pytest.raises(ResourceError, match="^agent-platform:index:Monitoring m: Monitoring resources need"):
        Monitoring("m", config, namespace="agents-local", selectors={})
    assert mocked_engine.of_type(PROMETHEUS_RULE) == []
