"""Monitoring: ServiceMonitors, the PrometheusRule and the Grafana dashboard of one stack.

The rules come from `components.monitoring_rules` (pure, checked by promtool in the tests). With
the Prometheus Operator present they become a PrometheusRule; without it, `alert_rules()` hands
the same typed rules to the gateway, which evaluates them in-process.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from agent_runtime.config import AlertRule
from components import labels as L
from components.config import PlatformConfig
from components.errors import ResourceError
from components.gateway import ADMIN_PORT_NAME
from components.monitoring_rules import prometheus_rule_groups, render_dashboard
from components.promql import effective_rules


def alert_rules(config: PlatformConfig) -> tuple[AlertRule, ...]:
    """Defaults (unless opted out), the SLO burn-rate alerts, then the stack's own rules."""
    monitoring = config.monitoring
    return effective_rules(
        monitoring.rules,
        include_defaults=monitoring.default_rules,
        slo_objective_percent=monitoring.slo.availability_objective,
        backup=config.backup if config.backup.enabled else None,
    )


class Monitoring(pulumi.ComponentResource):
    """Per stack: a ServiceMonitor per agent cluster and the gateway, one PrometheusRule, and a
    Grafana dashboard ConfigMap that Grafana's sidecar picks up by label."""

    rule_names: list[str]
    dashboard_config_map: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        *,
        namespace: pulumi.Input[str],
        selectors: dict[str, dict[str, str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("agent-platform:index:Monitoring", name, None, opts)
        if config.monitoring.mode != "prometheus-operator":
            raise ResourceError("Monitoring resources need monitoring.mode: prometheus-operator", self)
        child = pulumi.ResourceOptions(parent=self)
        monitoring = config.monitoring
        base_labels = L.standard_labels("monitoring", "monitoring", config.environment)
        matchers = {"namespace": config.namespace}

        for target, selector in sorted(selectors.items()):
            k8s.apiextensions.CustomResource(
                f"{name}-{target}-servicemonitor",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={"name": target, "namespace": namespace, "labels": base_labels},
                spec={
                    # The headless twin of each Service selects the same pods: scrape them once.
                    "selector": {"matchLabels": selector, "matchExpressions": [
                        {"key": L.HEADLESS, "operator": "DoesNotExist"}]},
                    "namespaceSelector": {"matchNames": [config.namespace]},
                    # The gateway serves /metrics on its admin listener, agents on their http port.
                    "endpoints": [{"port": ADMIN_PORT_NAME if target == "gateway" else "http", "path": "/metrics",
                                   "interval": monitoring.scrape_interval}],
                },
                opts=child,
            )
        groups = prometheus_rule_groups(
            monitoring.rules,
            include_defaults=monitoring.default_rules,
            slo_objective_percent=monitoring.slo.availability_objective,
            backup=config.backup if config.backup.enabled else None,
            matchers=matchers,
        )
        self.rule_names = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
        k8s.apiextensions.CustomResource(
            f"{name}-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": "agent-platform", "namespace": namespace,
                      "labels": {**base_labels, "role": "alert-rules"}},
            spec={"groups": groups},
            opts=child,
        )
        self.dashboard_config_map = None
        if monitoring.grafana_dashboard:
            routes = [config.route_name(r) for r in config.effective_routes()]
            dashboard = render_dashboard(
                routes=routes,
                clusters=[c.name for c in config.clusters],
                stack=config.stack,
                matchers=matchers,
                slo_objective_percent=monitoring.slo.availability_objective,
                backup=config.backup if config.backup.enabled else None,
            )
            config_map = k8s.core.v1.ConfigMap(
                f"{name}-dashboard",
                # Grafana's dashboard sidecar loads every ConfigMap with this label.
                metadata={"name": "agent-platform-dashboard", "namespace": namespace,
                          "labels": {**base_labels, "grafana_dashboard": "1"}},
                data={"agent-platform.json": dashboard},
                opts=child,
            )
            self.dashboard_config_map = config_map.metadata["name"]
        self.register_outputs({"rule_names": self.rule_names, "dashboard_config_map": self.dashboard_config_map})
