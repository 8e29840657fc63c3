"""Gateway: the agent_runtime reverse proxy in front of the agent clusters."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_kubernetes as k8s

from agent_runtime.config import RuntimeConfig
from components import labels as L
from components import workload
from components.config import GatewaySpec
from components.errors import ResourceError
from components.scaling import hpa_spec

CONFIG_DIR = "/etc/agent-runtime"
CONFIG_FILE = "runtime.json"
# The container and Service port serving /metrics, /healthz and /readyz (runtime gateway.admin_port).
ADMIN_PORT_NAME = "admin"


def runtime_config_json(runtime: RuntimeConfig) -> str:
    """The ConfigMap payload: fields in model order, so the same settings give the same bytes
    (and so the same content-derived ConfigMap name)."""
    return runtime.model_dump_json(by_alias=True, indent=2)


class Gateway(pulumi.ComponentResource):
    """ConfigMap of routes (serialised from agent_runtime.config), Deployment running
    `python -m agent_runtime gateway`, Service, PodDisruptionBudget and optional HPA."""

    service_name: pulumi.Output[str]
    url: pulumi.Output[str]
    config_map_name: pulumi.Output[str]
    selector: dict[str, str]

    def __init__(
        self,
        name: str,
        spec: GatewaySpec,
        runtime: RuntimeConfig,
        *,
        namespace: pulumi.Input[str],
        environment: str,
        skip_await: bool = False,
        image: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`image` overrides `spec.image` with an image built in the same stack."""
        super().__init__("agent-platform:index:Gateway", name, None, opts)
        if runtime.gateway.port != spec.port:
            raise ResourceError(
                f"runtime gateway.port ({runtime.gateway.port}) must equal gateway.port ({spec.port})", self
            )
        child = pulumi.ResourceOptions(parent=self)
        self.selector = L.gateway_selector()
        pod_labels = L.standard_labels("gateway", "gateway", environment, L.image_version(spec.image))
        await_annotations = {L.SKIP_AWAIT: "true"} if skip_await else {}
        # The longest request the gateway may be serving when told to stop.
        max_run_seconds = int(max([spec.default_deadline_seconds, *(r.deadline_seconds or 0 for r in runtime.routes)]))

        def meta(resource_name: str | None, extra: dict[str, str] | None = None) -> dict:
            return {
                "name": resource_name,
                "namespace": namespace,
                "labels": pod_labels,
                "annotations": {L.MAX_RUN_SECONDS: str(max_run_seconds), **(extra or {})},
            }

        payload = runtime_config_json(runtime)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=meta("gateway"), automount_service_account_token=False, opts=child
        )
        # Named by content so a routing change rolls the gateway deliberately (and a rollback
        # finds the old ConfigMap gone only after the new pods are ready).
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-runtime-config",
            metadata=meta(f"gateway-runtime-{digest}"),
            data={CONFIG_FILE: payload},
            opts=child,
        )
        container = workload.container(
            name="gateway",
            image=image if image is not None else spec.image,
            port=spec.port,
            spec=spec.resources,
            max_run_seconds=max_run_seconds,
            env=[{"name": "PYTHONUNBUFFERED", "value": "1"}],
            args=["gateway", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
            volume_mounts=[{"name": "runtime-config", "mountPath": CONFIG_DIR, "readOnly": True}],
        )
        # /metrics, /healthz and /readyz are served on the admin listener only (never on a route):
        # the probes, the scrape annotation and the Service's second port point there.
        admin_port = runtime.gateway.admin_port
        container["ports"].append({"name": ADMIN_PORT_NAME, "containerPort": admin_port, "protocol": "TCP"})
        container.update(workload.probes(admin_port))
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta("gateway", await_annotations),
            spec={
                "replicas": spec.replicas if spec.autoscaling is None else spec.autoscaling.min_instances,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": self.selector},
                "strategy": workload.rolling_update(),
                "template": workload.pod_template(
                    labels=pod_labels,
                    selector=self.selector,
                    annotations={
                        L.MAX_RUN_SECONDS: str(max_run_seconds),
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(admin_port),
                    },
                    service_account="gateway",
                    containers=[container],
                    max_run_seconds=max_run_seconds,
                    volumes=[{"name": "runtime-config", "configMap": {"name": config_map.metadata["name"]}}],
                ),
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[account], ignore_changes=["spec.replicas"] if spec.autoscaling else None
            ),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta("gateway", await_annotations),
            spec={
                "type": spec.service_type,
                "selector": self.selector,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    # Scraped by the ServiceMonitor; the NetworkPolicies must admit it from monitoring only.
                    {"name": ADMIN_PORT_NAME, "port": admin_port, "targetPort": ADMIN_PORT_NAME, "protocol": "TCP"},
                ],
            },
            opts=child,
        )
        if spec.autoscaling is not None:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata=meta("gateway"),
                spec=hpa_spec(spec.autoscaling, deployment.metadata["name"], "gateway"),
                opts=child,
            )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta("gateway"),
            spec=workload.pdb_spec(spec.disruption_budget, self.selector),
            opts=child,
        )
        self.service_name = service.metadata["name"]
        self.config_map_name = config_map.metadata["name"]
        self.url = pulumi.Output.all(service.metadata["name"], namespace).apply(
            lambda args: f"http://{args[0]}.{args[1]}.svc.cluster.local"
        )
        self.register_outputs(
            {
                "service_name": self.service_name,
                "url": self.url,
                "config_map_name": self.config_map_name,
            }
        )
