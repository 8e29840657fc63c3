"""Each kind of bad stack value gives one clear message naming the stack file and key path."""

from __future__ import annotations

import copy

import pulumi
import pytest

from components.config import StackConfigError, validate_platform
from tests.stacks import stack_values


def _prod():
    return copy.deepcopy(stack_values("prod"))


def _error(values, stack="prod") -> str:
    with pytest.raises(StackConfigError) as caught:
        validate_platform(values, stack)
    message = str(caught.value)
    assert message.startswith(f"stacks/Pulumi.{stack}.yaml: agent-platform:"), message
    assert "\n" not in message and "Traceback" not in message
    return message


def test_max_below_min_names_the_autoscaling_keys():
    values = _prod()
    values["clusters"][0]["autoscaling"]["max_instances"] = 2
    assert _error(values).endswith(
        "agent-platform:clusters.workers.autoscaling: max_instances (2) must be >= min_instances (3)"
    )


def test_unknown_key_is_an_error_not_a_silent_default():
    values = _prod()
    values["clusters"][0]["replicaz"] = 3
    assert "clusters.workers.replicaz: unknown key" in _error(values)


def test_wrong_type_shows_the_value_given():
    values = _prod()
    values["clusters"][1]["replicas"] = "three"
    assert 'clusters.coordinators.replicas: Input should be a valid integer' in _error(values)
    assert '"three"' in _error(values)


def test_limits_below_requests():
    values = _prod()
    values["clusters"][2]["resources"]["limits"]["memory"] = "1Gi"
    assert "clusters.specialists.resources: limits.memory (1Gi) must be >= requests.memory (2Gi)" in _error(values)


def test_zero_replicas_in_prod():
    values = _prod()
    values["clusters"][2]["autoscaling"]["min_instances"] = 0
    assert "clusters.specialists.autoscaling.min_instances (0) must be >= 2 in prod" in _error(values)


def test_zero_replicas_is_fine_in_dev_unless_stateful():
    values = copy.deepcopy(stack_values("dev"))
    values["clusters"][2]["replicas"] = 0
    validate_platform(values, "dev")
    values["clusters"][1]["replicas"] = 0
    assert "clusters.coordinators: a stateful cluster must never scale to zero" in _error(values, "dev")


def test_malformed_quantity():
    values = _prod()
    values["clusters"][0]["resources"]["requests"]["cpu"] = "fast"
    assert "clusters.workers.resources.requests.cpu: 'fast' is not a Kubernetes quantity" in _error(values)


def test_duplicate_cluster_names():
    values = _prod()
    values["clusters"].append(copy.deepcopy(values["clusters"][0]))
    assert "agent-platform:clusters: duplicate cluster name(s): workers" in _error(values)


def test_route_to_missing_cluster():
    values = _prod()
    values["routes"][1]["cluster"] = "planners"
    assert "routes[1].cluster ('planners') names no cluster" in _error(values)


def test_unpinned_image_in_staging():
    values = copy.deepcopy(stack_values("staging"))
    values["clusters"][0]["image"] = "ghcr.io/acme/agents/worker:latest"
    assert "clusters.workers.image ('ghcr.io/acme/agents/worker:latest') must be pinned" in _error(values, "staging")


def test_pdb_that_blocks_all_disruptions():
    values = _prod()
    values["clusters"][0]["disruption_budget"] = {"max_unavailable": 0}
    assert "clusters.workers.disruption_budget.max_unavailable" in _error(values)


def test_several_mistakes_are_one_message():
    values = _prod()
    values["clusters"][0]["replicaz"] = 1
    values["gateway"]["replicas"] = "x"
    message = _error(values)
    assert "clusters.workers.replicaz" in message and "gateway.replicas" in message


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


def _with_rule(annotations, mode):
    values = _prod()
    monitoring = values.setdefault("monitoring", {})
    monitoring["mode"] = mode
    monitoring["rules"] = [{"name": "ChatErrors", "signal": "error_rate", "threshold": 0.1, "annotations": annotations}]
    return values


def test_bad_alert_template_fails_validation_naming_the_annotation():
    message = _error(_with_rule({"summary": "{{ $value | humanise }}"}, "prometheus-operator"))
    assert "rules.ChatErrors.annotations.summary: bad template" in message
    assert 'function "humanise" not defined' in message


def test_prometheus_only_template_is_refused_only_where_it_runs_in_process():
    template = {"summary": "{{ if gt $value 0.5 }}bad{{ end }}"}
    assert "not supported by the in-process evaluator" in _error(_with_rule(template, "in-process"))
    validate_platform(_with_rule(template, "prometheus-operator"), "prod")
    validate_platform(_with_rule({"summary": "{{ $labels.route | toUpper }}"}, "in-process"), "prod")
