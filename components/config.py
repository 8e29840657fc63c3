"""The typed stack configuration, read once from `pulumi.Config` and validated as a whole.

A stack file holds keys under the `agent-platform:` namespace (see stacks/schema.json). Every
invalid value becomes ONE `StackConfigError` naming the stack file and the key path, such as
`stacks/Pulumi.prod.yaml: agent-platform:clusters.workers.autoscaling.max_instances (2) must be
>= min_instances (3)`; `__main__.py` reports it without a traceback.

This is the only module that reads `pulumi.Config`: components receive these typed objects.
The runtime's own settings (breaker, retry, balancer, alert rules, backups) are the models of
`agent_runtime.config`, reused here so they are defined once.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agent_runtime.config import (
    DURATION_PATTERN,
    AlertRule,
    Duration,
    duration_schema,
    GatewayConfig as RuntimeGatewayConfig,
    Model,
    RouteSettings,
    BackupConfig,
    Strategy,
    prefix_rewrite_problem,
    parse_duration,
)
from agent_runtime.alerts.templates import NotInProcessError, TemplateError, check_template
from components import labels as L
from components.image_ref import pinning_problem
from components.quantity import PATTERN as QUANTITY_PATTERN, parse_quantity
from components.schedule import schedule_problem

PROJECT = "agent-platform"

Environment = Literal["local", "dev", "staging", "prod"]
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Service names are DNS-1035 labels: they start with a letter (a cluster or database name
# becomes one).
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# replicas, minReplicas, maxReplicas and ResourceQuota counts are int32 in the Kubernetes API.
INT32_MAX = 2**31 - 1
# Route deadlines and max_run_seconds become terminationGracePeriodSeconds: a day at most.
MAX_RUN_LIMIT_SECONDS = 86400
# The CronJob controller appends an 11-character suffix to its Jobs' names (63 - 11).
CRONJOB_NAME_MAX = 52
# Kubernetes' classic rule for env var names (C_IDENTIFIER plus '-' and '.').
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Paths the platform itself serves on every agent and the gateway (probes, Prometheus).
RESERVED_PREFIXES = ("/healthz", "/readyz", "/metrics")
_STEP = re.compile(r"^(?P<value>\d+)(?P<percent>%?)$")


# Durations in whole seconds (or `5m`, `1h30m`); the bounds are each field's own.
IntSeconds = Annotated[int, Duration, duration_schema({"type": "integer"})]
FloatSeconds = Annotated[float, Duration, duration_schema({"type": "number"})]


class StackConfigError(Exception):
    """A stack file that cannot be deployed; the message is meant for the user as it is."""




def _quantity(value: Any) -> str:
    text = str(value)
    parse_quantity(text)
    return text


def _bytes(value: Any) -> str:
    """A memory or storage quantity: a whole number of bytes (`512m` is 0.512 bytes)."""
    text = _quantity(value)
    amount = parse_quantity(text)
    if amount.denominator != 1 or (amount < 1 and amount != 0):
        hint = f"; write {text[:-1]}Mi (mebibytes) or {text[:-1]}M (megabytes)" if text.endswith("m") else ""
        raise ValueError(f"{text!r} is not a whole number of bytes (the suffix m means milli){hint}")
    return text


def _service_name(value: str, what: str) -> str:
    if not re.match(DNS_1035_LABEL, value):
        raise ValueError(
            f"{what} {value!r} must be lower-case letters, digits and '-', start with a letter and "
            f"end with a letter or digit (it names a Kubernetes Service)"
        )
    return value


def _image(value: str) -> str:
    if not value or value != value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"image {value!r} must be an image reference such as registry.example/team/agent:1.2.3")
    return value


def _env_names(env: dict[str, Any]) -> dict[str, Any]:
    for name in env:
        if not ENV_NAME.match(name):
            raise ValueError(
                f"environment variable name {name!r} is not valid: letters, digits, '_', '-' and '.', "
                "not starting with a digit"
            )
    return env


Quantity = Annotated[str, Field(json_schema_extra={"pattern": QUANTITY_PATTERN})]


class Resources(Model):
    cpu: Quantity
    memory: Quantity

    @field_validator("cpu", mode="before")
    @classmethod
    def _is_quantity(cls, value: Any) -> str:
        return _quantity(value)

    @field_validator("memory", mode="before")
    @classmethod
    def _is_bytes(cls, value: Any) -> str:
        return _bytes(value)


class ResourceSpec(Model):
    """Requests are what the scheduler reserves; limits are what the kubelet enforces."""

    requests: Resources
    limits: Resources

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ResourceSpec:
        for kind in ("cpu", "memory"):
            request, limit = getattr(self.requests, kind), getattr(self.limits, kind)
            if parse_quantity(limit) < parse_quantity(request):
                raise ValueError(f"limits.{kind} ({limit}) must be >= requests.{kind} ({request})")
        return self


def parse_step(step: int | str) -> tuple[Literal["Pods", "Percent"], int]:
    """`4` -> (Pods, 4); `"50%"` -> (Percent, 50)."""
    match = _STEP.match(str(step))
    if not match or int(match.group("value")) < 1:
        raise ValueError(f"step {step!r} must be a positive number of pods (4) or a percentage ('50%')")
    return ("Percent" if match.group("percent") else "Pods", int(match.group("value")))


class QueueScaling(Model):
    """Scale on work waiting, not only CPU: the source material's QUEUE_LENGTH metric."""

    metric: str = "agent_queue_length"
    # Desired queued items per pod.
    target_per_pod: float = Field(gt=0)
    # external: an HPA External metric (a Prometheus adapter serves it);
    # pods: an HPA Pods metric (per-pod average); keda: a KEDA ScaledObject (Prometheus trigger).
    source: Literal["external", "pods", "keda"] = "external"
    prometheus_address: str = "http://prometheus-operated.monitoring.svc:9090"


class Autoscaling(Model):
    """The ScalingRule vocabulary, translated into an autoscaling/v2 HPA `behavior`.

    See `components.scaling.hpa_behavior` for the translation (documented in the README).
    """

    min_instances: int = Field(ge=0, le=INT32_MAX)
    max_instances: int = Field(ge=1, le=INT32_MAX)
    cpu_threshold: int | None = Field(70, ge=1, le=100)
    memory_threshold: int | None = Field(None, ge=1, le=100)
    scale_up_cooldown: IntSeconds = Field(0, ge=0, le=3600)
    scale_down_cooldown: IntSeconds = Field(300, ge=0, le=3600)
    scale_up_step: int | str = "100%"
    scale_down_step: int | str = 1
    queue: QueueScaling | None = None

    @field_validator("scale_up_step", "scale_down_step")
    @classmethod
    def _valid_step(cls, value: int | str) -> int | str:
        parse_step(value)
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_instances < self.min_instances:
            raise ValueError(
                f"max_instances ({self.max_instances}) must be >= min_instances ({self.min_instances})"
            )
        if self.cpu_threshold is None and self.memory_threshold is None and self.queue is None:
            raise ValueError("needs at least one of cpu_threshold, memory_threshold or queue")
        return self


class DisruptionBudget(Model):
    """At most this many pods of a cluster may be down for voluntary disruptions."""

    max_unavailable: int | str = 1

    @field_validator("max_unavailable")
    @classmethod
    def _allows_disruption(cls, value: int | str) -> int | str:
        kind, amount = parse_step(value)  # rejects 0 and "0%": a PDB must never block every eviction
        if kind == "Percent" and amount > 100:
            raise ValueError(f"{value!r} is more than 100%")
        return value


class RouteConfig(RouteSettings):
    """A gateway route to one cluster; its settings are the runtime's `RouteSettings`."""

    cluster: str
    # Defaults to the cluster name.
    name: str | None = Field(None, pattern=DNS_LABEL)
    # Defaults to /<cluster name>.
    path_prefix: str | None = Field(None, pattern=r"^/")
    # Per try, until the agent's response head; unset: the cluster's max_run_seconds.
    timeout_seconds: FloatSeconds | None = Field(None, gt=0)  # type: ignore[assignment]
    # All tries together; unset: the cluster's max_run_seconds. Shorter only with short_deadline.
    deadline_seconds: FloatSeconds | None = Field(None, gt=0)
    # A route that knowingly cuts runs shorter than its cluster's max_run_seconds.
    short_deadline: bool = False

    @field_validator("path_prefix")
    @classmethod
    def _not_reserved(cls, value: str | None) -> str | None:
        if value is None:
            return value
        for reserved in RESERVED_PREFIXES:
            if value == reserved or value.startswith(reserved + "/"):
                raise ValueError(
                    f"path_prefix {value!r} is a path the platform serves itself (probes, Prometheus: "
                    f"{', '.join(RESERVED_PREFIXES)}); choose another prefix"
                )
        return value


class ClusterConfig(Model):
    """One agent cluster: a Deployment of identical agents behind Services, scaled by an HPA."""

    name: str = Field(max_length=40, json_schema_extra={"pattern": DNS_1035_LABEL})
    image: str = Field(min_length=1)
    replicas: int = Field(2, ge=0, le=INT32_MAX)
    port: int = Field(8080, ge=1024, le=65535)
    capabilities: tuple[str, ...] = ()
    resources: ResourceSpec
    autoscaling: Autoscaling | None = None
    # The longest single agent run; shutdown waits this long so runs are never cut short.
    max_run_seconds: IntSeconds = Field(300, ge=1, le=MAX_RUN_LIMIT_SECONDS)
    # Holds conversation state in memory: never scaled to zero.
    stateful: bool = False
    disruption_budget: DisruptionBudget = DisruptionBudget()
    env: dict[str, str] = {}
    # Environment variables read from Kubernetes Secrets: NAME -> "secret-name/key".
    secret_env: dict[str, Annotated[str, Field(pattern=r"^[a-z0-9.-]+/[-._a-zA-Z0-9]+$")]] = {}

    @field_validator("name")
    @classmethod
    def _is_service_name(cls, value: str) -> str:
        return _service_name(value, "cluster name")

    @field_validator("image", mode="before")
    @classmethod
    def _is_image(cls, value: Any) -> Any:
        return _image(value) if isinstance(value, str) else value

    @field_validator("env", "secret_env")
    @classmethod
    def _env_names_valid(cls, value: dict[str, str]) -> dict[str, str]:
        return _env_names(value)

    @model_validator(mode="after")
    def _stateful_never_zero(self) -> ClusterConfig:
        if self.stateful and (self.replicas == 0 or (self.autoscaling and self.autoscaling.min_instances == 0)):
            raise ValueError("a stateful cluster must never scale to zero (replicas and min_instances >= 1)")
        return self


class GatewaySpec(RuntimeGatewayConfig):
    """The gateway's Deployment; the process settings (port, max_in_flight, deadlines) are the
    runtime's own `GatewayConfig`, inherited so they are defined once."""

    image: str = Field(min_length=1)
    replicas: int = Field(2, ge=1, le=INT32_MAX)
    # In a pod the gateway must listen on every interface, or its Service cannot reach it.
    host: Literal["0.0.0.0", "::"] = "0.0.0.0"
    # The pod runs as non-root without NET_BIND_SERVICE, so no privileged port.
    port: int = Field(8080, ge=1024, le=65535)
    resources: ResourceSpec
    autoscaling: Autoscaling | None = None
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    disruption_budget: DisruptionBudget = DisruptionBudget()

    @field_validator("image", mode="before")
    @classmethod
    def _is_image(cls, value: Any) -> Any:
        return _image(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _never_zero(self) -> GatewaySpec:
        if self.autoscaling is not None and self.autoscaling.min_instances < 1:
            raise ValueError("autoscaling.min_instances must be >= 1: a gateway scaled to zero answers nothing")
        if not self.default_deadline_seconds <= MAX_RUN_LIMIT_SECONDS:
            raise ValueError(
                f"default_deadline_seconds ({self.default_deadline_seconds:g}) must be at most "
                f"{MAX_RUN_LIMIT_SECONDS} (a day): the gateway's terminationGracePeriodSeconds is derived from it"
            )
        return self

    def runtime(self) -> RuntimeGatewayConfig:
        """The part the gateway process reads (its ConfigMap)."""
        return RuntimeGatewayConfig(**{k: getattr(self, k) for k in RuntimeGatewayConfig.model_fields})


class SloConfig(Model):
    availability_objective: float = Field(99.9, gt=0, lt=100)


class MonitoringConfig(Model):
    # prometheus-operator: ServiceMonitors and PrometheusRules; in-process: the gateway evaluates
    # the same rules itself; off: neither.
    mode: Literal["prometheus-operator", "in-process", "off"] = "in-process"
    default_rules: bool = True
    rules: tuple[AlertRule, ...] = ()
    slo: SloConfig = SloConfig()
    webhook_url: str | None = None
    grafana_dashboard: bool = True
    # Prometheus' own duration form, written into each ServiceMonitor as it is.
    scrape_interval: str = "30s"

    @field_validator("scrape_interval")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        if isinstance(value, str) and not DURATION_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a Prometheus duration (such as 30s, 1m, 1h30m)")
        if parse_duration(value) <= 0:
            raise ValueError(f"{value!r} must be longer than zero")
        return value

    @model_validator(mode="after")
    def _templates_expand(self) -> MonitoringConfig:
        """Annotation templates are checked here, so a bad one fails at `pulumi preview`."""
        for rule in self.rules:
            for key, text in rule.annotations.items():
                try:
                    check_template(text)
                except NotInProcessError as exc:
                    # Prometheus itself has these; only the in-process evaluator lacks them.
                    if self.mode == "in-process":
                        raise ValueError(f"rules.{rule.name}.annotations.{key}: {exc} (monitoring.mode is in-process)")
                except TemplateError as exc:
                    raise ValueError(f"rules.{rule.name}.annotations.{key}: bad template {text!r}: {exc}") from None
        return self


class QuotaConfig(Model):
    """Namespace-wide ceilings (ResourceQuota) and per-container defaults (LimitRange)."""

    requests_cpu: Quantity = "8"
    requests_memory: Quantity = "16Gi"
    limits_cpu: Quantity = "16"
    limits_memory: Quantity = "32Gi"
    pods: int = Field(100, ge=1, le=INT32_MAX)
    default_request: Resources = Resources(cpu="100m", memory="128Mi")
    default_limit: Resources = Resources(cpu="500m", memory="512Mi")

    @field_validator("requests_cpu", "limits_cpu", mode="before")
    @classmethod
    def _is_quantity(cls, value: Any) -> str:
        return _quantity(value)

    @field_validator("requests_memory", "limits_memory", mode="before")
    @classmethod
    def _is_bytes(cls, value: Any) -> str:
        return _bytes(value)


class KubernetesConfig(Model):
    """Which cluster to deploy to, or a directory to render manifests into (no cluster)."""

    render_dir: str | None = None
    context: str | None = None
    # For clusters without nodes (tests against a bare API server): don't wait for readiness.
    skip_await: bool = False
    # KEDA's CRDs are installed: clusters may scale on queue length through a ScaledObject.
    keda_installed: bool = False
    # The Kubernetes minor version the manifests target (schema validation uses it).
    version: str = Field("1.34", pattern=r"^1\.\d+$")

    @model_validator(mode="after")
    def _one_target(self) -> KubernetesConfig:
        if self.render_dir and self.context:
            raise ValueError("set either render_dir (render manifests, no cluster) or context, not both")
        return self


class ImageBuildConfig(Model):
    """Build the runtime image with pulumi-docker instead of referencing a pinned one."""

    enabled: bool = False
    repository: str = "registry.local/agent-platform/agent-runtime"
    tag: str = "dev"
    push: bool = False


class DatabaseConfig(Model):
    """A PostgreSQL the stack runs for agent state (components/database.py)."""

    name: str = Field(max_length=40, json_schema_extra={"pattern": DNS_1035_LABEL})
    image: str = Field(min_length=1)
    database: str = Field("agents", min_length=1, max_length=63)
    user: str = Field("agents", min_length=1, max_length=63)
    # The password comes from this Secret (key `password_secret_key`), never from the stack file.
    password_secret: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    password_secret_key: str = Field("password", pattern=r"^[-._a-zA-Z0-9]+$")
    port: int = Field(5432, ge=1024, le=65535)
    volume_size: Quantity = "1Gi"
    storage_class: str | None = None
    resources: ResourceSpec = ResourceSpec(requests=Resources(cpu="100m", memory="256Mi"),
                                           limits=Resources(cpu="1", memory="1Gi"))

    @field_validator("volume_size", mode="before")
    @classmethod
    def _is_quantity(cls, value: Any) -> str:
        return _bytes(value)

    @field_validator("name")
    @classmethod
    def _is_service_name(cls, value: str) -> str:
        return _service_name(value, "database name")

    @field_validator("image", mode="before")
    @classmethod
    def _is_image(cls, value: Any) -> Any:
        return _image(value) if isinstance(value, str) else value


class PlatformConfig(Model):
    """The whole stack: one namespace, its agent clusters, the gateway, monitoring, backups."""

    stack: str
    environment: Environment
    namespace: str = Field(pattern=DNS_LABEL, max_length=63)
    kubernetes: KubernetesConfig = KubernetesConfig()
    image_build: ImageBuildConfig = ImageBuildConfig()
    clusters: tuple[ClusterConfig, ...] = Field(min_length=1)
    gateway: GatewaySpec
    # Routes default to one per cluster at /<cluster name>.
    routes: tuple[RouteConfig, ...] = ()
    monitoring: MonitoringConfig = MonitoringConfig()
    backup: BackupConfig = BackupConfig()
    quota: QuotaConfig = QuotaConfig()
    # PostgreSQL servers the stack runs itself; agents and backup sources name them as hosts.
    databases: tuple[DatabaseConfig, ...] = ()

    @field_validator("clusters")
    @classmethod
    def _unique_clusters(cls, clusters: tuple[ClusterConfig, ...]) -> tuple[ClusterConfig, ...]:
        names = [c.name for c in clusters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate cluster name(s): {', '.join(dupes)}")
        return clusters

    @model_validator(mode="after")
    def _cross_references(self) -> PlatformConfig:
        """Rules that span several keys; each message starts with the key path it blames."""
        names = {c.name for c in self.clusters}
        for index, route in enumerate(self.routes):
            if route.cluster not in names:
                raise ValueError(
                    f"routes[{index}].cluster ({route.cluster!r}) names no cluster "
                    f"(clusters: {', '.join(sorted(names))})"
                )
        seen_names: set[str] = set()
        seen_prefixes: dict[str, str] = {}
        for route in self.effective_routes():
            name, prefix = self.route_name(route), self.route_prefix(route)
            if name in seen_names:
                raise ValueError(f"routes: two routes are named {name!r}; give one a `name`")
            if prefix in seen_prefixes:
                raise ValueError(f"routes: {seen_prefixes[prefix]!r} and {name!r} both route {prefix!r}")
            seen_names.add(name)
            seen_prefixes[prefix] = name
        for index, rule in enumerate(self.monitoring.rules):
            if rule.route is not None and rule.route not in seen_names:
                raise ValueError(
                    f"monitoring.rules[{index}].route ({rule.route!r}) names no route "
                    f"(routes: {', '.join(sorted(seen_names))})"
                )
        services = {"gateway", *names, *(L.headless_service_name(n) for n in names)}
        for index, db in enumerate(self.databases):
            if db.name in services:
                raise ValueError(f"databases[{index}].name ({db.name!r}) is already a Service of this stack")
            services.add(db.name)
        if self.backup.enabled and not self.backup.sources:
            raise ValueError("backup.sources: backup.enabled needs at least one source")
        source_names = [s.name for s in self.backup.sources]
        if len(set(source_names)) != len(source_names):
            raise ValueError(f"backup.sources: duplicate source names in {source_names}")
        if self.environment in ("staging", "prod") and self.backup.enabled and not self.backup.drill.enabled:
            raise ValueError(f"backup.drill.enabled must be true in {self.environment}: an untested backup is a hope")
        if (self.environment in ("staging", "prod") and self.backup.enabled and self.monitoring.mode != "off"
                and not self.backup.pushgateway_url):
            raise ValueError(
                f"backup.pushgateway_url must be set in {self.environment}: backup and drill Jobs push the "
                "metrics the backup alerts read there (a Job's pod is gone before Prometheus could scrape it)"
            )
        for cluster in self.clusters:
            queue = cluster.autoscaling.queue if cluster.autoscaling else None
            if queue is not None and queue.source == "keda" and not self.kubernetes.keda_installed:
                raise ValueError(
                    f"clusters.{cluster.name}.autoscaling.queue.source is 'keda' "
                    "but kubernetes.keda_installed is false"
                )
        return self

    @model_validator(mode="after")
    def _route_deadlines(self) -> PlatformConfig:
        """A route must let its cluster's longest run finish, unless it says it will not."""
        clusters = {c.name: c for c in self.clusters}
        for index, route in enumerate(self.routes):
            cluster = clusters.get(route.cluster)
            if cluster is None or route.short_deadline:
                continue
            for key in ("deadline_seconds", "timeout_seconds"):
                value = getattr(route, key)
                if value is not None and value < cluster.max_run_seconds:
                    raise ValueError(
                        f"routes[{index}].{key} ({value:g}) is shorter than clusters.{cluster.name}.max_run_seconds "
                        f"({cluster.max_run_seconds}): runs would be cut; raise it or set short_deadline: true"
                    )
        return self

    @model_validator(mode="after")
    def _route_rewrites(self) -> PlatformConfig:
        for index, route in enumerate(self.routes):
            if (problem := prefix_rewrite_problem(self.route_prefix(route), route.prefix_rewrite)) is not None:
                raise ValueError(f"routes[{index}]: {problem}")
        return self

    @model_validator(mode="after")
    def _environment_rules(self) -> PlatformConfig:
        """What staging and prod demand beyond the types: pinned images, no single replicas."""
        if self.environment in ("staging", "prod"):
            images = [(f"clusters.{c.name}.image", c.image) for c in self.clusters]
            for path, image in [*images, ("gateway.image", self.gateway.image)]:
                if (problem := pinning_problem(image)) is not None:
                    raise ValueError(
                        f"{path} ({image!r}) must be pinned to a version or digest in {self.environment}: it {problem}"
                    )
        if self.environment == "prod":
            for cluster in self.clusters:
                if cluster.autoscaling is not None:
                    path, lowest = f"clusters.{cluster.name}.autoscaling.min_instances", cluster.autoscaling.min_instances
                else:
                    path, lowest = f"clusters.{cluster.name}.replicas", cluster.replicas
                if lowest < 2:
                    raise ValueError(f"{path} ({lowest}) must be >= 2 in prod: one replica is an outage waiting")
            if self.gateway.replicas < 2:
                raise ValueError(f"gateway.replicas ({self.gateway.replicas}) must be >= 2 in prod")
            if self.gateway.autoscaling is not None and self.gateway.autoscaling.min_instances < 2:
                raise ValueError(
                    f"gateway.autoscaling.min_instances ({self.gateway.autoscaling.min_instances}) must be >= 2 "
                    "in prod: the HPA would scale the gateway, the single door to every agent, down to one pod"
                )
        return self

    @model_validator(mode="after")
    def _kubernetes_limits(self) -> PlatformConfig:
        """Values the API server would reject, or that would be created and never work."""
        backup = self.backup
        schedules = [("backup.schedule", backup.schedule), ("backup.drill.schedule", backup.drill.schedule)]
        for source in backup.sources:
            if source.wal_archiving.enabled:
                schedules.append((f"backup.sources.{source.name}.wal_archiving.base_backup_schedule",
                                  source.wal_archiving.base_backup_schedule))
        for path, schedule in schedules:
            if (problem := schedule_problem(schedule)) is not None:
                raise ValueError(f"{path}: {problem}")
        for source in backup.sources:
            prefixes = ["backup-", "restore-", *(["basebackup-"] if source.wal_archiving.enabled else [])]
            longest = max((f"{prefix}{source.name}" for prefix in prefixes), key=len)
            if len(longest) > CRONJOB_NAME_MAX:
                raise ValueError(
                    f"backup.sources.{source.name}.name is too long: its CronJob {longest!r} would have "
                    f"{len(longest)} characters, Kubernetes allows {CRONJOB_NAME_MAX} "
                    f"(so the source name may have {CRONJOB_NAME_MAX - len(longest) + len(source.name)})"
                )
        sizes = [("backup.target.size", backup.target.size)] if backup.target.kind == "pvc" else []
        sizes += [(f"backup.sources.{s.name}.wal_archiving.volume_size", s.wal_archiving.volume_size)
                  for s in backup.sources if s.wal_archiving.enabled]
        for path, size in sizes:
            try:
                _bytes(size)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        for index, route in enumerate(self.routes):
            for key in ("deadline_seconds", "timeout_seconds"):
                value = getattr(route, key)
                if value is not None and not value <= MAX_RUN_LIMIT_SECONDS:
                    raise ValueError(
                        f"routes[{index}].{key} ({value:g}) must be at most {MAX_RUN_LIMIT_SECONDS} (a day): "
                        "the gateway's terminationGracePeriodSeconds is derived from it"
                    )
        for route in self.effective_routes():
            if not route.health_check.path.startswith("/"):
                raise ValueError(
                    f"routes.{self.route_name(route)}.health_check.path ({route.health_check.path!r}) "
                    "must start with '/'"
                )
        pods = [(f"clusters.{c.name}", c.resources) for c in self.clusters]
        pods.append(("gateway", self.gateway.resources))
        for path, spec in pods:
            for kind, ceiling_key in (("requests", "requests_cpu"), ("requests", "requests_memory"),
                                      ("limits", "limits_cpu"), ("limits", "limits_memory")):
                resource = ceiling_key.split("_")[1]
                wanted = getattr(getattr(spec, kind), resource)
                ceiling = getattr(self.quota, ceiling_key)
                if parse_quantity(wanted) > parse_quantity(ceiling):
                    raise ValueError(
                        f"quota.{ceiling_key} ({ceiling}) is smaller than one pod's {resource} {kind} "
                        f"({path}.resources.{kind}.{resource}: {wanted}): no such pod could ever start"
                    )
        return self

    def effective_routes(self) -> tuple[RouteConfig, ...]:
        return self.routes or tuple(RouteConfig(cluster=c.name) for c in self.clusters)

    def cluster(self, name: str) -> ClusterConfig:
        return next(c for c in self.clusters if c.name == name)

    @staticmethod
    def route_name(route: RouteConfig) -> str:
        return route.name or route.cluster

    @staticmethod
    def route_prefix(route: RouteConfig) -> str:
        return route.path_prefix or f"/{route.cluster}"


# --- reading the stack ------------------------------------------------------------------------

TOP_LEVEL_KEYS = tuple(f for f in PlatformConfig.model_fields if f != "stack")


def _named_path(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """`("clusters", 0, "autoscaling")` -> `clusters.workers.autoscaling` using the list item's name."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts.append(f".{name}" if name else f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # Unions add the tried member's type to the location; drop those segments.
    loc = tuple(p for p in loc if p not in ("int", "str", "constrained-str", "float", "bool", "none"))
    path = _named_path(raw, loc)
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; stacks/schema.json lists the keys)"
    elif error["type"] == "missing":
        msg = "is required"
    elif "input" in error and error["type"].endswith(("_type", "_parsing")):
        msg = f"{msg}, got {json.dumps(error['input'], default=str)}"
    if "->" in msg:
        msg = msg.replace("->", "")
    return f"{PROJECT}:{path}: {msg}" if path else f"{PROJECT}:{msg}"


def validate_platform(raw: dict[str, Any], stack: str, source: str | None = None) -> PlatformConfig:
    """Validate raw stack values; a problem becomes one StackConfigError naming file and keys."""
    source = source or f"stacks/Pulumi.{stack}.yaml"
    try:
        return PlatformConfig.model_validate({**raw, "stack": stack})
    except ValidationError as exc:
        problems = [_describe(e, raw) for e in exc.errors()]
        # One message, even when several values are wrong; each names its key path.
        raise StackConfigError(f"{source}: " + "; ".join(dict.fromkeys(problems))) from None


def load_platform_config() -> PlatformConfig:
    """Read every `agent-platform:*` key of the current stack and validate them together."""
    import pulumi
    import pulumi.runtime.config as runtime_config

    stack = pulumi.get_stack()
    config = pulumi.Config(PROJECT)
    prefix = f"{PROJECT}:"
    # Every key the engine passed, so that a misspelt top-level key is reported, not ignored.
    all_keys = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    present = sorted(k[len(prefix):] for k in all_keys if k.startswith(prefix))
    raw: dict[str, Any] = {}
    source = f"stacks/Pulumi.{stack}.yaml"
    for key in present:
        if key not in TOP_LEVEL_KEYS:
            raise StackConfigError(
                f"{source}: {prefix}{key}: unknown key (known keys: {', '.join(TOP_LEVEL_KEYS)})"
            )
        text = config.get(key)
        try:
            raw[key] = json.loads(text) if text is not None else None
        except json.JSONDecodeError:
            raw[key] = text  # a plain string value such as `environment: prod`
    return validate_platform(raw, stack, source)
