"""Every shipped stack builds under mocks, and what it builds is safe to run."""

from __future__ import annotations

import pytest

from tests.stacks import STACKS, stack_values

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_builds_every_cluster_and_the_gateway(run_stack, stack):
    values = stack_values(stack)
    mocks = run_stack(values, stack)
    deployments = {r.inputs["metadata"]["name"] for r in mocks.of_type(DEPLOYMENT)}
    expected = {c["name"] for c in values["clusters"]} | {"gateway"}
    assert deployments == expected
    assert len(mocks.of_type("kubernetes:core/v1:Namespace")) == 1
    if stack in ("staging", "prod"):
        assert len(values["clusters"]) >= 3


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_has_limits_probes_and_restricted_security(run_stack, stack):
    mocks = run_stack(stack_values(stack), stack)
    for deployment in mocks.of_type(DEPLOYMENT):
        pod = deployment.inputs["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            where = f"{deployment.name}/{container['name']}"
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}, where
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}, where
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert container[probe]["httpGet"]["path"] in ("/healthz", "/readyz"), where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where


@pytest.mark.parametrize("stack", STACKS)
def test_selectors_of_services_pdbs_and_hpas_match_their_deployment(run_stack, stack):
    mocks = run_stack(stack_values(stack), stack)
    deployments = {d.inputs["metadata"]["name"]: d for d in mocks.of_type(DEPLOYMENT)}
    workloads = {**deployments, **{s.inputs["metadata"]["name"]: s for s in mocks.of_type(STATEFUL_SET)}}
    for service in mocks.of_type("kubernetes:core/v1:Service"):
        selector = service.inputs["spec"]["selector"]
        matches = [name for name, d in workloads.items()
                   if selector.items() <= d.inputs["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, f"{service.name} selects {matches}"
    for pdb in mocks.of_type("kubernetes:policy/v1:PodDisruptionBudget"):
        selector = pdb.inputs["spec"]["selector"]["matchLabels"]
        matches = [name for name, d in deployments.items()
                   if selector.items() <= d.inputs["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, f"{pdb.name} selects {matches}"
        assert pdb.inputs["spec"]["maxUnavailable"] not in (0, "0%"), "a PDB must not block every drain"
    for hpa in mocks.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"):
        target = hpa.inputs["spec"]["scaleTargetRef"]["name"]
        assert target in deployments, f"{hpa.name} targets {target!r}, not a Deployment of the stack"
