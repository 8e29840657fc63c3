"""The contract between the declarative side and the runtime.

These pydantic models describe everything the runtime reads: the gateway's routes (balancing,
circuit breaking, retries, outlier ejection, health checks), alert rules evaluated in-process
and the backup sources and targets. `components/` imports them to write the gateway's
ConfigMap, so one setting is defined once and cannot drift between the two sides.

Names and defaults follow the anchors operators already know: resilience4j for the breaker,
Envoy for outlier detection, Finagle/Linkerd for retry budgets.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

__all__ = [
    "AlertRule",
    "AlertingConfig",
    "BackupConfig",
    "BackupSource",
    "BackupTarget",
    "BalancerConfig",
    "BreakerConfig",
    "ConfigError",
    "Discovery",
    "HealthCheckConfig",
    "GatewayConfig",
    "OutlierConfig",
    "RUNBOOK_BASE_URL",
    "RestoreDrillConfig",
    "RetryConfig",
    "Route",
    "RouteSettings",
    "RuntimeConfig",
    "StaticEndpoint",
    "WalArchiving",
    "format_validation_error",
    "load_json_config",
    "load_runtime_config",
]


# Each alert's runbook_url is this plus `#<alertname in lower case>` (docs/runbooks.md).
RUNBOOK_BASE_URL = "https://github.com/agent-platform/agent-platform/blob/main/docs/runbooks.md"


class Model(BaseModel):
    """Strict base: an unknown key is an error, never a silently ignored typo."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ConfigError(ValueError):
    """One clear message naming the file and the key path of the first bad value(s)."""


# Prometheus' duration form (`90s`, `5m`, `1h30m`, `1d`, `250ms`), units in decreasing order.
DURATION_PATTERN = _DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(value: Any) -> Any:
    """`"1h30m"` -> 5400.0 (Prometheus' duration form); numbers (seconds) pass as they are.
    Anything else is left to the field's own type check, which names what it got."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    match = _DURATION.match(text)
    if text and match and any(match.groups()):
        return sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS, strict=True) if n)
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a duration: give seconds (90) or Prometheus' form (90s, 5m, 1h30m, 1d)"
        ) from None


Duration = BeforeValidator(parse_duration)


def duration_schema(number: dict[str, Any]) -> WithJsonSchema:
    """The stack schema of a duration: the number of seconds, or Prometheus' form."""
    text = {"type": "string", "pattern": DURATION_PATTERN.pattern, "description": "90s, 5m, 1h30m, 1d"}
    return WithJsonSchema({"anyOf": [number, text]})
# Every duration of the stack files and the runtime config: seconds, or `5m`, `1h30m`.
Seconds = Annotated[float, Duration, Field(ge=0), duration_schema({"type": "number", "minimum": 0})]
PositiveSeconds = Annotated[float, Duration, Field(gt=0), duration_schema({"type": "number", "exclusiveMinimum": 0})]
Percent = Annotated[float, Field(ge=0, le=100)]

Strategy = Literal[
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "least_response_time",
    "p2c_ewma",
    "consistent_hash",
]


class BalancerConfig(Model):
    """How one route spreads requests over its endpoints."""

    strategy: Strategy = "p2c_ewma"
    # Consistent hashing keys on this header so one conversation keeps its replica.
    hash_header: str = "x-conversation-id"
    # Bounded load: no endpoint gets more than (1 + bounded_load_epsilon) x the average.
    bounded_load_epsilon: float = Field(0.25, gt=0, le=10)
    # New endpoints ramp up their weight over this window (Envoy's slow_start_window).
    slow_start_seconds: Seconds = 30.0
    # Below this share of healthy endpoints, balance over all of them (Envoy's panic threshold).
    panic_threshold_percent: Percent = 50.0
    # Peak-EWMA decay time for least_response_time and p2c_ewma (Finagle's default is 10 s).
    ewma_decay_seconds: PositiveSeconds = 10.0


class BreakerConfig(Model):
    """Circuit breaker settings with resilience4j's names and defaults."""

    enabled: bool = True
    sliding_window_type: Literal["count_based", "time_based"] = "count_based"
    # Calls (count_based) or seconds (time_based).
    sliding_window_size: int = Field(100, ge=1)
    minimum_number_of_calls: int = Field(20, ge=1)
    failure_rate_threshold: float = Field(50.0, gt=0, le=100)
    slow_call_rate_threshold: float = Field(100.0, gt=0, le=100)
    slow_call_duration_threshold: PositiveSeconds = 60.0
    wait_duration_in_open_state: PositiveSeconds = 60.0
    permitted_number_of_calls_in_half_open_state: int = Field(10, ge=1)


class RetryConfig(Model):
    """Retries with full-jitter exponential backoff, bounded by a budget and the deadline."""

    max_attempts: int = Field(3, ge=1, le=10)
    base_delay_seconds: PositiveSeconds = 0.025
    max_delay_seconds: PositiveSeconds = 1.0
    # Retry budget (Finagle/Linkerd): retries stay under this ratio of requests ...
    budget_ratio: float = Field(0.2, ge=0, le=1)
    # ... plus this many retries per second, so low traffic can still retry.
    budget_min_per_second: float = Field(10.0, ge=0)
    budget_ttl_seconds: PositiveSeconds = 10.0
    # Only these methods are retried after the request may have reached the agent.
    idempotent_methods: tuple[str, ...] = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
    # Status codes that are safe to retry for any method: the agent refused the work.
    retryable_statuses: tuple[int, ...] = (502, 503, 504)

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryConfig:
        if self.max_delay_seconds < self.base_delay_seconds:
            raise ValueError(
                f"max_delay_seconds ({self.max_delay_seconds}) must be >= "
                f"base_delay_seconds ({self.base_delay_seconds})"
            )
        return self


class OutlierConfig(Model):
    """Passive health: eject endpoints that keep failing (Envoy outlier detection names)."""

    consecutive_5xx: int = Field(5, ge=1)
    consecutive_gateway_failure: int = Field(5, ge=1)
    base_ejection_time_seconds: PositiveSeconds = 30.0
    max_ejection_time_seconds: PositiveSeconds = 300.0
    max_ejection_percent: Percent = 50.0
    # Envoy's max_ejection_time_jitter: a random 0..jitter added to each ejection, so endpoints
    # ejected together (one bad deploy) do not all come back in the same instant.
    max_ejection_time_jitter_seconds: Seconds = 0.0


class HealthCheckConfig(Model):
    """Active health checks of each endpoint's /healthz."""

    path: str = "/healthz"
    interval_seconds: PositiveSeconds = 5.0
    timeout_seconds: PositiveSeconds = 1.0
    unhealthy_threshold: int = Field(3, ge=1)
    healthy_threshold: int = Field(2, ge=1)


class StaticEndpoint(Model):
    host: str
    port: int = Field(ge=1, le=65535)
    weight: int = Field(1, ge=1, le=1000)
    capabilities: tuple[str, ...] = ()


class Discovery(Model):
    """Where a route's endpoints come from: the headless Service's DNS records, or a list."""

    kind: Literal["dns", "static"] = "dns"
    # dns: the headless Service name (resolved to one A record per ready pod).
    service: str | None = None
    port: int = Field(8080, ge=1, le=65535)
    refresh_seconds: PositiveSeconds = 5.0
    endpoints: tuple[StaticEndpoint, ...] = ()
    # Capabilities every endpoint of a DNS-discovered cluster offers.
    capabilities: tuple[str, ...] = ()

    @field_validator("service")
    @classmethod
    def _dns_name(cls, v: str | None) -> str | None:
        # What the resolver would refuse (with a UnicodeError from the IDNA codec) is refused here,
        # where it names the key, instead of at the first lookup.
        if v is None:
            return v
        name = v.rstrip(".")
        if not name or len(name) > 253:
            raise ValueError("a DNS name has 1 to 253 characters")
        for label in name.split("."):
            if not 1 <= len(label) <= 63:
                raise ValueError(f"DNS label {label[:70]!r} must have 1 to 63 characters")
        try:
            name.encode("idna")
        except UnicodeError as exc:
            raise ValueError(f"not a valid DNS name: {exc}") from None
        return v

    @model_validator(mode="after")
    def _complete(self) -> Discovery:
        if self.kind == "dns" and not self.service:
            raise ValueError("dns discovery needs `service` (the headless Service name)")
        if self.kind == "static" and not self.endpoints:
            raise ValueError("static discovery needs at least one entry in `endpoints`")
        return self


class RouteSettings(Model):
    """How one route treats its requests: capabilities, per-try timeout and resilience settings.

    The stack's routes (components/config.py `RouteConfig`) inherit these fields, so the setting
    a stack file names is the one the gateway reads.
    """

    required_capabilities: tuple[str, ...] = ()
    # Per-try timeout, until the agent's response head arrives; the request's deadline bounds it.
    timeout_seconds: PositiveSeconds = 30.0
    # The request's deadline (all tries, until the response head); unset: gateway.default_deadline_seconds.
    # A client's deadline header can only shorten it. Stack files default it to the cluster's max_run_seconds.
    deadline_seconds: PositiveSeconds | None = None
    # Once the head is relayed a (streamed) body is bounded by idle time, not by the deadline:
    # a long agent run may stream for as long as it keeps sending (Envoy's stream_idle_timeout, 5 min).
    stream_idle_timeout_seconds: PositiveSeconds = 300.0
    # Envoy's prefix_rewrite: the matched path_prefix is replaced by this before forwarding
    # (`/v1/chat/` -> `/` sends `/v1/chat/run` as `/run`); unset, the path goes as it came.
    prefix_rewrite: str | None = Field(None, pattern=r"^/")
    balancer: BalancerConfig = BalancerConfig()
    breaker: BreakerConfig = BreakerConfig()
    retry: RetryConfig = RetryConfig()
    outlier: OutlierConfig = OutlierConfig()
    health_check: HealthCheckConfig = HealthCheckConfig()


def prefix_rewrite_problem(path_prefix: str, prefix_rewrite: str | None) -> str | None:
    """Why this rewrite would glue path segments together, or None when it is fine.

    The prefix is replaced literally, as Envoy does, so both must end in `/` or neither: `/` to
    `/api` would send `/run` as `/apirun`.
    """
    if prefix_rewrite is None or path_prefix.endswith("/") == prefix_rewrite.endswith("/"):
        return None
    return (
        f"prefix_rewrite {prefix_rewrite!r} and path_prefix {path_prefix!r} must both end in '/' or neither "
        "(the prefix is replaced literally)"
    )


class Route(RouteSettings):
    """One path prefix routed to one agent cluster."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    path_prefix: str = Field(pattern=r"^/")
    cluster: str
    discovery: Discovery

    @model_validator(mode="after")
    def _rewrite_fits(self) -> Route:
        if (problem := prefix_rewrite_problem(self.path_prefix, self.prefix_rewrite)) is not None:
            raise ValueError(problem)
        return self


class GatewayConfig(Model):
    """The gateway process: where it listens and how much it admits."""

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    # Overload: beyond this many requests in flight, shed with 503 + Retry-After.
    max_in_flight: int = Field(1000, ge=1)
    # Upper bound on any request's deadline, also the default when a client sends none.
    default_deadline_seconds: PositiveSeconds = 60.0
    deadline_header: str = "x-request-deadline-ms"
    # Envoy's admin port: /metrics, /healthz and /readyz never share the routes' listener, so a
    # route can never shadow them and breaker states and endpoint addresses are not public.
    admin_host: str = "0.0.0.0"
    admin_port: int = Field(9901, ge=0, le=65535)
    # Request line plus headers beyond this answer 431 (Envoy's max_request_headers_kb is 60).
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024)
    # A request body beyond this answers 413 (nginx's client_max_body_size).
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=0)
    # nginx's client_header_timeout: the whole head must arrive within this (slowloris).
    client_header_timeout_seconds: PositiveSeconds = 10.0
    # nginx's client_body_timeout: the longest pause between two reads of a request body ...
    client_body_timeout_seconds: PositiveSeconds = 10.0
    # ... and, on average, at least this rate, so a trickling body cannot hold a slot for long.
    client_body_min_bytes_per_second: int = Field(1024, ge=0)
    # Idle keep-alive connections from clients are closed after this (nginx keepalive_timeout 75 s).
    client_keepalive_seconds: PositiveSeconds = 75.0

    @model_validator(mode="after")
    def _admin_apart(self) -> GatewayConfig:
        if self.admin_port and self.admin_port == self.port:
            raise ValueError(
                "`admin_port` must differ from `port`: the admin endpoints never share the routes' listener"
            )
        return self


Signal = Literal[
    "error_rate",
    "availability",
    "latency_p99_seconds",
    "queue_length",
    "queue_oldest_age_seconds",
    "breaker_open",
    "endpoints_ejected",
    "backup_age_seconds",
    "restore_drill_age_seconds",
    "restore_drill_rto_seconds",
    "restore_drill_rpo_seconds",
]

Comparison = Literal[">", ">=", "<", "<=", "==", "!="]


class AlertRule(Model):
    """A typed alert rule: a named signal compared with a threshold for a while.

    The same rule becomes a PrometheusRule (components/monitoring.py) or is evaluated in-process
    (agent_runtime.alerts) with Prometheus semantics: inactive, pending for `for`, firing, and
    kept firing for `keep_firing_for` after the condition clears.
    """

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    signal: Signal
    comparison: Comparison = ">"
    threshold: float
    for_seconds: Seconds = Field(300.0, alias="for")
    keep_firing_for_seconds: Seconds = Field(0.0, alias="keep_firing_for")
    # Rate and ratio signals are computed over this window.
    window_seconds: PositiveSeconds = 300.0
    # Restrict to one route (gateway signals) or cluster; None means per route, all routes.
    route: str | None = None
    severity: Literal["critical", "warning", "info"] = "warning"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    # Multi-window alerting (Google SRE workbook, ch. 5): the condition must also hold over this
    # shorter window, so the alert resolves minutes after a burn stops instead of hours.
    short_window_seconds: PositiveSeconds | None = None

    @model_validator(mode="after")
    def _short_window_shorter(self) -> AlertRule:
        if self.short_window_seconds is not None and self.short_window_seconds >= self.window_seconds:
            raise ValueError(
                f"short_window_seconds ({self.short_window_seconds}) must be < window_seconds ({self.window_seconds})"
            )
        return self


class AlertingConfig(Model):
    """Alert rules and where in-process notifications go (Alertmanager webhook format)."""

    rules: tuple[AlertRule, ...] = ()
    webhook_url: str | None = None
    evaluation_interval_seconds: PositiveSeconds = 15.0
    group_by: tuple[str, ...] = ("alertname",)
    # Alertmanager's names: the receiver named in each notification, and how often a group
    # that is still firing and unchanged is notified again.
    receiver: str = "agent-runtime"
    external_url: str = ""
    repeat_interval_seconds: PositiveSeconds = 4 * 3600.0
    # Where the standalone evaluator (`python -m agent_runtime alerts`) reads samples from.
    metrics_urls: tuple[str, ...] = ()
    # Each alert's runbook_url annotation is this plus `#<alertname in lower case>`.
    runbook_base_url: str = RUNBOOK_BASE_URL

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[AlertRule, ...]) -> tuple[AlertRule, ...]:
        seen: set[tuple[str, str | None]] = set()
        for rule in rules:
            key = (rule.name, rule.route)
            if key in seen:
                raise ValueError(f"duplicate alert rule {rule.name!r} for route {rule.route!r}")
            seen.add(key)
        return rules


class WalArchiving(Model):
    """Continuous WAL archiving of a PostgreSQL source, for point-in-time recovery.

    A receiver (`python -m agent_runtime wal-receive`, PostgreSQL's pg_receivewal on a
    replication slot) streams the WAL onto its own volume as it is written, and for an s3 target
    pushes what it received every `push_interval_seconds`; base backups (pg_basebackup) follow
    `base_backup_schedule`. See agent_runtime.recovery_wal.
    """

    enabled: bool = False
    # s3 targets: how often the received WAL is pushed; the RPO is about this plus one upload.
    push_interval_seconds: Annotated[float, Duration] = Field(15.0, gt=0, le=60)
    # Base backups to keep (in the target); WAL older than the oldest one kept is not needed.
    base_backup_schedule: str = "0 2 * * *"
    base_retention_count: int = Field(3, ge=1)
    # The receiver's volume (a PersistentVolumeClaim the stack creates and keeps).
    volume_size: str = "10Gi"
    storage_class: str | None = None


class BackupSource(Model):
    """One piece of agent state to back up."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    kind: Literal["postgres", "files"]
    # postgres: connection; the password comes from a Kubernetes Secret, never from config.
    host: str | None = None
    port: int = Field(5432, ge=1, le=65535)
    database: str | None = None
    user: str | None = None
    password_secret: str | None = None
    password_secret_key: str = "password"
    # files: a PersistentVolumeClaim and the directory inside it.
    claim_name: str | None = None
    path: str = "/"
    # files: where the backup Job mounts the claim (default /sources/<name>).
    mount_path: str | None = None
    # postgres: also record per-table row counts and content checksums in the manifest,
    # read in the dump's own snapshot, so a restore drill can prove the data came back.
    table_checksums: bool = True
    # postgres: continuous WAL archiving for point-in-time recovery (RPO under a minute).
    wal_archiving: WalArchiving = WalArchiving()

    @model_validator(mode="after")
    def _complete(self) -> BackupSource:
        if self.kind == "postgres":
            missing = [f for f in ("host", "database", "user") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"postgres source needs {', '.join(missing)}")
            # PostgreSQL silently truncates longer names (NAMEDATALEN - 1), possibly onto another database.
            if self.database is not None and len(self.database.encode()) > 63:
                raise ValueError(
                    f"database {self.database!r} is {len(self.database.encode())} bytes; PostgreSQL allows 63"
                )
        if self.kind == "files" and not self.claim_name:
            raise ValueError("files source needs claim_name (the PersistentVolumeClaim to read)")
        if self.kind != "postgres" and self.wal_archiving.enabled:
            raise ValueError("wal_archiving is for postgres sources only")
        return self


class BackupTarget(Model):
    """Where backups are written: a PersistentVolumeClaim or an S3-compatible bucket.

    s3: a restic repository at `<endpoint>/<bucket>/<prefix>`, encrypted client-side. Secrets are
    named, never given: `credentials_secret` holds AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
    `encryption_secret` holds RESTIC_PASSWORD (agent_runtime.recovery_s3).
    """

    kind: Literal["pvc", "s3"] = "pvc"
    claim_name: str | None = None
    size: str = "20Gi"
    storage_class: str | None = None
    endpoint: str | None = None
    bucket: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    prefix: str = Field("backups", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,200}$")
    region: str = "us-east-1"
    credentials_secret: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    encryption_secret: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    # pvc: where backup, restore and drill Jobs mount the claim.
    mount_path: str = "/backups"

    @model_validator(mode="after")
    def _complete(self) -> BackupTarget:
        if self.kind == "s3":
            missing = [
                f for f in ("endpoint", "bucket", "credentials_secret", "encryption_secret") if not getattr(self, f)
            ]
            if missing:
                raise ValueError(f"s3 target needs {', '.join(missing)}")
            assert self.endpoint
            parts = urllib.parse.urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"endpoint {self.endpoint!r} must be an http(s) URL with a host")
            if parts.username or parts.password or parts.query:
                raise ValueError("endpoint must not carry credentials or a query: name a Secret in credentials_secret")
        return self


class RestoreDrillConfig(Model):
    """A scheduled restore of the newest backup into a scratch database, measured."""

    enabled: bool = False
    schedule: str = "30 4 * * *"
    rto_target_seconds: PositiveSeconds = 900.0
    rpo_target_seconds: PositiveSeconds = 86400.0
    # The scratch PostgreSQL the drill restores into (a sidecar of the drill Job), and the
    # non-root user its image runs as (999 in the official image).
    scratch_image: str = Field("postgres:15.10-bookworm", min_length=1)
    scratch_uid: int = Field(999, ge=1, le=2147483647)


class BackupConfig(Model):
    """Scheduled backups of agent state, retention, and the restore drill that proves them."""

    enabled: bool = False
    schedule: str = "0 3 * * *"
    retention_count: int = Field(7, ge=1)
    # s3 targets: also forget backups older than this (never the newest), in the store itself.
    retention_max_age_days: float | None = Field(None, gt=0)
    compression_level: int = Field(6, ge=0, le=9)
    sources: tuple[BackupSource, ...] = ()
    target: BackupTarget = BackupTarget()
    drill: RestoreDrillConfig = RestoreDrillConfig()
    # Where the backup and drill Jobs push their metrics (Prometheus' answer for batch jobs: a
    # Job's pod is gone before any scrape). None: they push nowhere, and say so in their log.
    pushgateway_url: str | None = None

    @field_validator("pushgateway_url")
    @classmethod
    def _pushgateway(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"pushgateway_url {url!r} must be an http(s) URL with a host")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("pushgateway_url must not carry credentials, a query or a fragment")
        return url


class RuntimeConfig(Model):
    """What the gateway process reads from its mounted ConfigMap (`runtime.json`)."""

    gateway: GatewayConfig = GatewayConfig()
    routes: tuple[Route, ...]
    alerts: AlertingConfig = AlertingConfig()

    @model_validator(mode="after")
    def _routes_distinct(self) -> RuntimeConfig:
        names = [r.name for r in self.routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate route names: {', '.join(dupes)}")
        prefixes = [r.path_prefix for r in self.routes]
        dupes = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if dupes:
            raise ValueError(f"duplicate route path_prefix: {', '.join(dupes)}")
        return self


def _loc(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def format_validation_error(err: ValidationError, source: str) -> str:
    """Render a pydantic error as one message: `source: key.path: problem` per bad value."""
    lines = []
    for e in err.errors():
        path = _loc(tuple(p for p in e["loc"] if p not in ("function-after",)))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}" if path else msg)
    return f"{source}: " + "; ".join(lines)


ModelT = TypeVar("ModelT", bound=BaseModel)


def _whole(raw: Any) -> Any:
    return raw


def load_json_config(path: str | Path, model: type[ModelT], section: Callable[[Any], Any] = _whole) -> ModelT:
    """Read a JSON file and validate `section(document)` as `model`; every way it can be wrong
    (missing, unreadable, not JSON, invalid) is one ConfigError naming the file and key path."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (not UTF-8 text at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    try:
        return model.model_validate(section(raw))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None


def load_runtime_config(path: str | Path) -> RuntimeConfig:
    """Read and validate the gateway's runtime config file (its ConfigMap's runtime.json)."""
    return load_json_config(path, RuntimeConfig)
