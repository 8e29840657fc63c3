"""components/platform.py: the namespace it closes by default, and what it hands the gateway."""

from __future__ import annotations

import copy
import json

from agent_runtime.alerts import AlertEvaluator, RegistrySource, samples_from_registry
from agent_runtime.alerts.signals import SIGNALS
from components.config import validate_platform
from components.monitoring import alert_rules
from components.platform import runtime_config
from tests.gateway_metrics import GatewayReplica
from tests.stacks import stack_values

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _in_process_with_backups():
    values = copy.deepcopy(stack_values("dev"))
    config = validate_platform(values, "dev")
    assert config.monitoring.mode == "in-process"
    return config


def test_in_process_gateway_gets_only_rules_its_registry_can_answer():
    config = _in_process_with_backups()
    rules = alert_rules(config)
    handed = runtime_config(config, rules).alerts.rules
    assert {r.name for r in handed} >= {"AgentHighErrorRate", "AgentErrorBudgetBurnFast", "AgentBreakerOpen"}
    assert all(SIGNALS[r.signal].exporter == "gateway" for r in handed)
    assert config.backup.enabled
    assert "AgentBackupMissed" in {r.name for r in rules} - {r.name for r in handed}


def test_in_process_rules_stay_silent_on_a_healthy_gateway():
    """Every rule handed to the gateway evaluates on its real registry and none fires falsely."""
    config = _in_process_with_backups()
    alerting = runtime_config(config, alert_rules(config)).alerts
    gateway = GatewayReplica()
    gateway.request("chat", 200, seconds=0.05, n=50)
    ev = AlertEvaluator(alerting.model_copy(update={"webhook_url": None}), sources=[RegistrySource(gateway.registry)])

    for t in (0.0, 600.0):
        gateway.request("chat", 200, seconds=0.05, n=50)
        ev.evaluate(samples_from_registry(gateway.registry), t)
    assert ev.alerts() == []
    assert all(r.health == "ok" for r in ev.rules), [(r.rule.name, r.last_error) for r in ev.rules]
    json.dumps(alerting.model_dump(mode="json"))  # what goes into the ConfigMap serialises


def test_namespace_is_default_deny_with_only_the_needed_allows(run_stack):
    mocks = run_stack(stack_values("prod"), "prod")
    policies = {p.inputs["metadata"]["name"]: p.inputs["spec"] for p in mocks.of_type(NETWORK_POLICY)}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    to_agents = policies["allow-gateway-to-agents"]["ingress"][0]
    assert to_agents["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "gateway", "app.kubernetes.io/component": "gateway"}}}]
    assert {p["port"] for p in to_agents["ports"]} == {8080}
    assert {p["port"] for p in policies["allow-dns"]["egress"][0]["ports"]} == {53}
    assert "allow-metrics-scraping" in policies


def test_namespace_declares_state_sources_and_monitoring_for_the_policies(run_stack):
    mocks = run_stack(stack_values("staging"), "staging")
    namespace = mocks.of_type("kubernetes:core/v1:Namespace")[0].inputs["metadata"]
    assert namespace["name"] == "agents-staging"
    assert namespace["annotations"]["agent-platform.io/state-sources"] == "agent-state,workspace"
    assert namespace["annotations"]["agent-platform.io/monitoring"] == "prometheus-operator"
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_route_deadlines_default_to_the_clusters_longest_run_and_shorter_ones_are_refused():
    import copy

    import pytest

    from components.config import StackConfigError, validate_platform
    from components.platform import runtime_config

    values = copy.deepcopy(stack_values("prod"))
    config = validate_platform(values, "prod")
    for route in runtime_config(config).routes:
        longest = config.cluster(route.cluster).max_run_seconds
        assert route.deadline_seconds == longest and route.timeout_seconds == longest
    cluster = values["clusters"][0]
    values["routes"] = [{"cluster": cluster["name"], "deadline_seconds": 60}]
    with pytest.raises(StackConfigError) as caught:
        validate_platform(values, "prod")
    assert "routes[0].deadline_seconds (60) is shorter than clusters." in str(caught.value)
    values["routes"][0]["short_deadline"] = True  # the route says so: accepted
    assert validate_platform(values, "prod").routes[0].deadline_seconds == 60


# --- NetworkPolicies read as a cluster enforces them -------------------------------------------
# A small evaluator of the NetworkPolicy semantics (a pod is isolated in a direction once any
# policy selecting it names that direction; a flow needs the source's egress and the
# destination's ingress). The node tier checks the same paths against a real enforcer.

import ipaddress  # noqa: E402

from components import labels as L  # noqa: E402
from components.backup import job_labels  # noqa: E402
from components.database import database_selector  # noqa: E402
from components.platform import network_policies  # noqa: E402


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: dict, other: dict, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if other.get("namespace"):  # pod addresses: treated as cluster-internal (10.0.0.0/8 here)
            address = ipaddress.ip_address("10.244.0.10")
        else:
            address = ipaddress.ip_address(other["ip"])
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", []))
    if not other.get("namespace"):
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": other["namespace"]}
        if not _selects(peer["namespaceSelector"], ns_labels):
            return False
    elif other["namespace"] != policy_namespace:
        return False
    return _selects(peer.get("podSelector", {}), other["labels"])


def _allowed(policies, pod: dict, other: dict, port: int, direction: str) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [p for p in policies.values()
                 if direction in p["policyTypes"] and _selects(p["podSelector"], pod["labels"])]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy.get(key, []):
            ports_ok = "ports" not in rule or any(r["port"] == port for r in rule["ports"])
            peers_ok = peers_key not in rule or any(_peer_matches(p, other, pod["namespace"]) for p in rule[peers_key])
            if ports_ok and peers_ok:
                return True
    return False


def flow_allowed(policies, namespace: str, source: dict, destination: dict, port: int) -> bool:
    """`policies` govern `namespace`; pods elsewhere (monitoring, kube-system) have none."""
    egress = source.get("namespace") != namespace or _allowed(policies, source, destination, port, "Egress")
    ingress = destination.get("namespace") != namespace or _allowed(policies, destination, source, port, "Ingress")
    return egress and ingress


def _node_like_config():
    values = copy.deepcopy(stack_values("staging"))
    values["databases"] = [{"name": "postgres", "image": "agent-platform.local/postgres:15",
                            "password_secret": "agent-state-db"}]
    values["monitoring"] = {"mode": "in-process", "webhook_url": "https://alerts.example.com:8443/hook"}
    values["backup"]["target"] = {"kind": "s3", "endpoint": "https://s3.example.com:9000", "bucket": "agents",
                                  "credentials_secret": "s3-creds", "encryption_secret": "backup-key"}
    return validate_platform(values, "staging")


def test_network_policies_open_every_path_the_platform_uses_and_nothing_else():
    config = _node_like_config()
    ns = config.namespace
    policies = network_policies(config, L.gateway_selector())

    def pod(labels, namespace=ns):
        return {"namespace": namespace, "labels": {**labels, L.PART_OF_KEY: L.PART_OF}}

    gateway = pod(L.gateway_selector())
    agent = pod({**L.agents_selector(), L.NAME: "workers"})
    other_agent = pod({**L.agents_selector(), L.NAME: "coordinators"})
    database = pod(database_selector("postgres"))
    backup_job = pod(job_labels("backup", "agent-state"))
    drill_job = pod(job_labels("restore-drill", None))
    wal_receiver = pod(L.selector_labels("wal-agent-state", "wal-receiver"))
    stray = {"namespace": ns, "labels": {"app": "stray"}}
    prometheus = {"namespace": "monitoring", "labels": {"app": "prometheus"}}
    coredns = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}
    client = {"ip": "203.0.113.7"}
    outside = {"ip": "203.0.113.5"}  # the S3 store, the Pushgateway, the webhook, a model API
    agent_port, db_port, admin = 8080, 5432, config.gateway.admin_port

    allowed = [
        (client, gateway, config.gateway.port),
        (gateway, agent, agent_port),
        (agent, other_agent, agent_port),
        (agent, database, db_port),
        (backup_job, database, db_port),
        (drill_job, database, db_port),
        (wal_receiver, database, db_port),
        (backup_job, outside, 9000),  # S3 target
        (drill_job, outside, 9091),  # Pushgateway
        (gateway, outside, 8443),  # alert webhook
        (agent, outside, 443),  # model APIs
        (prometheus, agent, agent_port),
        (prometheus, gateway, admin),
        (agent, coredns, 53),
        (backup_job, coredns, 53),
    ]
    refused = [
        (stray, agent, agent_port),
        (stray, database, db_port),
        (client, gateway, admin),  # the admin listener is not public
        (agent, gateway, admin),
        (agent, gateway, config.gateway.port),
        (gateway, database, db_port),
        (backup_job, agent, agent_port),
        (backup_job, outside, 443),
        (gateway, outside, 443),
        (stray, outside, 443),
        (client, database, db_port),
    ]
    blocked = [(s["labels"] if "labels" in s else s, d.get("labels", d), p) for s, d, p in allowed
               if not flow_allowed(policies, ns, s, d, p)]
    assert blocked == []
    assert [f for f in refused if flow_allowed(policies, ns, *f)] == []


def test_backup_job_pods_carry_the_labels_the_policies_select(run_stack):
    values = copy.deepcopy(stack_values("staging"))
    mocks = run_stack(values, "staging")
    jobs = mocks.of_type("kubernetes:batch/v1:CronJob")
    assert jobs
    for job in jobs:
        labels = job.inputs["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels[L.COMPONENT] in {"backup", "restore", "restore-drill"}, job.inputs["metadata"]["name"]
