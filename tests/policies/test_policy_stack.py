"""Stack policies: replicas, PDBs, stateful agents, default-deny, backups, alerts."""

import json

import pytest
from policy_builders import (
    NS,
    backup_cronjob,
    configmap,
    deployment,
    gateway_configmap,
    good_stack,
    hpa,
    namespace,
    network_policy,
    pdb,
    prometheus_rule,
    restore_drill_cronjob,
    runtime_json,
)
from policy_fakes import run_stack, urn_for
from pulumi_policy.proxy import UNKNOWN_NUMBER_VALUE, UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE

from agent_policies.stack import (
    validate_alert_coverage,
    validate_backup_coverage,
    validate_namespace_default_deny,
    validate_production_pdb,
    validate_production_replicas,
    validate_stateful_agents_not_autoscaled,
)


def msgs(validate, stack, config=None):
    return [m for m, _ in run_stack(validate, stack, config)]


@pytest.mark.parametrize(
    "validate",
    [
        validate_production_replicas,
        validate_production_pdb,
        validate_stateful_agents_not_autoscaled,
        validate_namespace_default_deny,
        validate_backup_coverage,
        validate_alert_coverage,
    ],
)
def test_good_stack_passes(validate):
    assert run_stack(validate, good_stack(), {"requireRestoreDrill": True}) == []
    assert run_stack(validate, good_stack("in-process"), {"requireRestoreDrill": True}) == []


# --- production-replicas ------------------------------------------------------------------


def test_single_replica_deployment():
    stack = [deployment("gateway", replicas=1)]
    ((msg, urn),) = run_stack(validate_production_replicas, stack)
    assert "spec.replicas is 1, below the 2" in msg
    assert urn == urn_for("kubernetes:apps/v1:Deployment", "gateway")


def test_unset_replicas_without_hpa_means_one():
    (msg,) = msgs(validate_production_replicas, [deployment("gateway", replicas=None)])
    assert "unset, so 1" in msg


def test_hpa_min_replicas_is_what_counts_with_an_hpa():
    stack = [deployment("workers", replicas=None), hpa(target="workers", min_replicas=2)]
    assert msgs(validate_production_replicas, stack) == []
    stack = [deployment("workers", replicas=3), hpa(target="workers", min_replicas=1)]
    ((msg, urn),) = run_stack(validate_production_replicas, stack)
    assert "HorizontalPodAutoscaler 'agents/workers': minReplicas is 1" in msg
    assert urn.endswith("HorizontalPodAutoscaler::workers")


def test_hpa_default_min_replicas():
    (msg,) = msgs(validate_production_replicas, [hpa(min_replicas=None)])
    assert "minReplicas (default) is 1" in msg


def test_hpa_in_another_namespace_does_not_count():
    stack = [deployment("workers", replicas=1), hpa(target="workers", ns="elsewhere", min_replicas=2)]
    (msg,) = msgs(validate_production_replicas, stack)
    assert "Deployment 'agents/workers'" in msg


def test_min_replicas_config_relaxes_dev():
    stack = [deployment("gateway", replicas=1), hpa(target="workers", min_replicas=1)]
    assert msgs(validate_production_replicas, stack, {"minReplicas": 1.0}) == []
    assert len(msgs(validate_production_replicas, stack, {"minReplicas": 3})) == 2


def test_exempting_a_deployment_exempts_its_hpa():
    stack = [deployment("workers", replicas=1), hpa(target="workers", min_replicas=1)]
    assert msgs(validate_production_replicas, stack, {"exemptions": ["workers"]}) == []


def test_unknown_hpa_target_or_replicas_skip():
    h = hpa(target="workers", min_replicas=2)
    h["props"]["spec"]["scaleTargetRef"]["name"] = UNKNOWN_STRING_VALUE
    assert msgs(validate_production_replicas, [deployment("workers", replicas=1), h]) == []
    d = deployment("gateway", replicas=1)
    d["props"]["spec"]["replicas"] = UNKNOWN_NUMBER_VALUE
    assert msgs(validate_production_replicas, [d]) == []


# --- production-pdb -----------------------------------------------------------------------


def test_deployment_without_pdb():
    ((msg, urn),) = run_stack(validate_production_pdb, [deployment("gateway")])
    assert "has no PodDisruptionBudget selecting its pods" in msg and urn.endswith("Deployment::gateway")


@pytest.mark.parametrize(
    "the_pdb",
    [
        pdb("gateway", app="gateway", ns="elsewhere"),
        pdb("gateway", app="somebody-else"),
    ],
)
def test_pdb_must_select_the_pods_in_the_same_namespace(the_pdb):
    (msg,) = msgs(validate_production_pdb, [deployment("gateway"), the_pdb])
    assert "no PodDisruptionBudget" in msg


def test_pdb_with_match_expressions():
    p = pdb("gateway", app="gateway")
    p["props"]["spec"]["selector"] = {
        "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["gateway", "x"]}]
    }
    assert msgs(validate_production_pdb, [deployment("gateway"), p]) == []


@pytest.mark.parametrize(
    "budget, replicas, why",
    [
        ({"maxUnavailable": 0}, 2, "maxUnavailable is 0"),
        ({"maxUnavailable": "0%"}, 2, "maxUnavailable is 0%"),
        ({"minAvailable": 2}, 2, "minAvailable 2 with 2 replica(s)"),
        ({"minAvailable": "100%"}, 3, "minAvailable 100% with 3 replica(s)"),
        ({"minAvailable": "90%"}, 3, "minAvailable 90% with 3 replica(s)"),  # rounds up to 3
        ({"minAvailable": 1}, 1, "minAvailable 1 with 1 replica(s)"),
        ({}, 2, "sets neither"),
    ],
)
def test_pdb_that_allows_no_disruption(budget, replicas, why):
    p = pdb("gateway", app="gateway", **budget)
    if not budget:
        p["props"]["spec"].pop("maxUnavailable")
    ((msg, urn),) = run_stack(validate_production_pdb, [deployment("gateway", replicas=replicas), p])
    assert "allows no disruption" in msg and why in msg
    assert urn.endswith("PodDisruptionBudget::gateway")


@pytest.mark.parametrize(
    "budget, replicas",
    [
        ({"maxUnavailable": 1}, 1),
        ({"maxUnavailable": "10%"}, 2),
        ({"minAvailable": 1}, 2),
        ({"minAvailable": "50%"}, 3),
    ],
)
def test_pdb_that_allows_disruption(budget, replicas):
    assert (
        msgs(
            validate_production_pdb, [deployment("gateway", replicas=replicas), pdb("gateway", app="gateway", **budget)]
        )
        == []
    )


def test_min_available_is_compared_with_the_hpa_minimum():
    stack = [
        deployment("workers", replicas=None),
        hpa(target="workers", min_replicas=3),
        pdb(app="workers", minAvailable=2),
    ]
    assert msgs(validate_production_pdb, stack) == []
    stack[1] = hpa(target="workers", min_replicas=2)
    assert len(msgs(validate_production_pdb, stack)) == 1


def test_two_pdbs_on_one_deployment():
    stack = [deployment("gateway"), pdb("gateway-a", app="gateway"), pdb("gateway-b", app="gateway")]
    (msg,) = msgs(validate_production_pdb, stack)
    assert "selected by 2 PodDisruptionBudgets" in msg


@pytest.mark.parametrize(
    "break_it",
    [
        lambda p: p["props"]["spec"].update(selector=UNKNOWN_OBJECT_VALUE),
        lambda p: p["props"]["metadata"].update(namespace=UNKNOWN_STRING_VALUE),
        lambda p: p["props"]["spec"].update(maxUnavailable=UNKNOWN_NUMBER_VALUE),
    ],
)
def test_unknown_pdb_fields_skip(break_it):
    p = pdb("gateway", app="gateway", maxUnavailable=0)
    break_it(p)
    assert msgs(validate_production_pdb, [deployment("gateway"), p]) == []


def test_pdb_exemption():
    assert msgs(validate_production_pdb, [deployment("gateway")], {"exemptions": ["gateway"]}) == []


# --- stateful-agents-not-autoscaled -------------------------------------------------------

STATEFUL = {"agent-platform.io/stateful": "true"}


def test_stateful_agent_with_hpa():
    stack = [deployment("coordinators", annotations=STATEFUL), hpa("coordinators", target="coordinators")]
    ((msg, urn),) = run_stack(validate_stateful_agents_not_autoscaled, stack)
    assert "autoscales Deployment 'agents/coordinators', a stateful agent" in msg
    assert urn.endswith("HorizontalPodAutoscaler::coordinators")


def test_stateful_agent_scaled_to_zero():
    (msg,) = msgs(
        validate_stateful_agents_not_autoscaled, [deployment("coordinators", replicas=0, annotations=STATEFUL)]
    )
    assert "scaled to 0 replicas" in msg


def test_stateless_agents_may_autoscale_and_scale_to_zero():
    stack = [
        deployment("workers", replicas=0),
        hpa(target="workers"),
        deployment("c", annotations={"agent-platform.io/stateful": "false"}),
    ]
    assert msgs(validate_stateful_agents_not_autoscaled, stack) == []


def test_stateful_unknown_annotation_or_target():
    d = deployment("coordinators", annotations={"agent-platform.io/stateful": UNKNOWN_STRING_VALUE})
    assert msgs(validate_stateful_agents_not_autoscaled, [d, hpa(target="coordinators")]) == []
    h = hpa(target="coordinators")
    h["props"]["spec"]["scaleTargetRef"] = UNKNOWN_OBJECT_VALUE
    assert msgs(validate_stateful_agents_not_autoscaled, [deployment("coordinators", annotations=STATEFUL), h]) == []


# --- namespace-default-deny ---------------------------------------------------------------


def test_namespace_without_network_policy():
    ((msg, urn),) = run_stack(validate_namespace_default_deny, [namespace()])
    assert "Namespace 'agents' has no default-deny NetworkPolicy" in msg
    assert urn == urn_for("kubernetes:core/v1:Namespace", "agents")


@pytest.mark.parametrize(
    "spec",
    [
        {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress"]},  # not all pods
        {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]},  # allows
        {"podSelector": {}, "policyTypes": ["Egress"]},  # egress only
    ],
)
def test_network_policies_that_are_not_default_deny(spec):
    assert len(msgs(validate_namespace_default_deny, [namespace(), network_policy(spec=spec)])) == 1


def test_default_deny_in_another_namespace_does_not_count():
    assert len(msgs(validate_namespace_default_deny, [namespace(), network_policy(ns="other")])) == 1


@pytest.mark.parametrize(
    "spec",
    [
        {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        {"podSelector": {"matchLabels": {}}, "policyTypes": ["Ingress"], "ingress": []},
        {"podSelector": {}},  # Kubernetes defaults policyTypes to [Ingress]
    ],
)
def test_default_deny_variants(spec):
    assert msgs(validate_namespace_default_deny, [namespace(), network_policy(spec=spec)]) == []


def test_default_deny_unknowns_skip():
    np = network_policy()
    np["props"]["metadata"]["namespace"] = UNKNOWN_STRING_VALUE  # e.g. ns.metadata.name before creation
    assert msgs(validate_namespace_default_deny, [namespace(), np]) == []
    ns = namespace()
    ns["props"]["metadata"]["name"] = UNKNOWN_STRING_VALUE
    assert msgs(validate_namespace_default_deny, [ns]) == []


def test_default_deny_exemption():
    assert msgs(validate_namespace_default_deny, [namespace()], {"exemptions": ["agents"]}) == []


# --- backup-coverage ----------------------------------------------------------------------

SOURCES = {"agent-platform.io/state-sources": " agent-state ,workspace,, agent-state"}


def backups(*crons, drill=True):
    return [namespace(annotations=SOURCES), *crons] + ([restore_drill_cronjob()] if drill else [])


def test_all_sources_backed_up():
    stack = backups(backup_cronjob("agent-state"), backup_cronjob("workspace"))
    assert msgs(validate_backup_coverage, stack, {"requireRestoreDrill": True}) == []


def test_missing_source_is_named_once():
    ((msg, urn),) = run_stack(validate_backup_coverage, backups(backup_cronjob("agent-state")))
    assert "state source 'workspace'" in msg and "no backup CronJob" in msg and "Fix:" in msg
    assert urn.endswith("Namespace::agents")


def test_backup_in_another_namespace_does_not_count():
    stack = backups(backup_cronjob("agent-state"), backup_cronjob("workspace", ns="other"))
    (msg,) = msgs(validate_backup_coverage, stack)
    assert "'workspace'" in msg


def test_backup_needs_the_backup_label():
    cron = backup_cronjob("workspace")
    cron["props"]["metadata"]["labels"]["app.kubernetes.io/component"] = "worker"
    assert len(msgs(validate_backup_coverage, backups(backup_cronjob("agent-state"), cron))) == 1


@pytest.mark.parametrize(
    "retention, reason", [(None, "has no agent-platform.io/retention"), ("  ", "has no agent-platform.io/retention")]
)
def test_backup_needs_a_retention(retention, reason):
    stack = backups(backup_cronjob("agent-state"), backup_cronjob("workspace", retention=retention))
    ((msg, urn),) = run_stack(validate_backup_coverage, stack)
    assert reason in msg and urn.endswith("CronJob::backup-workspace")


def test_suspended_backup_does_not_count():
    stack = backups(backup_cronjob("agent-state"), backup_cronjob("workspace", suspend=True))
    (msg,) = msgs(validate_backup_coverage, stack)
    assert "is suspended" in msg


def test_restore_drill_required_only_when_configured():
    stack = backups(backup_cronjob("agent-state"), backup_cronjob("workspace"), drill=False)
    assert msgs(validate_backup_coverage, stack, {"requireRestoreDrill": False}) == []
    (msg,) = msgs(validate_backup_coverage, stack, {"requireRestoreDrill": True})
    assert "no restore-drill CronJob" in msg
    stack.append(restore_drill_cronjob(suspend=True))
    assert len(msgs(validate_backup_coverage, stack, {"requireRestoreDrill": True})) == 1


def test_namespaces_without_state_need_nothing():
    assert msgs(validate_backup_coverage, [namespace()], {"requireRestoreDrill": True}) == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda c: c["props"]["metadata"]["annotations"].update(
            {"agent-platform.io/backup-source": UNKNOWN_STRING_VALUE}
        ),
        lambda c: c["props"]["metadata"].update(namespace=UNKNOWN_STRING_VALUE),
        lambda c: c["props"]["metadata"]["annotations"].update({"agent-platform.io/retention": UNKNOWN_STRING_VALUE}),
        lambda c: c["props"]["spec"].update(suspend=UNKNOWN_STRING_VALUE),
    ],
)
def test_backup_unknowns_skip(break_it):
    # Compliant except for the one field made unknown, which could resolve either way.
    cron = backup_cronjob("workspace", retention="30d", suspend=False)
    break_it(cron)
    assert (
        msgs(validate_backup_coverage, backups(backup_cronjob("agent-state"), cron), {"requireRestoreDrill": True})
        == []
    )


# --- alert-coverage -----------------------------------------------------------------------


def monitored(mode):
    return namespace(annotations={"agent-platform.io/monitoring": mode})


def test_prometheus_operator_needs_both_signals():
    stack = [monitored("prometheus-operator"), prometheus_rule(signals=("error_rate",))]
    ((msg, urn),) = run_stack(validate_alert_coverage, stack)
    assert "signal: availability" in msg and "error_rate" not in msg.split("Fix:")[0]
    assert urn.endswith("Namespace::agents")


def test_prometheus_signals_may_come_from_several_rules():
    stack = [
        monitored("prometheus-operator"),
        prometheus_rule("a", signals=("error_rate",)),
        prometheus_rule("b", signals=("availability",)),
    ]
    assert msgs(validate_alert_coverage, stack) == []


def test_recording_rules_do_not_count():
    rule = prometheus_rule(signals=("error_rate",))
    rule["props"]["spec"]["groups"][0]["rules"].append(
        {"record": "x", "expr": "1", "labels": {"signal": "availability"}}
    )
    assert len(msgs(validate_alert_coverage, [monitored("prometheus-operator"), rule])) == 1


def test_no_prometheus_rule_at_all():
    (msg,) = msgs(validate_alert_coverage, [monitored("prometheus-operator")])
    assert "error_rate or availability" in msg


def test_in_process_alerts():
    assert msgs(validate_alert_coverage, [monitored("in-process"), gateway_configmap()]) == []
    (msg,) = msgs(validate_alert_coverage, [monitored("in-process"), gateway_configmap(signals=("error_rate",))])
    assert "has no rule with signal availability" in msg


def test_in_process_signal_under_labels_counts():
    doc = {
        "alerts": {
            "rules": [{"name": "a", "labels": {"signal": "error_rate"}}, {"name": "b", "signal": "availability"}]
        }
    }
    assert (
        msgs(
            validate_alert_coverage,
            [monitored("in-process"), gateway_configmap(data={"runtime.json": json.dumps(doc)})],
        )
        == []
    )


@pytest.mark.parametrize(
    "data, why",
    [
        ({"other.json": "{}"}, "has no data key runtime.json"),
        ({"runtime.json": "{not json"}, "not valid JSON"),
        ({"runtime.json": json.dumps({"alerts": {}})}, "has no alerts.rules list"),
    ],
)
def test_in_process_broken_runtime_config(data, why):
    (msg,) = msgs(validate_alert_coverage, [monitored("in-process"), gateway_configmap(data=data)])
    assert why in msg


def test_in_process_needs_a_gateway_configmap():
    stack = [monitored("in-process"), configmap("settings", data={"runtime.json": runtime_json()})]  # not labelled
    (msg,) = msgs(validate_alert_coverage, stack)
    assert "no ConfigMap labelled app.kubernetes.io/component: gateway" in msg


def test_unknown_runtime_json_skips():
    stack = [monitored("in-process"), gateway_configmap(data={"runtime.json": UNKNOWN_STRING_VALUE})]
    assert msgs(validate_alert_coverage, stack) == []
    rule = prometheus_rule(signals=("error_rate",))
    rule["props"]["spec"]["groups"][0]["rules"].append(UNKNOWN_OBJECT_VALUE)
    assert msgs(validate_alert_coverage, [monitored("prometheus-operator"), rule]) == []


def test_unknown_monitoring_mode_is_reported():
    (msg,) = msgs(validate_alert_coverage, [monitored("prometheus")])
    assert "'prometheus'; expected 'prometheus-operator' or 'in-process'" in msg


def test_unmonitored_namespace_and_exemption():
    assert msgs(validate_alert_coverage, [namespace()]) == []
    assert msgs(validate_alert_coverage, [monitored("in-process")], {"exemptions": [NS]}) == []


def test_non_kubernetes_resources_are_ignored():
    stack = good_stack()
    stack.append({"type": "pulumi:providers:kubernetes", "name": "k8s", "props": {"kubeconfig": UNKNOWN_STRING_VALUE}})
    stack.append({"type": "agent-platform:index:Platform", "name": "platform", "props": {}})
    assert msgs(validate_alert_coverage, stack) == []
