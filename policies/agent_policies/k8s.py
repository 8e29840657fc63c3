"""Reading Kubernetes resources the way CrossGuard hands them to a policy.

pulumi_policy wraps resource properties in proxies that raise `UnknownValueError` on any value not
known during preview. Rules here never touch those proxies: `plain()` copies the properties into
ordinary dicts and lists where every unknown value (and every `None`) becomes the `UNKNOWN`
marker. A rule that meets `UNKNOWN` skips the check it cannot make, so a preview never fails on a
value that only exists after `pulumi up`. A key that is absent is absent: that is a real gap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

try:  # private in pulumi_policy, but they are the proxies the analyzer hands us.
    from pulumi_policy.proxy import _DictProxy, _ListProxy
    from pulumi_policy.secret import Secret, _DictSecretsProxy, _ListSecretsProxy

    _PROXIES: tuple = (_DictProxy, _ListProxy, _DictSecretsProxy, _ListSecretsProxy)
except ImportError:  # pragma: no cover - layout of a future pulumi_policy
    _PROXIES = ()
    Secret = None  # type: ignore[assignment,misc]

from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
)

_SENTINELS = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)


class _Unknown:
    """A value Pulumi does not know yet (during preview). Deliberately neither truthy nor falsy."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"

    def __bool__(self) -> bool:
        raise TypeError("UNKNOWN has no truth value; test `is UNKNOWN` first")


UNKNOWN = _Unknown()

# Type tokens, as the Pulumi Kubernetes provider names them.
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
REPLICASET = "kubernetes:apps/v1:ReplicaSet"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
POD = "kubernetes:core/v1:Pod"
SERVICE = "kubernetes:core/v1:Service"
NAMESPACE = "kubernetes:core/v1:Namespace"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"

# Where each workload keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    DEPLOYMENT: ("spec", "template", "spec"),
    STATEFULSET: ("spec", "template", "spec"),
    DAEMONSET: ("spec", "template", "spec"),
    REPLICASET: ("spec", "template", "spec"),
    JOB: ("spec", "template", "spec"),
    CRONJOB: ("spec", "jobTemplate", "spec", "template", "spec"),
    POD: ("spec",),
}
WORKLOAD_TYPES = frozenset(POD_SPEC_PATHS)
# Workloads whose containers are expected to run until stopped (so they need probes).
LONG_RUNNING_TYPES = frozenset({DEPLOYMENT, STATEFULSET, DAEMONSET})

# Annotations and labels this platform gives meaning to.
ANN_STATEFUL = "agent-platform.io/stateful"
ANN_MAX_RUN_SECONDS = "agent-platform.io/max-run-seconds"
ANN_STATE_SOURCES = "agent-platform.io/state-sources"
ANN_BACKUP_SOURCE = "agent-platform.io/backup-source"
ANN_RETENTION = "agent-platform.io/retention"
ANN_MONITORING = "agent-platform.io/monitoring"
LABEL_COMPONENT = "app.kubernetes.io/component"


def plain(value: Any) -> Any:
    """Copy policy properties into plain dicts/lists, turning unknowns and None into UNKNOWN."""
    if _PROXIES and isinstance(value, _PROXIES):
        value = value["__target"]  # the proxies' own escape hatch; never raises
    if Secret is not None and isinstance(value, Secret):
        value = value.value
    if value is None or value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, str):
        return UNKNOWN if value in _SENTINELS else value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in _mapping_items(value)}
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [plain(v) for v in _sequence_items(value)]
    return value


def _mapping_items(m: Mapping) -> Iterator[tuple[Any, Any]]:
    if isinstance(m, dict):
        yield from m.items()
    else:
        for k in m:
            yield k, m[k]


def _sequence_items(s: Sequence) -> Iterator[Any]:
    if isinstance(s, list):
        yield from s
    else:
        for i in range(len(s)):
            yield s[i]


def dig(obj: Any, *path: Any, default: Any = None) -> Any:
    """Walk a plain property tree. UNKNOWN anywhere on the way gives UNKNOWN; a gap gives default."""
    for key in path:
        if obj is UNKNOWN:
            return UNKNOWN
        if isinstance(obj, dict):
            if key not in obj:
                return default
            obj = obj[key]
        elif isinstance(obj, list) and isinstance(key, int):
            if not -len(obj) <= key < len(obj):
                return default
            obj = obj[key]
        else:
            return default
    return obj


def as_list(value: Any) -> Any:
    """A list property: [] when absent, UNKNOWN when unknown, [] when it is not a list at all."""
    if value is UNKNOWN:
        return UNKNOWN
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> Any:
    if value is UNKNOWN:
        return UNKNOWN
    return value if isinstance(value, dict) else {}


def as_number(value: Any) -> Any:
    """An integer-ish property: a float/int, UNKNOWN, or None when absent or not numeric.

    Numbers arrive as floats from the engine (protobuf Struct), and sometimes as strings.
    """
    if value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def fmt_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class K8sObject:
    """One Kubernetes resource of the stack, with plain properties and a name a user recognises."""

    resource_type: str
    name: str  # the Pulumi resource name
    urn: str
    props: Any  # plain() properties

    @classmethod
    def of(cls, resource: Any) -> K8sObject:
        """From a ResourceValidationArgs or a PolicyResource (same attribute names)."""
        return cls(
            resource_type=str(resource.resource_type),
            name=str(resource.name),
            urn=str(getattr(resource, "urn", "") or ""),
            props=as_dict(plain(resource.props)),
        )

    @property
    def kind(self) -> str:
        return self.resource_type.rsplit(":", 1)[-1]

    @property
    def metadata_name(self) -> Any:
        return dig(self.props, "metadata", "name")

    @property
    def namespace(self) -> Any:
        """The namespace, "" when not set (the provider's default namespace), UNKNOWN if unknown."""
        ns = dig(self.props, "metadata", "namespace")
        if ns is None:
            return ""
        return ns

    @property
    def labels(self) -> Any:
        return as_dict(dig(self.props, "metadata", "labels"))

    @property
    def annotations(self) -> Any:
        return as_dict(dig(self.props, "metadata", "annotations"))

    def annotation(self, key: str) -> Any:
        return dig(self.annotations, key)

    def label(self, key: str) -> Any:
        return dig(self.labels, key)

    @property
    def display(self) -> str:
        """E.g. `Deployment 'agents/workers-3f2a' (Pulumi name 'workers')`."""
        meta = self.metadata_name
        ns = self.namespace
        if isinstance(meta, str) and meta:
            shown = f"{ns}/{meta}" if isinstance(ns, str) and ns else meta
            suffix = "" if meta == self.name else f" (Pulumi name '{self.name}')"
            return f"{self.kind} '{shown}'{suffix}"
        return f"{self.kind} '{self.name}'"

    def identities(self) -> set[str]:
        """Every name an exemption may use for this resource."""
        names = {self.name}
        meta = self.metadata_name
        if isinstance(meta, str):
            names.add(meta)
            ns = self.namespace
            if isinstance(ns, str) and ns:
                names.add(f"{ns}/{meta}")
        return names

    def pod_spec(self) -> Any:
        path = POD_SPEC_PATHS.get(self.resource_type)
        if path is None:
            return None
        return dig(self.props, *path)

    def pod_template_labels(self) -> Any:
        path = POD_SPEC_PATHS.get(self.resource_type)
        if path is None or len(path) < 2:
            return as_dict(dig(self.props, "metadata", "labels"))
        return as_dict(dig(self.props, *path[:-1], "metadata", "labels"))


@dataclass(frozen=True)
class Container:
    """A container of a pod spec, with where it sits (containers, initContainers, ...)."""

    spec: dict
    field: str  # "containers", "initContainers" or "ephemeralContainers"
    index: int

    @property
    def is_init(self) -> bool:
        return self.field == "initContainers"

    @property
    def name(self) -> str:
        name = self.spec.get("name")
        return name if isinstance(name, str) else f"#{self.index}"

    @property
    def display(self) -> str:
        kind = {
            "containers": "container",
            "initContainers": "init container",
            "ephemeralContainers": "ephemeral container",
        }[self.field]
        return f"{kind} '{self.name}'"


def containers(pod_spec: Any, fields: tuple[str, ...] = ("initContainers", "containers")) -> list[Container]:
    """The known containers of a pod spec. Unknown lists or entries are skipped (preview)."""
    if not isinstance(pod_spec, dict):
        return []
    found: list[Container] = []
    for field in fields:
        items = as_list(pod_spec.get(field))
        if items is UNKNOWN:
            continue
        for i, c in enumerate(items):
            if isinstance(c, dict):
                found.append(Container(spec=c, field=field, index=i))
    return found


# Tri-state logic: True, False, or UNKNOWN when the answer depends on an unknown value.
def same(a: Any, b: Any) -> Any:
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    return a == b


def all3(values: list[Any]) -> Any:
    if any(v is False for v in values):
        return False
    if any(v is UNKNOWN for v in values):
        return UNKNOWN
    return True


def any3(values: list[Any]) -> Any:
    if any(v is True for v in values):
        return True
    if any(v is UNKNOWN for v in values):
        return UNKNOWN
    return False


def selector_matches(selector: Any, labels: Any, *, none_matches_all: bool = False) -> Any:
    """Does a LabelSelector select pods with these labels? True/False/UNKNOWN.

    An empty selector ({}) matches everything; an absent one matches nothing unless
    `none_matches_all` (as for a NetworkPolicy podSelector, where absent means {}).
    """
    if selector is UNKNOWN or labels is UNKNOWN:
        return UNKNOWN
    if selector is None:
        return True if none_matches_all else False
    if not isinstance(selector, dict):
        return False
    labels = labels if isinstance(labels, dict) else {}
    results: list[Any] = []
    match_labels = as_dict(selector.get("matchLabels"))
    if match_labels is UNKNOWN:
        return UNKNOWN
    for k, v in match_labels.items():
        results.append(same(labels.get(k), v) if k in labels else (UNKNOWN if v is UNKNOWN else False))
    exprs = as_list(selector.get("matchExpressions"))
    if exprs is UNKNOWN:
        return UNKNOWN
    for e in exprs:
        results.append(_expression_matches(e, labels))
    return all3(results)


def _expression_matches(expr: Any, labels: dict) -> Any:
    if not isinstance(expr, dict):
        return UNKNOWN
    key, op, values = expr.get("key"), expr.get("operator"), as_list(expr.get("values"))
    if key is UNKNOWN or op is UNKNOWN or values is UNKNOWN:
        return UNKNOWN
    if UNKNOWN in values:
        return UNKNOWN
    present = key in labels
    value = labels.get(key)
    if value is UNKNOWN:
        return UNKNOWN
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    return False


def is_empty_selector(selector: Any) -> Any:
    """True when a selector selects every pod: absent, {} or with only empty parts."""
    if selector is UNKNOWN:
        return UNKNOWN
    if selector is None:
        return True
    if not isinstance(selector, dict):
        return False
    parts = [as_dict(selector.get("matchLabels")), as_list(selector.get("matchExpressions"))]
    if any(p is UNKNOWN for p in parts):
        return UNKNOWN
    return all(len(p) == 0 for p in parts)


def redact(value: str) -> str:
    """Enough of a secret to find it, not enough to use it."""
    value = value.strip()
    return (value[:4] + "…") if len(value) > 4 else "…"
