"""components/program.py: what `pulumi up` reports when the stack file is wrong."""

from __future__ import annotations

import copy

import pulumi
import pytest

from tests.stacks import stack_values


def _prod():
    return copy.deepcopy(stack_values("prod"))

def test_program_reports_a_config_error_without_traceback(run_stack):
    values = _prod()
    values["clusters"][0]["autoscaling"]["max_instances"] = 1
    with pytest.raises(pulumi.RunError) as caught:
        run_stack(values, "prod")
    assert "max_instances (1) must be >= min_instances (3)" in str(caught.value)


def test_unknown_top_level_key(run_stack):
    values = _prod()
    values["clusterz"] = []
    with pytest.raises(pulumi.RunError) as caught:
        run_stack(values, "prod")
    assert "stacks/Pulumi.prod.yaml: agent-platform:clusterz: unknown key" in str(caught.value)


def test_a_component_check_the_stack_config_owns_is_a_stack_file_error(run_stack):
    """KEDA without `kubernetes.keda_installed` is refused once, by the config, naming the stack file."""
    values = copy.deepcopy(stack_values("dev"))
    values["clusters"][0]["autoscaling"]["queue"] = {"target_per_pod": 10, "source": "keda"}
    with pytest.raises(pulumi.RunError) as caught:
        run_stack(values, "dev")
    assert str(caught.value).startswith("stacks/Pulumi.dev.yaml: agent-platform:clusters.workers.autoscaling")


def test_a_bug_in_a_component_is_not_blamed_on_the_stack_file(run_stack, monkeypatch):
    import components.program

    def broken(*args, **kwargs):
        raise ValueError("a bug, not a stack mistake")

    monkeypatch.setattr(components.program, "Platform", broken)
    with pytest.raises(ValueError, match="^a bug, not a stack mistake$") as caught:
        run_stack(stack_values("local"), "local")
    assert not isinstance(caught.value, pulumi.RunError)
