"""Stack policies: rules that need to see several resources together.

Pairing (an HPA with its Deployment, a PDB with the pods it selects, a NetworkPolicy or a backup
CronJob with its Namespace) is tri-state: when a name, namespace or label it depends on is
unknown during preview, the pair "may match", and a rule never reports a gap it cannot prove.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pulumi_policy import Severity

from .base import StackContext, stack_policy, stack_rule
from .k8s import (
    ANN_BACKUP_SOURCE,
    ANN_MONITORING,
    ANN_RETENTION,
    ANN_STATE_SOURCES,
    ANN_STATEFUL,
    CONFIGMAP,
    CRONJOB,
    DEPLOYMENT,
    HPA,
    LABEL_COMPONENT,
    NAMESPACE,
    NETWORK_POLICY,
    PDB,
    PROMETHEUS_RULE,
    UNKNOWN,
    K8sObject,
    all3,
    any3,
    as_dict,
    as_list,
    as_number,
    dig,
    fmt_number,
    is_empty_selector,
    same,
    selector_matches,
)

DEFAULT_REPLICAS = 1
DEFAULT_HPA_MIN_REPLICAS = 1


# --- pairing helpers -------------------------------------------------------------------------

def same_namespace(a: K8sObject, b: K8sObject) -> Any:
    return same(a.namespace, b.namespace)


def in_namespace(obj: K8sObject, ns: K8sObject) -> Any:
    """Does obj live in the Namespace resource ns?"""
    return same(obj.namespace, ns.metadata_name)


def hpa_targets(hpa: K8sObject, deployment: K8sObject) -> Any:
    ref = as_dict(dig(hpa.props, "spec", "scaleTargetRef"))
    if ref is UNKNOWN:
        return UNKNOWN
    return all3(
        [
            same_namespace(hpa, deployment),
            same(ref.get("kind"), "Deployment"),
            same(ref.get("name"), deployment.metadata_name),
        ]
    )


def effective_replicas(deployment: K8sObject, hpas: list[K8sObject]) -> Any:
    """The replicas a Deployment runs at its lowest: its HPA's minReplicas, else spec.replicas."""
    matches = [(h, hpa_targets(h, deployment)) for h in hpas]
    targeting = [h for h, m in matches if m is True]
    if targeting:
        values = [as_number(dig(h.props, "spec", "minReplicas")) for h in targeting]
        if any(v is UNKNOWN for v in values):
            return UNKNOWN
        return min(DEFAULT_HPA_MIN_REPLICAS if v is None else v for v in values)
    if any(m is UNKNOWN for _, m in matches):
        return UNKNOWN
    replicas = as_number(dig(deployment.props, "spec", "replicas"))
    if replicas is UNKNOWN:
        return UNKNOWN
    return DEFAULT_REPLICAS if replicas is None else replicas


def _hpa_exempt(ctx: StackContext, hpa: K8sObject) -> bool:
    """An HPA is exempt on its own name or its target Deployment's."""
    if ctx.exempt(hpa):
        return True
    return any(hpa_targets(hpa, d) is True and ctx.exempt(d) for d in ctx.of_type(DEPLOYMENT))


# --- production-replicas ---------------------------------------------------------------------

@stack_rule("production-replicas")
def validate_production_replicas(ctx: StackContext) -> None:
    minimum = ctx.settings["minReplicas"]
    hpas = ctx.of_type(HPA)
    for hpa in hpas:
        if _hpa_exempt(ctx, hpa):
            continue
        min_r = as_number(dig(hpa.props, "spec", "minReplicas"))
        if min_r is UNKNOWN:
            continue
        shown = "minReplicas" if min_r is not None else "minReplicas (default)"
        min_r = DEFAULT_HPA_MIN_REPLICAS if min_r is None else min_r
        if min_r < minimum:
            ctx.report(
                hpa,
                f"{hpa.display}: {shown} is {fmt_number(min_r)}, below the {minimum} this stack requires, "
                f"so one pod failure or node drain takes the agents offline. Fix: set "
                f"spec.minReplicas >= {minimum}.",
            )
    for dep in ctx.of_type(DEPLOYMENT):
        if ctx.exempt(dep):
            continue
        matches = [hpa_targets(h, dep) for h in hpas]
        if any(m is True for m in matches) or any(m is UNKNOWN for m in matches):
            continue  # scaled by an HPA (judged above), or possibly so
        replicas = as_number(dig(dep.props, "spec", "replicas"))
        if replicas is UNKNOWN:
            continue
        shown = "spec.replicas" if replicas is not None else "spec.replicas (unset, so 1)"
        replicas = DEFAULT_REPLICAS if replicas is None else replicas
        if replicas < minimum:
            ctx.report(
                dep,
                f"{dep.display}: {shown} is {fmt_number(replicas)}, below the {minimum} this stack "
                f"requires, so one pod failure or node drain takes it offline. Fix: set spec.replicas "
                f">= {minimum}, or give it an HPA with minReplicas >= {minimum}.",
            )


production_replicas = stack_policy(
    validate_production_replicas,
    description="Production Deployments run at least minReplicas pods (config, default 2): "
    "spec.replicas, or the minReplicas of the HPA that scales them, and every HPA's minReplicas.",
    remediation="Raise spec.replicas or the HPA's spec.minReplicas to the configured minimum.",
    severity=Severity.HIGH,
)


# --- production-pdb --------------------------------------------------------------------------

def _int_or_percent(value: Any) -> tuple[str, float] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return ("int", float(value))
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if m:
            return ("percent", float(m.group(1)))
        if value.strip().isdigit():
            return ("int", float(value.strip()))
    return None


def pdb_allows_disruption(pdb: K8sObject, replicas: Any) -> tuple[Any, str]:
    """(True/False/UNKNOWN, why) — can at least one pod be evicted voluntarily?

    Follows the disruption controller: maxUnavailable percentages round up, minAvailable
    percentages round up too.
    """
    spec = as_dict(dig(pdb.props, "spec"))
    if spec is UNKNOWN:
        return UNKNOWN, ""
    max_u, min_a = spec.get("maxUnavailable"), spec.get("minAvailable")
    if max_u is UNKNOWN or min_a is UNKNOWN:
        return UNKNOWN, ""
    if max_u is not None:
        parsed = _int_or_percent(max_u)
        if parsed is None:
            return False, f"maxUnavailable {max_u!r} is neither a number nor a percentage"
        if parsed[1] > 0:
            return True, ""
        return False, f"maxUnavailable is {max_u}, so no pod may ever be evicted"
    if min_a is not None:
        parsed = _int_or_percent(min_a)
        if parsed is None:
            return False, f"minAvailable {min_a!r} is neither a number nor a percentage"
        if replicas is UNKNOWN:
            return UNKNOWN, ""
        kind, value = parsed
        needed = math.ceil(value * replicas / 100) if kind == "percent" else value
        if needed < replicas:
            return True, ""
        return False, (
            f"minAvailable {min_a} with {fmt_number(replicas)} replica(s) leaves no pod that may be "
            f"evicted, so node drains and cluster upgrades hang"
        )
    return False, "sets neither maxUnavailable nor minAvailable"


@stack_rule("production-pdb")
def validate_production_pdb(ctx: StackContext) -> None:
    pdbs = ctx.of_type(PDB)
    hpas = ctx.of_type(HPA)
    for dep in ctx.of_type(DEPLOYMENT):
        if ctx.exempt(dep):
            continue
        labels = dep.pod_template_labels()
        selecting: list[K8sObject] = []
        maybe = False
        for pdb in pdbs:
            match = all3(
                [same_namespace(pdb, dep), selector_matches(dig(pdb.props, "spec", "selector"), labels)]
            )
            if match is True:
                selecting.append(pdb)
            elif match is UNKNOWN:
                maybe = True
        if not selecting:
            if not maybe:
                ctx.report(
                    dep,
                    f"{dep.display} has no PodDisruptionBudget selecting its pods, so a node drain may "
                    f"evict all of them at once. Fix: add a policy/v1 PodDisruptionBudget in its "
                    f"namespace whose selector matches its pod labels, with maxUnavailable: 1.",
                )
            continue
        if len(selecting) > 1:
            names = ", ".join(p.display for p in selecting)
            ctx.report(
                dep,
                f"{dep.display} is selected by {len(selecting)} PodDisruptionBudgets ({names}); the "
                f"eviction API refuses to evict pods covered by more than one, so drains stall. "
                f"Fix: keep exactly one PDB per Deployment.",
            )
            continue
        pdb = selecting[0]
        if ctx.exempt(pdb):
            continue
        allowed, why = pdb_allows_disruption(pdb, effective_replicas(dep, hpas))
        if allowed is False:
            ctx.report(
                pdb,
                f"{pdb.display} (for {dep.display}) allows no disruption: {why}. Fix: use "
                f"maxUnavailable: 1 (or a minAvailable below the replica count).",
            )


production_pdb = stack_policy(
    validate_production_pdb,
    description="Every production Deployment has exactly one PodDisruptionBudget selecting its pods, and "
    "it allows some disruption (maxUnavailable >= 1, or minAvailable below the replica count), so "
    "voluntary evictions keep capacity without blocking node drains.",
    remediation="Add one PodDisruptionBudget per Deployment with the pod labels as selector and "
    "maxUnavailable: 1.",
)


# --- stateful-agents-not-autoscaled ----------------------------------------------------------

@stack_rule("stateful-agents-not-autoscaled")
def validate_stateful_agents_not_autoscaled(ctx: StackContext) -> None:
    hpas = ctx.of_type(HPA)
    for dep in ctx.of_type(DEPLOYMENT):
        stateful = dep.annotation(ANN_STATEFUL)
        if not (isinstance(stateful, str) and stateful.strip().lower() == "true") or ctx.exempt(dep):
            continue
        for hpa in hpas:
            if hpa_targets(hpa, dep) is True:
                ctx.report(
                    hpa,
                    f"{hpa.display} autoscales {dep.display}, a stateful agent ({ANN_STATEFUL}: \"true\"): "
                    f"scaling in drops the conversations its pods hold. Fix: delete the HPA and size the "
                    f"Deployment with spec.replicas (or make the agent stateless and drop the annotation).",
                )
        replicas = as_number(dig(dep.props, "spec", "replicas"))
        if isinstance(replicas, (int, float)) and replicas < 1:
            ctx.report(
                dep,
                f"{dep.display} is a stateful agent scaled to {fmt_number(replicas)} replicas, which "
                f"discards its state. Fix: keep spec.replicas >= 1.",
            )


stateful_agents_not_autoscaled = stack_policy(
    validate_stateful_agents_not_autoscaled,
    description=f"Deployments annotated {ANN_STATEFUL}: \"true\" are never targeted by an HPA and never "
    "scaled to 0, because their pods hold agent state that scaling would lose.",
    remediation="Remove the HPA of a stateful agent and keep spec.replicas >= 1.",
    severity=Severity.HIGH,
)


# --- namespace-default-deny ------------------------------------------------------------------

def is_default_deny_ingress(np: K8sObject) -> Any:
    spec = as_dict(dig(np.props, "spec"))
    if spec is UNKNOWN:
        return UNKNOWN
    selects_all = is_empty_selector(spec.get("podSelector"))
    types = spec.get("policyTypes")
    if types is UNKNOWN:
        has_ingress_type: Any = UNKNOWN
    elif types is None:
        has_ingress_type = True  # Kubernetes defaults policyTypes to ["Ingress"] (+Egress if egress rules)
    else:
        has_ingress_type = any3([same(t, "Ingress") for t in as_list(types)])
    ingress = as_list(spec.get("ingress"))
    no_rules = UNKNOWN if ingress is UNKNOWN else len(ingress) == 0
    return all3([selects_all, has_ingress_type, no_rules])


@stack_rule("namespace-default-deny")
def validate_namespace_default_deny(ctx: StackContext) -> None:
    policies = ctx.of_type(NETWORK_POLICY)
    for ns in ctx.of_type(NAMESPACE):
        if ctx.exempt(ns) or not isinstance(ns.metadata_name, str):
            continue
        verdict = any3([all3([in_namespace(np, ns), is_default_deny_ingress(np)]) for np in policies])
        if verdict is False:
            ctx.report(
                ns,
                f"{ns.display} has no default-deny NetworkPolicy, so any pod in the cluster can reach "
                f"its agents. Fix: add a NetworkPolicy in namespace '{ns.metadata_name}' with "
                f"podSelector: {{}}, policyTypes: [Ingress] and no ingress rules, then allow the "
                f"gateway and monitoring explicitly with further policies.",
            )


namespace_default_deny = stack_policy(
    validate_namespace_default_deny,
    description="Every Namespace the stack creates has a default-deny ingress NetworkPolicy "
    "(podSelector {}, policyTypes including Ingress, no ingress rules), so traffic must be allowed "
    "explicitly.",
    remediation="Add a NetworkPolicy with podSelector {}, policyTypes [Ingress] and no ingress rules "
    "to each Namespace.",
    severity=Severity.HIGH,
)


# --- backup-coverage -------------------------------------------------------------------------

def _state_sources(value: str) -> list[str]:
    seen: list[str] = []
    for part in value.split(","):
        name = part.strip()
        if name and name not in seen:
            seen.append(name)
    return seen


def _non_empty(value: Any) -> Any:
    if value is UNKNOWN:
        return UNKNOWN
    return isinstance(value, str) and bool(value.strip())


def _not_suspended(cron: K8sObject) -> Any:
    suspend = dig(cron.props, "spec", "suspend")
    if suspend is UNKNOWN:
        return UNKNOWN
    return suspend is not True


BACKUP_HINT = (
    "add a batch/v1 CronJob in the namespace labelled {component}: backup and annotated "
    "{source}: {name!r} and {retention}: <how long backups are kept, e.g. 30d>"
)


@stack_rule("backup-coverage")
def validate_backup_coverage(ctx: StackContext) -> None:
    crons = ctx.of_type(CRONJOB)
    require_drill = ctx.settings["requireRestoreDrill"]
    for ns in ctx.of_type(NAMESPACE):
        raw = ns.annotation(ANN_STATE_SOURCES)
        if not isinstance(raw, str) or ctx.exempt(ns):
            continue
        sources = _state_sources(raw)
        here = [(c, in_namespace(c, ns)) for c in crons]
        for source in sources:
            candidates, maybe = [], False
            for cron, in_ns in here:
                m = all3(
                    [
                        in_ns,
                        same(cron.label(LABEL_COMPONENT), "backup"),
                        same(cron.annotation(ANN_BACKUP_SOURCE), source),
                    ]
                )
                if m is True:
                    candidates.append(cron)
                elif m is UNKNOWN:
                    maybe = True
            hint = BACKUP_HINT.format(
                component=LABEL_COMPONENT, source=ANN_BACKUP_SOURCE, name=source, retention=ANN_RETENTION
            )
            if not candidates:
                if not maybe:
                    ctx.report(
                        ns,
                        f"{ns.display} declares state source '{source}' ({ANN_STATE_SOURCES}) but no "
                        f"backup CronJob covers it, so that state cannot be restored. Fix: {hint}.",
                    )
                continue
            verdicts = [all3([_non_empty(c.annotation(ANN_RETENTION)), _not_suspended(c)]) for c in candidates]
            if any3(verdicts) is not False or maybe:
                continue
            for cron in candidates:
                reasons = []
                if _non_empty(cron.annotation(ANN_RETENTION)) is False:
                    reasons.append(f"has no {ANN_RETENTION} annotation")
                if _not_suspended(cron) is False:
                    reasons.append("is suspended")
                ctx.report(
                    cron,
                    f"{cron.display}, the backup of '{source}' in {ns.display}, {' and '.join(reasons)}. "
                    f"Fix: annotate {ANN_RETENTION} with how long backups are kept (e.g. \"30d\") and "
                    f"leave spec.suspend unset.",
                )
        if require_drill and sources:
            verdict = any3(
                [
                    all3([in_ns, same(c.label(LABEL_COMPONENT), "restore-drill"), _not_suspended(c)])
                    for c, in_ns in here
                ]
            )
            if verdict is False:
                ctx.report(
                    ns,
                    f"{ns.display} holds state ({', '.join(sources)}) but has no restore-drill CronJob, so "
                    f"nobody knows the backups restore. Fix: add a batch/v1 CronJob in the namespace "
                    f"labelled {LABEL_COMPONENT}: restore-drill that restores the latest backup into a "
                    f"scratch target and verifies it.",
                )


backup_coverage = stack_policy(
    validate_backup_coverage,
    description=f"Every state source a Namespace declares ({ANN_STATE_SOURCES}: \"a,b\") has a backup "
    f"CronJob in that namespace ({LABEL_COMPONENT}: backup, {ANN_BACKUP_SOURCE}: <source>, "
    f"{ANN_RETENTION} set), and where requireRestoreDrill is on, a restore-drill CronJob too.",
    remediation="Add the missing backup (or restore-drill) CronJob with the labels and annotations named "
    "in the message.",
    severity=Severity.HIGH,
)


# --- alert-coverage --------------------------------------------------------------------------

REQUIRED_SIGNALS = ("error_rate", "availability")


def _is_prometheus_rule(obj: K8sObject) -> bool:
    if obj.resource_type == PROMETHEUS_RULE:
        return True
    api = dig(obj.props, "apiVersion")
    return (
        isinstance(api, str)
        and api.startswith("monitoring.coreos.com/")
        and dig(obj.props, "kind") == "PrometheusRule"
    )


def prometheus_rule_signals(rules: list[K8sObject]) -> tuple[set[str], bool]:
    """Signals carried by alerting rules (labels.signal), and whether some were unknown."""
    found: set[str] = set()
    unknown = False
    for obj in rules:
        groups = as_list(dig(obj.props, "spec", "groups"))
        if groups is UNKNOWN:
            unknown = True
            continue
        for group in groups:
            items = as_list(dig(group, "rules"))
            if items is UNKNOWN:
                unknown = True
                continue
            for rule in items:
                if rule is UNKNOWN:
                    unknown = True
                    continue
                if not isinstance(rule, dict) or rule.get("alert") is None:
                    continue  # a recording rule
                signal = dig(rule, "labels", "signal")
                if signal is UNKNOWN or rule.get("alert") is UNKNOWN:
                    unknown = True
                elif isinstance(signal, str):
                    found.add(signal)
    return found, unknown


def runtime_alert_signals(configmap: K8sObject) -> tuple[Any, str]:
    """Signals of the in-process alert rules in a gateway ConfigMap's runtime.json.

    Returns (set of signals, "") or (UNKNOWN, "") or (None, why it cannot be read).
    """
    raw = dig(configmap.props, "data", "runtime.json")
    if raw is UNKNOWN:
        return UNKNOWN, ""
    if raw is None:
        return None, "has no data key runtime.json"
    try:
        doc = json.loads(raw)
    except (TypeError, ValueError) as e:
        return None, f"has a runtime.json that is not valid JSON ({e})"
    rules = dig(doc, "alerts", "rules")
    if not isinstance(rules, list):
        return None, "has no alerts.rules list in runtime.json"
    found = set()
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        signal = rule.get("signal", dig(rule, "labels", "signal"))
        if isinstance(signal, str):
            found.add(signal)
    return found, ""


ALERT_HINT_OPERATOR = (
    "add alerting rules to a PrometheusRule with labels signal: error_rate (e.g. 5xx ratio above the "
    "SLO for 5m) and signal: availability (e.g. ready replicas below desired, or probe failures)"
)
ALERT_HINT_IN_PROCESS = (
    "add rules with \"signal\": \"error_rate\" and \"signal\": \"availability\" to alerts.rules in the "
    "runtime.json of the ConfigMap labelled app.kubernetes.io/component: gateway"
)


@stack_rule("alert-coverage")
def validate_alert_coverage(ctx: StackContext) -> None:
    for ns in ctx.of_type(NAMESPACE):
        mode = ns.annotation(ANN_MONITORING)
        if mode is None or mode is UNKNOWN or ctx.exempt(ns):
            continue
        if mode == "prometheus-operator":
            rules = [o for o in ctx.objects if _is_prometheus_rule(o)]
            found, unknown = prometheus_rule_signals(rules)
            missing = [s for s in REQUIRED_SIGNALS if s not in found]
            if missing and not unknown:
                ctx.report(
                    ns,
                    f"{ns.display} is monitored by the Prometheus Operator but no PrometheusRule in the "
                    f"stack has an alert labelled signal: {' or '.join(missing)}, so on-call is not paged "
                    f"when agents fail. Fix: {ALERT_HINT_OPERATOR}.",
                )
        elif mode == "in-process":
            shortfalls: list[str] = []
            satisfied: Any = False
            for cm in ctx.of_type(CONFIGMAP):
                is_gateway = same(cm.label(LABEL_COMPONENT), "gateway")
                if is_gateway is False:
                    continue
                signals, why = runtime_alert_signals(cm)
                if is_gateway is UNKNOWN or signals is UNKNOWN:
                    satisfied = UNKNOWN if satisfied is False else satisfied
                    continue
                if signals is None:
                    shortfalls.append(f"{cm.display} {why}")
                    continue
                missing = [s for s in REQUIRED_SIGNALS if s not in signals]
                if not missing:
                    satisfied = True
                    break
                shortfalls.append(f"{cm.display} has no rule with signal {' or '.join(missing)}")
            if satisfied is False:
                detail = "; ".join(shortfalls) or "there is no ConfigMap labelled app.kubernetes.io/component: gateway"
                ctx.report(
                    ns,
                    f"{ns.display} evaluates alerts in-process but {detail}, so on-call is not paged when "
                    f"agents fail. Fix: {ALERT_HINT_IN_PROCESS}.",
                )
        else:
            ctx.report(
                ns,
                f"{ns.display}: {ANN_MONITORING} is {mode!r}; expected 'prometheus-operator' or "
                f"'in-process', so no alert coverage can be checked. Fix: use one of those values.",
            )


alert_coverage = stack_policy(
    validate_alert_coverage,
    description=f"A Namespace with {ANN_MONITORING} has alerts on the error rate and on availability: "
    "as PrometheusRule alerts labelled signal: error_rate / availability (prometheus-operator), or as "
    "rules in the gateway ConfigMap's runtime.json (in-process).",
    remediation="Add the missing error_rate and availability alert rules where the message says.",
    severity=Severity.HIGH,
)

POLICIES = [
    production_replicas,
    production_pdb,
    stateful_agents_not_autoscaled,
    namespace_default_deny,
    backup_coverage,
    alert_coverage,
]
