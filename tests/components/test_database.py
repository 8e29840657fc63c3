"""components/database.py: the stack's own PostgreSQL, restricted, its data kept, its password a Secret."""

from __future__ import annotations

import copy

import pytest

from components.config import StackConfigError, validate_platform
from tests.stacks import stack_values

STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
SERVICE = "kubernetes:core/v1:Service"
DB = {"name": "postgres", "image": "agent-platform.local/postgres:15", "password_secret": "agent-state-db"}


def _with_database(**overrides):
    values = copy.deepcopy(stack_values("staging"))
    values["databases"] = [{**DB, **overrides}]
    return values


def test_database_is_a_restricted_statefulset_of_one_that_keeps_its_volume(run_stack):
    mocks = run_stack(_with_database(volume_size="5Gi"), "staging")
    sets = {s.inputs["metadata"]["name"]: s.inputs["spec"] for s in mocks.of_type(STATEFUL_SET)}
    spec = sets["postgres"]
    assert spec["replicas"] == 1
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    password = next(e for e in container["env"] if e["name"] == "POSTGRES_PASSWORD")
    assert password == {"name": "POSTGRES_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "agent-state-db", "key": "password"}}}
    services = {s.inputs["metadata"]["name"]: s.inputs["spec"] for s in mocks.of_type(SERVICE)}
    assert services["postgres"]["ports"][0]["port"] == 5432
    assert services["postgres"]["selector"] == spec["selector"]["matchLabels"]


@pytest.mark.parametrize(("override", "message"), [
    ({"name": "workers"}, "databases[0].name ('workers') is already a Service of this stack"),
    ({"name": "workers-headless"}, "already a Service"),
    ({"volume_size": "lots"}, "databases.postgres.volume_size"),
    ({"password_secret": "Not_A_Name"}, "databases.postgres.password_secret"),
])
def test_bad_database_values_name_their_key(override, message):
    with pytest.raises(StackConfigError) as err:
        validate_platform(_with_database(**override), "staging")
    assert message in str(err.value)
