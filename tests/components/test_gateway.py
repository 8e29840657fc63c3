"""components/gateway.py: its ConfigMap is the runtime's contract, and its probes use the admin port."""

from __future__ import annotations

import json

import pytest

from agent_runtime.config import RuntimeConfig
from tests.stacks import stack_values

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def test_gateway_config_map_round_trips_into_the_runtime_models(run_stack):
    mocks = run_stack(stack_values("staging"), "staging")
    payload = mocks.one(CONFIG_MAP, "gateway-runtime-config").inputs["data"]["runtime.json"]
    runtime = RuntimeConfig.model_validate(json.loads(payload))
    routes = {r.path_prefix: r for r in runtime.routes}
    assert set(routes) == {"/v1/chat", "/v1/plans", "/v1/tools"}
    plans = routes["/v1/plans"]
    assert plans.balancer.strategy == "consistent_hash"
    assert plans.discovery.kind == "dns"
    assert plans.discovery.service == "coordinators-headless.agents-staging.svc.cluster.local"
    assert routes["/v1/tools"].required_capabilities == ("code",)
    assert routes["/v1/tools"].retry.max_attempts == 2


def test_gateway_mounts_the_config_map_it_was_given(run_stack):
    mocks = run_stack(stack_values("local"), "local")
    config_map = mocks.one(CONFIG_MAP, "gateway-runtime-config")
    gateway = mocks.one("kubernetes:apps/v1:Deployment", "gateway")
    pod = gateway.inputs["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "runtime-config")
    assert volume["configMap"]["name"] == config_map.inputs["metadata"]["name"]
    assert pod["containers"][0]["args"] == ["gateway", "--config", "/etc/agent-runtime/runtime.json"]


def test_routing_change_renames_the_config_map_so_the_gateway_rolls(run_stack):
    values = stack_values("local")
    first = run_stack(values, "local").one(CONFIG_MAP, "gateway-runtime-config").inputs["metadata"]["name"]
    values = {**values, "routes": [{"cluster": "workers", "path_prefix": "/chat"}]}
    second = run_stack(values, "local").one(CONFIG_MAP, "gateway-runtime-config").inputs["metadata"]["name"]
    assert first != second


def test_gateway_probes_and_scrapes_its_admin_port_not_the_routes(run_stack):
    mocks = run_stack(stack_values("local"), "local")
    pod = mocks.one("kubernetes:apps/v1:Deployment", "gateway").inputs["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["admin"] == 9901 and ports["http"] != 9901
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == 9901, probe
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9901"
    service = mocks.one("kubernetes:core/v1:Service", "gateway").inputs["spec"]
    assert {p["name"]: p["targetPort"] for p in service["ports"]} == {"http": "http", "admin": "admin"}


def test_a_runtime_config_for_another_port_is_refused_by_the_gateway(mocked_engine):
    from components.config import validate_platform
    from components.errors import ResourceError
    from components.gateway import Gateway
    from components.platform import runtime_config

    config = validate_platform(stack_values("local"), "local")
    runtime = runtime_config(config)
    other = runtime.model_copy(update={"gateway": runtime.gateway.model_copy(update={"port": config.gateway.port + 1})})
    with pytest.raises(
        ResourceError, match=r"^agent-platform:index:Gateway gw: runtime gateway.port \(\d+\) must equal"
    ):
        Gateway("gw", config.gateway, other, namespace="agents-local", environment="local")
    assert [r.typ for r in mocked_engine.resources] == [], "refused before creating any child"
