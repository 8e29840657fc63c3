"""Platform: one namespace holding the agent clusters, the gateway, monitoring and backups."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from agent_runtime import config as rt
from agent_runtime.alerts.signals import SIGNALS
from components import labels as L
from components.agent_cluster import AgentCluster
from components.config import PlatformConfig
from components.backup import STATE_COMPONENTS, Backup
from components.database import COMPONENT as DATABASE_COMPONENT, Database, serves
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


def url_port(url: str) -> int:
    """The TCP port a client of `url` connects to (NetworkPolicies allow ports, not names)."""
    parts = urllib.parse.urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in sorted(set(ports))]


def network_policies(config: PlatformConfig, gateway_selector: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Default deny, then exactly the flows the platform needs. Pure, so it is tested directly.

    A destination outside the cluster is known only by its DNS name, which a NetworkPolicy
    cannot match: those flows (external databases, the S3 store, the Pushgateway, the alert
    webhook) are opened by port, for the pods that need them and no others."""
    agent_ports = sorted({c.port for c in config.clusters})
    agents = {"matchLabels": L.agents_selector()}
    gateway = {"matchLabels": gateway_selector}
    state_jobs = {"matchExpressions": [{"key": L.COMPONENT, "operator": "In", "values": list(STATE_COMPONENTS)}]}
    databases = {"matchLabels": {L.COMPONENT: DATABASE_COMPONENT}}
    database_ports = sorted({db.port for db in config.databases})
    external_db_ports = sorted({
        s.port for s in config.backup.sources
        if s.kind == "postgres" and not any(serves(db, s.host, config.namespace) for db in config.databases)
    }) if config.backup.enabled else []
    policies: dict[str, dict[str, Any]] = {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }],
        },
        # Clients reach the routes' listener only; the admin listener is for Prometheus (below).
        "allow-gateway-ingress": {
            "podSelector": gateway,
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": _tcp(config.gateway.port)}],
        },
        "allow-gateway-to-agents": {
            "podSelector": agents,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": gateway}], "ports": _tcp(*agent_ports)}],
        },
        "allow-gateway-egress-to-agents": {
            "podSelector": gateway,
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": agents}], "ports": _tcp(*agent_ports)}],
        },
        # A multi-agent system: agents of every cluster call one another.
        "allow-agents-to-agents": {
            "podSelector": agents,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": agents}], "ports": _tcp(*agent_ports)}],
            "egress": [{"to": [{"podSelector": agents}], "ports": _tcp(*agent_ports)}],
        },
        # Agents call model APIs and tools outside the cluster; cluster-internal addresses stay
        # closed except through the policies above and below.
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
                "ports": _tcp(*agent_ports, config.gateway.admin_port),
            }],
        },
    }
    if database_ports:
        policies["allow-database-clients"] = {
            "podSelector": databases,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": agents}, {"podSelector": state_jobs}],
                         "ports": _tcp(*database_ports)}],
        }
        policies["allow-agents-to-databases"] = {
            "podSelector": agents,
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": databases}], "ports": _tcp(*database_ports)}],
        }
    if external_db_ports:
        policies["allow-agents-to-external-databases"] = {
            "podSelector": agents,
            "policyTypes": ["Egress"],
            "egress": [{"ports": _tcp(*external_db_ports)}],
        }
    if config.backup.enabled:
        egress: list[dict[str, Any]] = []
        if database_ports:
            egress.append({"to": [{"podSelector": databases}], "ports": _tcp(*database_ports)})
        outside = [*external_db_ports]
        if config.backup.target.kind == "s3" and config.backup.target.endpoint:
            outside.append(url_port(config.backup.target.endpoint))
        if config.backup.pushgateway_url:
            outside.append(url_port(config.backup.pushgateway_url))
        if outside:
            egress.append({"ports": _tcp(*outside)})
        if egress:
            policies["allow-backup-egress"] = {"podSelector": state_jobs, "policyTypes": ["Egress"], "egress": egress}
    if config.monitoring.webhook_url and config.monitoring.mode == "in-process":
        policies["allow-gateway-egress-to-webhook"] = {
            "podSelector": gateway,
            "policyTypes": ["Egress"],
            "egress": [{"ports": _tcp(url_port(config.monitoring.webhook_url))}],
        }
    return policies


class Platform(pulumi.ComponentResource):
    """Everything one stack deploys: Namespace, ResourceQuota, LimitRange, NetworkPolicies, the
    stack's own databases, the agent clusters, the gateway, monitoring and backups."""

    namespace: pulumi.Output[str]
    gateway_url: pulumi.Output[str]
    clusters: dict[str, AgentCluster]
    databases: dict[str, Database]

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
        self.databases = {
            db.name: Database(f"{name}-db-{db.name}", db, namespace=ns, environment=env,
                              skip_await=skip_await, opts=in_ns)
            for db in config.databases
        }
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
