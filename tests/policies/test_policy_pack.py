"""The pack's shape: names, schemas, the per-stack config files and the docs that describe them."""

from __future__ import annotations

import ast
import json
import os
import re

import jsonschema
import pytest
import yaml
from policy_fakes import POLICIES_DIR, ROOT
from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from agent_policies import ALL_POLICIES, PACK_NAME
from agent_policies.config import POLICY_CONFIG, defaults_for, properties_for, read_config

ENVS = ("local", "dev", "staging", "prod")
PRODUCTION_ONLY = ("production-replicas", "production-pdb", "topology-spread")
STACK_POLICIES = {
    "production-replicas",
    "production-pdb",
    "stateful-agents-not-autoscaled",
    "namespace-default-deny",
    "backup-coverage",
    "alert-coverage",
}


def load_config(env):
    with open(os.path.join(ROOT, "stacks", f"policy-config.{env}.json")) as f:
        return json.load(f)


def level_of(config, name):
    block = config.get(name)
    if isinstance(block, str):
        return block
    if isinstance(block, dict) and "enforcementLevel" in block:
        return block["enforcementLevel"]
    return config["all"]


def test_pack_name_and_unique_policy_names():
    assert PACK_NAME == "agent-platform-policies"
    names = [p.name for p in ALL_POLICIES]
    assert len(names) == len(set(names)) == 16
    assert set(names) == set(POLICY_CONFIG)
    assert {p.name for p in ALL_POLICIES if isinstance(p, StackValidationPolicy)} == STACK_POLICIES


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: p.name)
def test_every_policy_explains_itself_and_takes_exemptions(policy):
    assert len(policy.description) > 60 and policy.description[0].isupper()
    assert policy.remediation_steps and policy.remediation_steps.endswith(".")
    assert policy.enforcement_level is None  # the pack default and the stack config decide
    assert policy.config_schema.properties == properties_for(policy.name)
    assert "exemptions" in policy.config_schema.properties
    assert isinstance(policy, (ResourceValidationPolicy, StackValidationPolicy))


def test_config_defaults_and_engine_floats():
    assert defaults_for("production-replicas") == {"exemptions": [], "minReplicas": 2}
    assert read_config("production-replicas", {"minReplicas": 3.0})["minReplicas"] == 3
    assert read_config("hpa-sane", None)["minScaleDownStabilizationSeconds"] == 60
    assert read_config("backup-coverage", {"requireRestoreDrill": True, "typo": 1}) == {
        "exemptions": [],
        "requireRestoreDrill": True,
    }


@pytest.mark.parametrize("env", ENVS)
def test_stack_config_matches_the_schemas_strictly(env):
    """Pulumi accepts unknown keys silently; a typo here would quietly keep a default."""
    config = load_config(env)
    assert config["all"] in ("advisory", "mandatory")
    for name, block in config.items():
        if name == "all":
            continue
        assert name in POLICY_CONFIG, f"{env}: unknown policy {name!r}"
        if isinstance(block, str):
            assert block in ("advisory", "mandatory", "disabled")
            continue
        schema = {
            "type": "object",
            "properties": {**properties_for(name), "enforcementLevel": {"enum": ["advisory", "mandatory", "disabled"]}},
            "additionalProperties": False,
        }
        jsonschema.validate(block, schema)


@pytest.mark.parametrize("env", ["local", "dev"])
def test_local_and_dev_are_advisory_and_relax_production_rules(env):
    config = load_config(env)
    for p in ALL_POLICIES:
        assert level_of(config, p.name) in ("advisory", "disabled"), p.name
    for name in PRODUCTION_ONLY:
        relaxed = level_of(config, name) == "disabled" or config[name].get("minReplicas") == 1
        assert relaxed, f"{env}: {name} is neither disabled nor relaxed"
    assert level_of(load_config("local"), "production-replicas") == "disabled"  # local runs 1 replica
    assert config.get("backup-coverage", {}).get("requireRestoreDrill", False) is False


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_are_mandatory(env):
    config = load_config(env)
    for p in ALL_POLICIES:
        assert level_of(config, p.name) == "mandatory", p.name
    assert config["backup-coverage"]["requireRestoreDrill"] is True
    assert config["production-replicas"].get("minReplicas", 2) >= 2
    assert config["no-loadbalancer-services"].get("allowLoadBalancer", False) is False


def test_policy_pack_project_file():
    with open(os.path.join(POLICIES_DIR, "PulumiPolicy.yaml")) as f:
        project = yaml.safe_load(f)
    runtime = project["runtime"]
    assert (runtime if isinstance(runtime, str) else runtime["name"]) == "python"
    venv = runtime["options"]["virtualenv"]
    assert os.path.isfile(os.path.join(POLICIES_DIR, venv, "bin", "python"))
    with open(os.path.join(POLICIES_DIR, "requirements.txt")) as f:
        reqs = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        pinned = {line.split("==")[0]: line.strip() for line in f if "==" in line}
    assert reqs == [pinned["pulumi-policy"]]


def test_main_only_builds_the_pack():
    with open(os.path.join(POLICIES_DIR, "__main__.py")) as f:
        tree = ast.parse(f.read())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1
    kwargs = {k.arg: k.value for k in calls[0].keywords}
    assert getattr(kwargs["policies"], "id", None) == "ALL_POLICIES"
    assert ast.unparse(kwargs["enforcement_level"]) == "EnforcementLevel.MANDATORY"


def test_readme_documents_every_policy_and_its_levels():
    # The project README holds the policy section (rules, levels, exemptions, adding one).
    with open(os.path.join(POLICIES_DIR, os.pardir, "README.md")) as f:
        readme = f.read()
    for p in ALL_POLICIES:
        assert re.search(rf"`{re.escape(p.name)}`", readme), p.name
    for word in ("exemptions", "--policy-pack-config", "advisory", "mandatory", "disabled"):
        assert word in readme
