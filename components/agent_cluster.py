"""AgentCluster: a Deployment of identical agents, its Services, autoscaler and disruption budget."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components import labels as L
from components import workload
from components.config import ClusterConfig
from components.scaling import hpa_behavior, hpa_spec, keda_triggers


class AgentCluster(pulumi.ComponentResource):
    """One cluster of agents: ServiceAccount, ConfigMap, Deployment, Service, headless Service
    for the gateway's discovery, HPA (or KEDA ScaledObject) and PodDisruptionBudget."""

    deployment_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    headless_service_name: pulumi.Output[str]
    selector: dict[str, str]

    def __init__(
        self,
        name: str,
        spec: ClusterConfig,
        *,
        namespace: pulumi.Input[str],
        environment: str,
        skip_await: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`spec` is validated with the stack (components/config.py), including that a KEDA queue
        source needs `kubernetes.keda_installed`; nothing here checks it again."""
        super().__init__("agent-platform:index:AgentCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.selector = L.selector_labels(spec.name, "agent")
        pod_labels = L.standard_labels(spec.name, "agent", environment, L.image_version(spec.image))
        annotations = {L.MAX_RUN_SECONDS: str(spec.max_run_seconds), L.STATEFUL: str(spec.stateful).lower()}
        await_annotations = {L.SKIP_AWAIT: "true"} if skip_await else {}

        def meta(resource_name: str, extra: dict[str, str] | None = None) -> dict:
            return {
                "name": resource_name,
                "namespace": namespace,
                "labels": pod_labels,
                "annotations": {**annotations, **(extra or {})},
            }

        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=meta(spec.name),
            automount_service_account_token=False,
            opts=child,
        )
        settings = {
            "AGENT_CLUSTER": spec.name,
            "AGENT_CAPABILITIES": ",".join(spec.capabilities),
            "AGENT_MAX_RUN_SECONDS": str(spec.max_run_seconds),
            "AGENT_PORT": str(spec.port),
        }
        # Named by content: a settings change is a new ConfigMap, so the Deployment rolls on purpose.
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-settings",
            metadata={**meta(f"{spec.name}-settings"), "name": None},
            data=settings,
            opts=child,
        )
        replicas = spec.replicas if spec.autoscaling is None else max(spec.autoscaling.min_instances, 1)
        container = workload.container(
            name="agent",
            image=spec.image,
            port=spec.port,
            spec=spec.resources,
            max_run_seconds=spec.max_run_seconds,
            env=[
                *workload.env_list(spec.env, spec.secret_env),
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        )
        container["envFrom"] = [{"configMapRef": {"name": config_map.metadata["name"]}}]
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(spec.name, await_annotations),
            spec={
                "replicas": replicas,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": self.selector},
                "strategy": workload.rolling_update(),
                "template": workload.pod_template(
                    labels=pod_labels,
                    selector=self.selector,
                    annotations={**annotations, "prometheus.io/scrape": "true", "prometheus.io/port": str(spec.port)},
                    service_account=spec.name,
                    containers=[container],
                    max_run_seconds=spec.max_run_seconds,
                ),
            },
            # The HPA owns the replica count once it exists; don't fight it on every `up`.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[account], ignore_changes=["spec.replicas"] if spec.autoscaling else None
            ),
        )
        ports = [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}]
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(spec.name, await_annotations),
            spec={"type": "ClusterIP", "selector": self.selector, "ports": ports},
            opts=child,
        )
        headless = k8s.core.v1.Service(
            f"{name}-headless",
            metadata={
                **meta(L.headless_service_name(spec.name), await_annotations),
                "labels": {**pod_labels, L.HEADLESS: "true"},
            },
            spec={
                "clusterIP": "None",
                "selector": self.selector,
                "ports": ports,
                # Only ready pods in DNS: the gateway never discovers a pod that would refuse work.
                "publishNotReadyAddresses": False,
            },
            opts=child,
        )
        autoscaling = spec.autoscaling
        if autoscaling is not None and autoscaling.queue and autoscaling.queue.source == "keda":
            k8s.apiextensions.CustomResource(
                f"{name}-scaledobject",
                api_version="keda.sh/v1alpha1",
                kind="ScaledObject",
                metadata=meta(spec.name),
                spec={
                    "scaleTargetRef": {"name": deployment.metadata["name"]},
                    "minReplicaCount": autoscaling.min_instances,
                    "maxReplicaCount": autoscaling.max_instances,
                    "advanced": {"horizontalPodAutoscalerConfig": {"behavior": hpa_behavior(autoscaling)}},
                    "triggers": pulumi.Output.from_input(namespace).apply(
                        lambda ns: keda_triggers(autoscaling, spec.name, ns)
                    ),
                },
                opts=child,
            )
        elif autoscaling is not None:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata=meta(spec.name),
                spec=hpa_spec(autoscaling, deployment.metadata["name"], spec.name),
                opts=child,
            )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(spec.name),
            spec=workload.pdb_spec(spec.disruption_budget, self.selector),
            opts=child,
        )
        self.deployment_name = deployment.metadata["name"]
        self.service_name = service.metadata["name"]
        self.headless_service_name = headless.metadata["name"]
        self.register_outputs(
            {
                "deployment_name": self.deployment_name,
                "service_name": self.service_name,
                "headless_service_name": self.headless_service_name,
            }
        )
