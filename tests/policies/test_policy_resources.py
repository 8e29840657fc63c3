"""container-resources: requests and limits on every container, limits >= requests."""

import pytest
from policy_builders import container, cronjob, daemonset, deployment, job, job_pod_spec, pod_spec, service
from policy_fakes import run_resource
from pulumi_policy.proxy import UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE

from agent_policies.resources import validate_container_resources as validate


def with_resources(requests=None, limits=None, name="agent"):
    c = container(name)
    c["resources"] = {}
    if requests is not None:
        c["resources"]["requests"] = requests
    if limits is not None:
        c["resources"]["limits"] = limits
    return c


def deployment_with(*containers, init=None):
    return deployment(spec=pod_spec(containers=list(containers), init_containers=init))


def test_compliant_workloads_pass():
    for o in (deployment(), daemonset(), job(), cronjob()):
        assert run_resource(validate, o) == []


def test_missing_limits_names_the_container_and_what_is_missing():
    msgs = run_resource(validate, deployment_with(with_resources(requests={"cpu": "250m", "memory": "256Mi"})))
    assert len(msgs) == 1
    assert "Deployment 'agents/workers'" in msgs[0]
    assert "container 'agent'" in msgs[0]
    assert "no limits.cpu set" in msgs[0] and "no limits.memory set" in msgs[0]
    assert "no requests" not in msgs[0]  # the requests are there
    assert "Fix:" in msgs[0]


def test_no_resources_at_all():
    c = container()
    del c["resources"]
    msgs = run_resource(validate, deployment_with(c))
    assert len(msgs) == 1
    for part in ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory"):
        assert f"no {part} set" in msgs[0]


def test_init_containers_are_checked_and_named_as_such():
    bad_init = with_resources(requests={"cpu": "100m", "memory": "64Mi"}, name="migrate")
    msgs = run_resource(validate, deployment_with(container(), init=[bad_init]))
    assert len(msgs) == 1
    assert "init container 'migrate'" in msgs[0]


def test_cronjob_pod_template_is_checked():
    bad = with_resources(requests={"cpu": "100m"}, limits={"cpu": "200m", "memory": "64Mi"}, name="backup")
    msgs = run_resource(validate, cronjob(spec=job_pod_spec(containers=[bad])))
    assert len(msgs) == 1
    assert "CronJob 'agents/nightly'" in msgs[0] and "container 'backup'" in msgs[0]
    assert "no requests.memory set" in msgs[0]


def test_job_init_container_is_checked():
    bad_init = with_resources(limits={"cpu": "1", "memory": "1Gi"}, name="fetch")
    msgs = run_resource(validate, job(spec=job_pod_spec(init_containers=[bad_init])))
    assert len(msgs) == 1 and "init container 'fetch'" in msgs[0]


@pytest.mark.parametrize(
    "requests, limits, below",
    [
        (
            {"cpu": "1", "memory": "256Mi"},
            {"cpu": "500m", "memory": "256Mi"},
            "limits.cpu 500m is below requests.cpu 1",
        ),
        (
            {"cpu": "100m", "memory": "1Gi"},
            {"cpu": "1", "memory": "512Mi"},
            "limits.memory 512Mi is below requests.memory 1Gi",
        ),
        ({"cpu": "1.5", "memory": "1G"}, {"cpu": "1", "memory": "1Gi"}, "limits.cpu 1 is below requests.cpu 1.5"),
    ],
)
def test_limit_below_request(requests, limits, below):
    msgs = run_resource(validate, deployment_with(with_resources(requests, limits)))
    assert len(msgs) == 1 and below in msgs[0]


@pytest.mark.parametrize(
    "requests, limits",
    [
        ({"cpu": "1", "memory": "1024Mi"}, {"cpu": "1000m", "memory": "1Gi"}),  # equal in other units
        ({"cpu": "500m", "memory": "512Mi"}, {"cpu": "1", "memory": "1Gi"}),
        ({"cpu": 0.5, "memory": "1e9"}, {"cpu": 1, "memory": "1G"}),  # numbers and e-notation
    ],
)
def test_limit_at_or_above_request_passes(requests, limits):
    assert run_resource(validate, deployment_with(with_resources(requests, limits))) == []


def test_invalid_quantity_is_reported():
    msgs = run_resource(
        validate, deployment_with(with_resources({"cpu": "1 core", "memory": "1Gi"}, {"cpu": "2", "memory": "2Gi"}))
    )
    assert len(msgs) == 1 and "requests.cpu '1 core' is not a Kubernetes quantity" in msgs[0]


def test_one_message_per_bad_container():
    bad = with_resources(requests={"cpu": "1", "memory": "1Gi"})
    msgs = run_resource(
        validate,
        deployment_with(bad, container("ok"), with_resources(limits={"cpu": "1", "memory": "1Gi"}, name="side")),
    )
    assert len(msgs) == 2
    assert "container 'agent'" in msgs[0] and "container 'side'" in msgs[1]


@pytest.mark.parametrize(
    "resources",
    [
        UNKNOWN_OBJECT_VALUE,
        None,
        {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": UNKNOWN_OBJECT_VALUE},
        {"requests": {"cpu": UNKNOWN_STRING_VALUE, "memory": "256Mi"}, "limits": {"cpu": "100m", "memory": "512Mi"}},
    ],
)
def test_unknown_values_during_preview_are_not_violations(resources):
    c = container()
    c["resources"] = resources
    assert run_resource(validate, deployment_with(c)) == []


def test_unknown_container_list_is_skipped():
    d = deployment(spec={"containers": UNKNOWN_OBJECT_VALUE})
    assert run_resource(validate, d) == []


@pytest.mark.parametrize("exemption", ["workers", "workers-a1b2c3", "agents/workers-a1b2c3"])
def test_exemption_by_pulumi_name_metadata_name_or_namespaced_name(exemption):
    d = deployment_with(with_resources(requests={"cpu": "1"}))
    d["props"]["metadata"]["name"] = "workers-a1b2c3"  # auto-named by the provider
    assert run_resource(validate, d, {"exemptions": [exemption]}) == []
    assert len(run_resource(validate, d, {"exemptions": ["gateway"]})) == 1


def test_message_uses_both_names_when_they_differ():
    d = deployment_with(with_resources(requests={"cpu": "1"}))
    d["props"]["metadata"]["name"] = "workers-a1b2c3"
    (msg,) = run_resource(validate, d)
    assert "Deployment 'agents/workers-a1b2c3' (Pulumi name 'workers')" in msg


def test_other_resource_types_are_ignored():
    assert run_resource(validate, service()) == []
