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
