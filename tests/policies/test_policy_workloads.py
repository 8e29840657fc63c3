"""container-probes, topology-spread, hpa-sane, agent-termination-grace."""

import pytest
from policy_builders import (
    container,
    cronjob,
    daemonset,
    deployment,
    hpa,
    job,
    job_pod_spec,
    pod_spec,
    statefulset,
)
from policy_fakes import run_resource
from pulumi_policy.proxy import UNKNOWN_NUMBER_VALUE, UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE

from agent_policies.workloads import (
    validate_agent_termination_grace,
    validate_container_probes,
    validate_hpa_sane,
    validate_topology_spread,
)

# --- container-probes ---------------------------------------------------------------------


@pytest.mark.parametrize("make", [deployment, statefulset, daemonset])
def test_long_running_containers_need_both_probes(make):
    o = make()
    c = o["props"]["spec"]["template"]["spec"]["containers"][0]
    del c["livenessProbe"]
    msgs = run_resource(validate_container_probes, o)
    assert len(msgs) == 1
    assert "container 'agent' has no livenessProbe" in msgs[0] and "readinessProbe" not in msgs[0].split("Fix")[0]
    del c["readinessProbe"]
    (msg,) = run_resource(validate_container_probes, o)
    assert "has no livenessProbe and no readinessProbe" in msg


def test_init_containers_need_no_probes():
    d = deployment(spec=pod_spec(init_containers=[container("migrate", probes=False)]))
    assert run_resource(validate_container_probes, d) == []


def test_jobs_and_cronjobs_need_no_probes():
    spec = job_pod_spec(containers=[container("run", probes=False)])
    assert run_resource(validate_container_probes, job(spec=spec)) == []
    assert run_resource(validate_container_probes, cronjob(spec=spec)) == []


def test_sidecar_without_probes_is_named():
    d = deployment(spec=pod_spec(containers=[container(), container("log-shipper", probes=False)]))
    (msg,) = run_resource(validate_container_probes, d)
    assert "container 'log-shipper'" in msg


def test_unknown_probe_is_not_a_violation():
    c = container()
    c["livenessProbe"] = UNKNOWN_OBJECT_VALUE
    assert run_resource(validate_container_probes, deployment(spec=pod_spec(containers=[c]))) == []


# --- topology-spread ----------------------------------------------------------------------


def test_topology_spread_present_passes():
    assert run_resource(validate_topology_spread, deployment()) == []


@pytest.mark.parametrize("value", ["absent", []])
def test_missing_topology_spread(value):
    d = deployment()
    spec = d["props"]["spec"]["template"]["spec"]
    if value == "absent":
        del spec["topologySpreadConstraints"]
    else:
        spec["topologySpreadConstraints"] = value
    (msg,) = run_resource(validate_topology_spread, d)
    assert "has no topologySpreadConstraints" in msg and "Fix:" in msg


def test_topology_spread_selecting_other_pods_spreads_nothing():
    d = deployment()
    d["props"]["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"] = {
        "matchLabels": {"app.kubernetes.io/name": "someone-else"}
    }
    (msg,) = run_resource(validate_topology_spread, d)
    assert "topologySpreadConstraints[0]" in msg and "does not select" in msg


@pytest.mark.parametrize("unknown", [UNKNOWN_OBJECT_VALUE, None])
def test_topology_spread_unknown(unknown):
    d = deployment()
    d["props"]["spec"]["template"]["spec"]["topologySpreadConstraints"] = unknown
    assert run_resource(validate_topology_spread, d) == []


def test_topology_spread_only_applies_to_deployments():
    j = job()
    assert run_resource(validate_topology_spread, j) == []


# --- hpa-sane -----------------------------------------------------------------------------


def test_sane_hpa_passes():
    assert run_resource(validate_hpa_sane, hpa()) == []


def test_min_above_max():
    (msg,) = run_resource(validate_hpa_sane, hpa(min_replicas=5, max_replicas=3))
    assert "minReplicas 5 is above maxReplicas 3" in msg


def test_default_min_of_one_is_compared_too():
    assert run_resource(validate_hpa_sane, hpa(min_replicas=None, max_replicas=1)) == []


def test_short_scale_down_window():
    (msg,) = run_resource(validate_hpa_sane, hpa(window=30))
    assert "stabilizationWindowSeconds is 30s, shorter than the 60s" in msg


def test_threshold_comes_from_config_even_as_engine_floats():
    # The engine hands numbers over as floats (protobuf Struct).
    assert run_resource(validate_hpa_sane, hpa(window=300), {"minScaleDownStabilizationSeconds": 300.0}) == []
    (msg,) = run_resource(validate_hpa_sane, hpa(window=299), {"minScaleDownStabilizationSeconds": 300.0})
    assert "shorter than the 300s" in msg


def test_kubernetes_default_window_counts_when_behavior_is_omitted():
    h = hpa(window=None)  # no behavior: Kubernetes waits 300s before scaling down
    assert run_resource(validate_hpa_sane, h) == []
    (msg,) = run_resource(validate_hpa_sane, h, {"minScaleDownStabilizationSeconds": 600})
    assert "the Kubernetes default window is 300s" in msg


def test_disabled_scale_down_needs_no_window():
    h = hpa(window=0)
    h["props"]["spec"]["behavior"]["scaleDown"]["selectPolicy"] = "Disabled"
    assert run_resource(validate_hpa_sane, h) == []


@pytest.mark.parametrize("field", ["minReplicas", "maxReplicas"])
def test_unknown_replica_bounds(field):
    h = hpa(min_replicas=5, max_replicas=3)
    h["props"]["spec"][field] = UNKNOWN_NUMBER_VALUE
    assert run_resource(validate_hpa_sane, h) == []


def test_unknown_window():
    h = hpa(window=10)
    h["props"]["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = UNKNOWN_NUMBER_VALUE
    assert run_resource(validate_hpa_sane, h) == []


def test_hpa_exemption():
    assert run_resource(validate_hpa_sane, hpa(window=1), {"exemptions": ["workers"]}) == []


# --- agent-termination-grace --------------------------------------------------------------


def test_grace_at_least_max_run_passes():
    assert run_resource(validate_agent_termination_grace, deployment(max_run=600, grace=600)) == []


def test_default_grace_is_too_short_for_long_runs():
    d = deployment(max_run=600)
    del d["props"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    (msg,) = run_resource(validate_agent_termination_grace, d)
    assert "the default terminationGracePeriodSeconds is 30s" in msg and "600s" in msg


def test_explicit_grace_below_max_run():
    (msg,) = run_resource(validate_agent_termination_grace, deployment(max_run=900, grace=120))
    assert "terminationGracePeriodSeconds is 120s, shorter than" in msg and "900s" in msg


def test_stateful_agent_grace_and_annotation_on_pod_template():
    d = deployment(max_run=None, grace=60, annotations={"agent-platform.io/stateful": "true"})
    d["props"]["spec"]["template"]["metadata"]["annotations"] = {"agent-platform.io/max-run-seconds": "300"}
    (msg,) = run_resource(validate_agent_termination_grace, d)
    assert "60s, shorter than" in msg


def test_stateful_agent_must_declare_max_run():
    d = deployment(max_run=None, annotations={"agent-platform.io/stateful": "true"})
    (msg,) = run_resource(validate_agent_termination_grace, d)
    assert "has no agent-platform.io/max-run-seconds annotation" in msg


def test_workloads_without_the_annotation_are_not_agents():
    assert run_resource(validate_agent_termination_grace, deployment("gateway", max_run=None)) == []


def test_bad_annotation_value():
    d = deployment(max_run=None, annotations={"agent-platform.io/max-run-seconds": "ten minutes"})
    (msg,) = run_resource(validate_agent_termination_grace, d)
    assert "'ten minutes', not a number of seconds" in msg


@pytest.mark.parametrize("where", ["annotation", "grace", "podspec"])
def test_unknowns_do_not_report(where):
    d = deployment(max_run=900, grace=10)
    if where == "annotation":
        d["props"]["metadata"]["annotations"]["agent-platform.io/max-run-seconds"] = UNKNOWN_STRING_VALUE
    elif where == "grace":
        d["props"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = UNKNOWN_NUMBER_VALUE
    else:
        d["props"]["spec"]["template"]["spec"] = UNKNOWN_OBJECT_VALUE
    assert run_resource(validate_agent_termination_grace, d) == []
