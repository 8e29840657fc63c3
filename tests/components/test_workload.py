"""components/workload.py: scale-down and rollouts never cut an agent run short."""

from __future__ import annotations

from components import workload
from tests.stacks import stack_values

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def test_grace_period_covers_prestop_and_the_longest_run(run_stack):
    values = stack_values("prod")
    mocks = run_stack(values, "prod")
    for cluster in values["clusters"]:
        deployment = mocks.one(DEPLOYMENT, f"-{cluster['name']}-deployment")
        pod = deployment.inputs["spec"]["template"]["spec"]
        prestop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert prestop >= 5, "endpoints need time to deregister before SIGTERM"
        assert pod["terminationGracePeriodSeconds"] >= prestop + cluster["max_run_seconds"]
        assert deployment.inputs["metadata"]["annotations"]["agent-platform.io/max-run-seconds"] == str(
            cluster["max_run_seconds"]
        )


def test_rollout_never_drops_below_desired_capacity(run_stack):
    mocks = run_stack(stack_values("prod"), "prod")
    for deployment in mocks.of_type(DEPLOYMENT):
        strategy = deployment.inputs["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        assert strategy["rollingUpdate"]["maxSurge"] not in (0, "0%")


def test_termination_grace_formula():
    assert workload.termination_grace_seconds(600) == workload.PRESTOP_SECONDS + 600 + workload.SHUTDOWN_MARGIN_SECONDS
