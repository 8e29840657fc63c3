"""Building the runtime image with pulumi-docker (mocked: no Docker engine runs here)."""

from __future__ import annotations

import copy

import pytest

from components.errors import ResourceError
from tests.stacks import stack_values

IMAGE = "docker:index/image:Image"


def test_stack_without_build_references_its_pinned_image(run_stack):
    mocks = run_stack(stack_values("prod"), "prod")
    assert mocks.of_type(IMAGE) == []
    gateway = mocks.one("kubernetes:apps/v1:Deployment", "gateway")
    assert gateway.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "ghcr.io/acme/agent-platform/agent-runtime:0.1.0"


def test_build_uses_the_runtime_dockerfile_and_the_gateway_runs_the_result(run_stack):
    values = copy.deepcopy(stack_values("dev"))
    values["image_build"] = {"enabled": True, "repository": "registry.dev/agent-runtime", "tag": "0.1.0-dev"}
    mocks = run_stack(values, "dev")
    image = mocks.of_type(IMAGE)[0]
    build = image.inputs["build"]
    assert build["dockerfile"].endswith("runtime/Dockerfile")
    assert build["context"].endswith("runtime")
    assert image.inputs["imageName"] == "registry.dev/agent-runtime:0.1.0-dev"
    assert image.inputs["skipPush"] is True
    gateway = mocks.one("kubernetes:apps/v1:Deployment", "gateway")
    assert (
        gateway.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.dev/agent-runtime:0.1.0-dev"
    )


def test_latest_tag_is_refused_by_the_component_naming_itself(run_stack):
    values = copy.deepcopy(stack_values("dev"))
    values["image_build"] = {"enabled": True, "tag": "latest"}
    with pytest.raises(ResourceError) as caught:
        run_stack(values, "dev")
    assert str(caught.value) == (
        "agent-platform:index:RuntimeImage agents-runtime: "
        "image_build.tag ('latest') must name a version, never 'latest'"
    )
    assert caught.value.resource.pulumi_resource_name == "agents-runtime"
