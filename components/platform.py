"""Platform: one namespace holding the agent clusters, the gateway, monitoring and backups."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from agent_runtime import config as rt
from agent_runtime.alerts.signals import SIGNALS
from components import labels as L
from components.agent_cluster import AgentCluster
from components.config import PlatformConfig
from components.backup import Backup
from components.gateway import Gateway
from components.image import RuntimeImage
from components.monitoring import Monitoring, alert_rules


def runtime_config(config: PlatformConfig, alert_rules: tuple[rt.AlertRule, ...] = ()) -> rt.RuntimeConfig:
    """What the gateway reads: one route per configured route, discovered through the cluster's
    headless Service, with the settings of the stack file."""
    routes = []
    for route in config.effective_routes():
        cluster = config.cluster(route.cluster)
        routes.append(rt.Route(
            **{k: getattr(route, k) for k in rt.RouteSettings.model_fields
               if k not in ("timeout_seconds", "deadline_seconds")},
            # Long agent runs: both default to the cluster's longest run, never a global 60 s.
            timeout_seconds=route.timeout_seconds or cluster.max_run_seconds,
            deadline_seconds=route.deadline_seconds or cluster.max_run_seconds,
            name=config.route_name(route),
            path_prefix=config.route_prefix(route),
            cluster=cluster.name,
            discovery=rt.Discovery(
                kind="dns",
                service=L.headless_dns_name(cluster.name, config.namespace),
                port=cluster.port,
                capabilities=cluster.capabilities,
            ),
        ))
    monitoring = config.monitoring
    return rt.RuntimeConfig(
        gateway=config.gateway.runtime(),
        routes=tuple(routes),
        alerts=rt.AlertingConfig(
            # The gateway evaluates what its own registry holds: rules on agent, backup or drill
            # metrics would never see data there (and AgentBackupMissed would fire as absent).
            rules=tuple(r for r in alert_rules if SIGNALS[r.signal].exporter == "gateway")
            if monitoring.mode == "in-process" else (),
            webhook_url=monitoring.webhook_url,
        ),
    )


def network_policies(config: PlatformConfig, gateway_selector: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Default deny, then exactly the flows the platform needs. Pure, so it is tested directly."""
    agent_ports = sorted({c.port for c in config.clusters})
    agents = {"matchLabels": L.agents_selector()}
    gateway = {"matchLabels": gateway_selector}
    return {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }],
        },
        "allow-gateway-ingress": {
            "podSelector": gateway,
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": config.gateway.port}]}],
        },
        "allow-gateway-to-agents": {
            "podSelector": agents,
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": gateway}],
                "ports": [{"protocol": "TCP", "port": p} for p in agent_ports],
            }],
        },
        "allow-gateway-egress-to-agents": {
            "podSelector": gateway,
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": agents}], "ports": [{"protocol": "TCP", "port": p} for p in agent_ports]}],
        },
        # Agents call model APIs and tools outside the cluster; only cluster-internal addresses
        # other than DNS stay closed.
        "allow-agent-egress": {
            "podSelector": agents,
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                            "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}}]}],
        },
        "allow-metrics-scraping": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": L.PART_OF}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                "ports": [{"protocol": "TCP", "port": p} for p in sorted({*agent_ports, config.gateway.port})],
            }],
        },
    }


class Platform(pulumi.ComponentResource):
    """Everything one stack deploys: Namespace, ResourceQuota, LimitRange, NetworkPolicies, the
    agent clusters, the gateway, monitoring and backups."""

    namespace: pulumi.Output[str]
    gateway_url: pulumi.Output[str]
    clusters: dict[str, AgentCluster]

    def __init__(self, name: str, config: PlatformConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agent-platform:index:Platform", name, None, opts)
        env = config.environment
        child = pulumi.ResourceOptions(parent=self)
        ns_labels = {
            "app.kubernetes.io/part-of": L.PART_OF,
            "app.kubernetes.io/managed-by": "pulumi",
            L.ENVIRONMENT: env,
            # Enforce what every pod here already satisfies.
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": config.namespace,
                "labels": ns_labels,
                "annotations": {
                    L.ENVIRONMENT: env,
                    L.MONITORING: config.monitoring.mode,
                    L.STATE_SOURCES: ",".join(s.name for s in config.backup.sources) if config.backup.enabled else "",
                },
            },
            opts=child,
        )
        ns = namespace.metadata["name"]
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])

        def meta(resource_name: str) -> dict[str, Any]:
            return {"name": resource_name, "namespace": ns,
                    "labels": {k: v for k, v in ns_labels.items() if not k.startswith("pod-security")}}

        quota = config.quota
        k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta("agent-platform"),
            spec={"hard": {
                "requests.cpu": quota.requests_cpu,
                "requests.memory": quota.requests_memory,
                "limits.cpu": quota.limits_cpu,
                "limits.memory": quota.limits_memory,
                "pods": str(quota.pods),
            }},
            opts=in_ns,
        )
        k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=meta("agent-platform"),
            spec={"limits": [{
                "type": "Container",
                "defaultRequest": {"cpu": quota.default_request.cpu, "memory": quota.default_request.memory},
                "default": {"cpu": quota.default_limit.cpu, "memory": quota.default_limit.memory},
            }]},
            opts=in_ns,
        )
        for policy_name, spec in network_policies(config, L.gateway_selector()).items():
            k8s.networking.v1.NetworkPolicy(f"{name}-{policy_name}", metadata=meta(policy_name), spec=spec, opts=in_ns)

        skip_await = config.kubernetes.skip_await
        self.clusters = {
            cluster.name: AgentCluster(
                f"{name}-{cluster.name}",
                cluster,
                namespace=ns,
                environment=env,
                skip_await=skip_await,
                opts=in_ns,
            )
            for cluster in config.clusters
        }
        runtime_image = (
            RuntimeImage(f"{name}-runtime", config.image_build, opts=child).image_ref
            if config.image_build.enabled else None
        )
        self.gateway = Gateway(
            f"{name}-gateway",
            config.gateway,
            runtime_config(config, alert_rules(config)),
            namespace=ns,
            environment=env,
            skip_await=skip_await,
            image=runtime_image,
            opts=in_ns,
        )
        self._operations(name, config, ns, in_ns, runtime_image or config.gateway.image)
        self.namespace = ns
        self.gateway_url = self.gateway.url
        self.register_outputs({"namespace": self.namespace, "gateway_url": self.gateway_url})

    def _operations(self, name: str, config: PlatformConfig, ns: pulumi.Output[str],
                    opts: pulumi.ResourceOptions, runtime_image: pulumi.Input[str]) -> None:
        """Monitoring (with the Prometheus Operator) and backups, each its own component."""
        if config.monitoring.mode == "prometheus-operator":
            selectors = {name_: c.selector for name_, c in self.clusters.items()}
            selectors["gateway"] = self.gateway.selector
            self.monitoring = Monitoring(f"{name}-monitoring", config, namespace=ns, selectors=selectors, opts=opts)
        if config.backup.enabled:
            self.backup = Backup(f"{name}-backup", config, namespace=ns, image=runtime_image, opts=opts)
