"""components/config.py: each bad stack value gives one clear message naming the stack file and key path."""

from __future__ import annotations

import copy

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


def test_prod_backups_without_a_drill_are_refused():
    values = copy.deepcopy(stack_values("prod"))
    values["backup"]["drill"]["enabled"] = False
    with pytest.raises(StackConfigError, match="backup.drill.enabled must be true in prod"):
        validate_platform(values, "prod")


def test_enabled_backup_without_sources_is_refused():
    values = copy.deepcopy(stack_values("dev"))
    values["backup"]["sources"] = []
    with pytest.raises(StackConfigError, match="backup.sources: backup.enabled needs at least one source"):
        validate_platform(values, "dev")


@pytest.mark.parametrize("target, error", [
    ({"kind": "s3", "endpoint": "https://s3", "bucket": "b-1", "credentials_secret": "s3"}, "encryption_secret"),
    ({"kind": "s3", "endpoint": "https://key:secret@s3", "bucket": "bkt", "credentials_secret": "s3",
      "encryption_secret": "k"}, "must not carry credentials"),
    ({"kind": "s3", "endpoint": "https://s3", "bucket": "Bad_Bucket", "credentials_secret": "s3",
      "encryption_secret": "k"}, "backup.target.bucket"),
])
def test_s3_target_without_secrets_or_with_literal_credentials_is_refused(target, error):
    values = copy.deepcopy(stack_values("dev"))
    values["backup"]["target"] = target
    with pytest.raises(StackConfigError, match=error):
        validate_platform(values, "dev")


def test_prod_backups_without_a_pushgateway_are_refused():
    values = copy.deepcopy(stack_values("prod"))
    del values["backup"]["pushgateway_url"]
    with pytest.raises(StackConfigError, match="backup.pushgateway_url must be set in prod"):
        validate_platform(values, "prod")


@pytest.mark.parametrize("url", ["ftp://gw:9091", "http://user:pw@gw:9091", "http://gw:9091/?token=x"])
def test_a_pushgateway_url_with_credentials_or_a_bad_scheme_is_refused(url):
    values = copy.deepcopy(stack_values("prod"))
    values["backup"]["pushgateway_url"] = url
    with pytest.raises(StackConfigError, match="backup.pushgateway_url"):
        validate_platform(values, "prod")


def test_keda_queue_source_without_keda_installed():
    values = copy.deepcopy(stack_values("dev"))
    values["clusters"][0]["autoscaling"]["queue"] = {"target_per_pod": 10, "source": "keda"}
    assert _error(values, "dev").endswith(
        "clusters.workers.autoscaling.queue.source is 'keda' but kubernetes.keda_installed is false")


def test_wal_archiving_on_a_files_source_is_refused():
    values = copy.deepcopy(stack_values("staging"))
    files = next(s for s in values["backup"]["sources"] if s["kind"] == "files")
    files["wal_archiving"] = {"enabled": True}
    with pytest.raises(StackConfigError, match="wal_archiving is for postgres sources only"):
        validate_platform(values, "staging")


@pytest.mark.parametrize("interval", [0, 61])
def test_a_push_interval_beyond_a_minute_is_refused(interval):
    values = copy.deepcopy(stack_values("dev"))
    source = next(s for s in values["backup"]["sources"] if s["kind"] == "postgres")
    source["wal_archiving"] = {"enabled": True, "push_interval_seconds": interval}
    with pytest.raises(StackConfigError, match="push_interval_seconds"):
        validate_platform(values, "dev")


def test_prefix_rewrite_that_would_glue_segments_names_the_route():
    values = _prod()
    values["routes"][0]["path_prefix"] = "/v1/chat/"
    values["routes"][0]["prefix_rewrite"] = "/api"
    assert "routes[0]: prefix_rewrite '/api' and path_prefix '/v1/chat/' must both end in '/' or neither" in _error(
        values
    )
    values["routes"][0]["prefix_rewrite"] = "/api/"
    validate_platform(values, "prod")
