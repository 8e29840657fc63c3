"""The deliberately bad stack (fixtures/bad_stack.yaml) and the pack as a running analyzer.

The analyzer tests start `policies/__main__.py` as a process, exactly as `pulumi preview
--policy-pack policies` does, and drive it over gRPC with the stack config files.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from policy_builders import good_stack
from policy_engine import AnalyzerProcess, load_manifests, reconcile
from policy_fakes import POLICIES_DIR, ROOT, TESTS_DIR, run_resource, run_stack
from pulumi.runtime import proto
from pulumi_policy import ResourceValidationPolicy
from pulumi_policy.proxy import UNKNOWN_NUMBER_VALUE, UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE

from agent_policies import ALL_POLICIES, PACK_NAME

BAD_STACK = os.path.join(TESTS_DIR, "fixtures", "bad_stack.yaml")


def config_file(env: str) -> str:
    return os.path.join(ROOT, "stacks", f"policy-config.{env}.json")


@pytest.fixture(scope="module")
def analyzer():
    """One analyzer process for the module; terminated (by its own pid) at the end."""
    a = AnalyzerProcess(POLICIES_DIR)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture(scope="module")
def manifests():
    return load_manifests(BAD_STACK)


def expected(manifests) -> dict[str, set[str]]:
    return {m["name"] + "/" + m["type"]: m["expect"] for m in manifests}


def test_fixture_expects_every_policy_somewhere(manifests):
    fired = set().union(*(m["expect"] for m in manifests))
    assert fired == {p.name for p in ALL_POLICIES}


def test_bad_stack_through_the_functions(manifests, analyzer):
    config = {name: props for name, (_, props) in reconcile(analyzer.info(), config_file("prod")).items()}
    actual: dict[str, set[str]] = defaultdict(set)
    by_urn = {m["urn"]: m["name"] + "/" + m["type"] for m in manifests}
    for policy in ALL_POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            for m in manifests:
                if run_resource(policy.validate, m, config[policy.name]):
                    actual[m["name"] + "/" + m["type"]].add(policy.name)
        else:
            for _, urn in run_stack(policy.validate, manifests, config[policy.name]):
                actual[by_urn[urn.replace("urn:pulumi:test::", "urn:pulumi:fixture::")]].add(policy.name)
    assert {k: v for k, v in actual.items() if v} == {k: v for k, v in expected(manifests).items() if v}


def run_through_analyzer(analyzer, manifests):
    """{object: {policy: enforcement level name}} from Analyze per resource plus AnalyzeStack."""
    by_urn = {m["urn"]: m["name"] + "/" + m["type"] for m in manifests}
    actual: dict[str, dict[str, int]] = defaultdict(dict)
    for m in manifests:
        for d in analyzer.analyze(m):
            assert d.policyPackName == PACK_NAME
            actual[m["name"] + "/" + m["type"]][d.policyName] = d.enforcementLevel
            assert "Fix:" in d.message, d.message
    for d in analyzer.analyze_stack(manifests):
        assert d.urn in by_urn, f"stack violation without a resource: {d.message}"
        actual[by_urn[d.urn]][d.policyName] = d.enforcementLevel
    return actual


def test_analyzer_describes_the_pack(analyzer):
    info = analyzer.info()
    assert info.name == PACK_NAME and info.supportsConfig
    assert sorted(p.name for p in info.policies) == sorted(p.name for p in ALL_POLICIES)
    for p in info.policies:
        assert p.enforcementLevel == proto.MANDATORY  # fail closed without a config file
        assert "exemptions" in p.configSchema.properties


def test_prod_config_blocks_every_expected_violation(analyzer, manifests):
    analyzer.configure(config_file("prod"))
    actual = run_through_analyzer(analyzer, manifests)
    assert {k: set(v) for k, v in actual.items()} == {k: v for k, v in expected(manifests).items() if v}
    assert {level for v in actual.values() for level in v.values()} == {proto.MANDATORY}


def test_staging_config_is_mandatory_too(analyzer, manifests):
    analyzer.configure(config_file("staging"))
    actual = run_through_analyzer(analyzer, manifests)
    assert {level for v in actual.values() for level in v.values()} == {proto.MANDATORY}
    assert "production-pdb" in actual["workers/kubernetes:apps/v1:Deployment"]


@pytest.mark.parametrize("env", ["local", "dev"])
def test_local_and_dev_are_advisory_without_production_rules(analyzer, manifests, env):
    analyzer.configure(config_file(env))
    actual = run_through_analyzer(analyzer, manifests)
    assert {level for v in actual.values() for level in v.values()} == {proto.ADVISORY}
    fired = {p for v in actual.values() for p in v}
    assert "container-resources" in fired and "no-plaintext-secrets" in fired
    assert not fired & {"production-pdb", "topology-spread"}
    if env == "local":
        assert "production-replicas" not in fired
    else:  # dev keeps it, relaxed to one replica: the one-replica Deployment passes
        assert "production-replicas" not in actual["workers/kubernetes:apps/v1:Deployment"]


def test_restore_drill_required_in_prod_not_dev(analyzer):
    ns = [m for m in load_manifests(BAD_STACK) if m["type"] == "kubernetes:core/v1:Namespace"]
    analyzer.configure(config_file("prod"))
    prod = [d.message for d in analyzer.analyze_stack(ns) if d.policyName == "backup-coverage"]
    analyzer.configure(config_file("dev"))
    dev = [d.message for d in analyzer.analyze_stack(ns) if d.policyName == "backup-coverage"]
    assert any("no restore-drill CronJob" in m for m in prod)
    assert dev and not any("no restore-drill CronJob" in m for m in dev)


def test_compliant_stack_is_clean_through_the_analyzer(analyzer):
    analyzer.configure(config_file("prod"))
    stack = [dict(o, urn=f"urn:pulumi:prod::agent-platform::{o['type']}::{o['name']}") for o in good_stack()]
    diagnostics = [d for o in stack for d in analyzer.analyze(o)] + analyzer.analyze_stack(stack)
    assert [(d.policyName, d.message) for d in diagnostics] == []


def test_unknowns_over_the_wire_never_block_a_preview(analyzer, manifests):
    analyzer.configure(config_file("prod"))
    stack = [dict(o, urn=f"urn:pulumi:prod::agent-platform::{o['type']}::{o['name']}") for o in good_stack()]
    workers = stack[2]["props"]
    assert workers["metadata"]["name"] == "workers"
    workers["spec"]["template"]["spec"]["containers"][0]["image"] = UNKNOWN_STRING_VALUE
    workers["spec"]["template"]["spec"]["containers"][0]["resources"] = UNKNOWN_OBJECT_VALUE
    workers["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = UNKNOWN_NUMBER_VALUE
    stack[0]["props"]["metadata"]["annotations"]["agent-platform.io/state-sources"] = UNKNOWN_STRING_VALUE
    diagnostics = [d for o in stack for d in analyzer.analyze(o)] + analyzer.analyze_stack(stack)
    # An UnknownValueError would come back as an advisory "can't run policy ... during preview".
    assert [(d.policyName, d.message) for d in diagnostics] == []
