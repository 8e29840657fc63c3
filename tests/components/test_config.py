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


# --- values Kubernetes would reject, or that would be created and never work ----------------


def _local():
    return copy.deepcopy(stack_values("local"))


@pytest.mark.parametrize("key", ["replicas", "max_instances"])
def test_counts_beyond_int32_are_refused(key):
    values = _local()
    target = values["clusters"][0] if key == "replicas" else values["clusters"][0]["autoscaling"]
    target[key] = 2**31
    path = "replicas" if key == "replicas" else "autoscaling.max_instances"
    assert f"clusters.workers.{path}: Input should be less than or equal to 2147483647" in _error(values, "local")


@pytest.mark.parametrize("deadline", [1e20, float("inf")])
def test_a_route_deadline_beyond_a_day_is_refused_not_a_traceback(deadline):
    values = _local()
    values["routes"] = [{"cluster": "workers", "deadline_seconds": deadline}]
    message = _error(values, "local")
    assert "routes[0].deadline_seconds" in message and "must be at most 86400" in message


def test_an_infinite_gateway_deadline_is_refused():
    values = _local()
    values["gateway"]["default_deadline_seconds"] = float("inf")
    assert "gateway: default_deadline_seconds (inf) must be at most 86400" in _error(values, "local")


def test_memory_in_millibytes_is_refused_with_the_fix():
    values = _local()
    values["clusters"][0]["resources"]["requests"]["memory"] = "512m"
    message = _error(values, "local")
    assert "clusters.workers.resources.requests.memory: '512m' is not a whole number of bytes" in message
    assert "write 512Mi" in message


@pytest.mark.parametrize("image", ["", " ", "registry.local/agents/worker :1"])
def test_an_empty_or_spaced_image_is_refused(image):
    values = _local()
    values["clusters"][0]["image"] = image
    assert "clusters.workers.image:" in _error(values, "local")


@pytest.mark.parametrize("name", ["", "1A", "A=B", "has space"])
def test_bad_env_names_are_refused(name):
    values = _local()
    values["clusters"][0]["env"] = {name: "x"}
    assert f"clusters.workers.env: environment variable name {name!r} is not valid" in _error(values, "local")


def test_a_cluster_name_starting_with_a_digit_is_refused_in_plain_words():
    values = _local()
    values["clusters"][0]["name"] = "1workers"
    message = _error(values, "local")
    assert "cluster name '1workers' must be lower-case letters, digits and '-', start with a letter" in message
    assert "pattern" not in message


@pytest.mark.parametrize("schedule", ["every day", "0 3 * *", "61 * * * *", "0 3 31 2 *"])
def test_a_schedule_that_is_not_cron_is_refused(schedule):
    values = _prod()
    values["backup"]["schedule"] = schedule
    assert f"backup.schedule: {schedule!r} " in _error(values)


def test_a_backup_source_whose_cronjob_name_is_too_long_is_refused():
    values = _prod()
    values["backup"]["sources"][0]["name"] = "a" * 42  # with WAL archiving: basebackup-<name>
    message = _error(values)
    assert f"backup.sources.{'a' * 42}.name is too long" in message and "53 characters" in message
    values["backup"]["sources"][0]["name"] = "a" * 41
    validate_platform(values, "prod")


def test_a_volume_size_that_is_not_a_quantity_is_refused():
    values = _prod()
    values["backup"]["target"]["size"] = "lots"
    assert "backup.target.size: 'lots' is not a Kubernetes quantity" in _error(values)


def test_a_quota_smaller_than_one_pod_is_refused():
    values = _local()
    values["quota"] = {"requests_memory": "64Mi"}
    assert "quota.requests_memory (64Mi) is smaller than one pod's memory requests" in _error(values, "local")


@pytest.mark.parametrize("prefix", ["/healthz", "/metrics", "/readyz/x"])
def test_a_route_on_the_platforms_own_paths_is_refused(prefix):
    values = _local()
    values["routes"] = [{"cluster": "workers", "path_prefix": prefix}]
    assert f"routes[0].path_prefix: path_prefix {prefix!r} is a path the platform serves itself" in _error(
        values, "local")


def test_a_health_check_path_without_a_slash_is_refused():
    values = _local()
    values["routes"] = [{"cluster": "workers", "health_check": {"path": "healthz"}}]
    assert "routes.workers.health_check.path ('healthz') must start with '/'" in _error(values, "local")


def test_a_gateway_may_not_scale_to_zero():
    values = _local()
    values["gateway"]["autoscaling"] = {"min_instances": 0, "max_instances": 2}
    assert "gateway: autoscaling.min_instances must be >= 1" in _error(values, "local")


def test_a_prod_gateway_may_not_autoscale_down_to_one():
    values = _prod()
    values["gateway"]["autoscaling"]["min_instances"] = 1
    assert "gateway.autoscaling.min_instances (1) must be >= 2 in prod" in _error(values)


def test_stack_durations_take_the_prometheus_form():
    values = _local()
    values["clusters"][0]["max_run_seconds"] = "1h30m"
    values["clusters"][0]["autoscaling"]["scale_down_cooldown"] = "5m"
    values["monitoring"] = {"scrape_interval": "1m30s"}
    config = validate_platform(values, "local")
    workers = config.cluster("workers")
    assert workers.max_run_seconds == 5400 and workers.autoscaling is not None
    assert workers.autoscaling.scale_down_cooldown == 300
    assert config.monitoring.scrape_interval == "1m30s"


@pytest.mark.parametrize(("key", "value", "says"), [
    ("max_run_seconds", "a while", "'a while' is not a duration"),
    ("max_run_seconds", "2d", "less than or equal to 86400"),
])
def test_bad_stack_durations_name_their_key(key, value, says):
    values = _local()
    values["clusters"][0][key] = value
    assert f"clusters.workers.{key}:" in (message := _error(values, "local")) and says in message


def test_a_scrape_interval_that_prometheus_would_refuse():
    values = _local()
    values["monitoring"] = {"scrape_interval": "30"}
    assert "monitoring.scrape_interval: '30' is not a Prometheus duration" in _error(values, "local")
