"""The shipped stacks, built by the real program under Pulumi mocks (the `run_stack` fixture of
tests/conftest.py), pass the pack with their own stacks/policy-config.<env>.json: a stack that
its own mandatory policies would block cannot be deployed."""

from __future__ import annotations

import json
import os

import pytest
from policy_fakes import ROOT, run_resource
from policy_fakes import run_stack as run_stack_policy
from pulumi_policy import ResourceValidationPolicy

from agent_policies import ALL_POLICIES
from tests.stacks import STACKS, stack_values


def stack_policy_config(env: str) -> dict[str, tuple[str, dict]]:
    """{policy: (level, properties)} as the CLI reconciles the file ("all", then per policy)."""
    with open(os.path.join(ROOT, "stacks", f"policy-config.{env}.json")) as f:
        raw = json.load(f)
    out = {}
    for p in ALL_POLICIES:
        block = raw.get(p.name, {})
        block = {"enforcementLevel": block} if isinstance(block, str) else dict(block)
        out[p.name] = (block.pop("enforcementLevel", raw["all"]), block)
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stack_passes_its_own_policies(run_stack, stack):
    mocks = run_stack(stack_values(stack), stack)
    objs = [
        {"type": r.typ, "name": r.name, "props": r.inputs} for r in mocks.resources if r.typ.startswith("kubernetes:")
    ]
    assert len(objs) > 10
    fired = {}
    for p in ALL_POLICIES:
        level, config = stack_policy_config(stack)[p.name]
        if level == "disabled":
            continue
        if isinstance(p, ResourceValidationPolicy):
            messages = [m for o in objs for m in run_resource(p.validate, o, config)]
        else:
            messages = [m for m, _ in run_stack_policy(p.validate, objs, config)]
        if messages:
            fired[p.name] = messages
    assert fired == {}


def test_the_check_can_fail(run_stack):
    """The same run catches a violation planted in what the program built."""
    mocks = run_stack(stack_values("prod"), "prod")
    objs = [
        {"type": r.typ, "name": r.name, "props": r.inputs} for r in mocks.resources if r.typ.startswith("kubernetes:")
    ]
    deployment = next(o for o in objs if o["type"] == "kubernetes:apps/v1:Deployment")
    deployment["props"]["spec"]["template"]["spec"]["containers"][0]["image"] = "docker.io/x/agent:latest"
    pinned = next(p for p in ALL_POLICIES if p.name == "image-pinned")
    assert len(run_resource(pinned.validate, deployment, stack_policy_config("prod")["image-pinned"][1])) == 1
