"""components/agent_cluster.py: the Deployment, autoscaler and ScaledObject a cluster's spec produces."""

from __future__ import annotations

import copy

from tests.stacks import stack_values

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"

def test_stack_hpa_carries_the_configured_behaviour(run_stack):
    values = copy.deepcopy(stack_values("staging"))
    mocks = run_stack(values, "staging")
    hpa = mocks.one(HPA, "specialists")
    spec = hpa.inputs["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert spec["behavior"]["scaleDown"]["policies"] == [{"type": "Percent", "value": 25, "periodSeconds": 600}]
    assert spec["behavior"]["scaleUp"]["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 60}]


def test_keda_stack_emits_a_scaled_object_instead_of_an_hpa(run_stack):
    values = copy.deepcopy(stack_values("dev"))
    values["kubernetes"]["keda_installed"] = True
    values["clusters"][0]["autoscaling"]["queue"] = {"target_per_pod": 10, "source": "keda"}
    mocks = run_stack(values, "dev")
    scaled = mocks.one("kubernetes:keda.sh/v1alpha1:ScaledObject", "workers")
    assert scaled.inputs["spec"]["minReplicaCount"] == 1
    assert scaled.inputs["spec"]["triggers"][0]["metadata"]["query"].endswith(
        '{namespace="agents-dev",cluster="workers"})'
    )
    assert not [h for h in mocks.of_type(HPA) if "workers" in h.name]


def test_stateful_cluster_is_marked_and_never_autoscaled_to_zero(run_stack):
    values = stack_values("prod")
    mocks = run_stack(values, "prod")
    coordinators = mocks.one(DEPLOYMENT, "coordinators")
    assert coordinators.inputs["metadata"]["annotations"]["agent-platform.io/stateful"] == "true"
    assert coordinators.inputs["spec"]["replicas"] >= 1
    for hpa in mocks.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"):
        assert hpa.inputs["spec"]["minReplicas"] >= 1
