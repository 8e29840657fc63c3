"""Preview safety: no policy crashes or reports a violation because a value is not known yet.

pulumi_policy hands properties over in proxies that raise UnknownValueError on any unknown value.
These tests go through the real proxies and the real args classes: take the compliant stack, make
one property (a leaf or a whole subtree) unknown at a time, and run every policy. Whatever the
unknown resolves to could be the compliant value, so any violation is a false one.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest
from policy_builders import PROD_CONFIG, good_stack
from policy_engine import load_manifests
from policy_fakes import TESTS_DIR, FakeResource, FakeResourceArgs, FakeStackArgs, Violations, urn_for
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.proxy import (
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
    unknown_checking_proxy,
)

from agent_policies import ALL_POLICIES
from agent_policies.k8s import UNKNOWN, plain

OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def sentinel_for(value: Any) -> str:
    if isinstance(value, bool):
        return UNKNOWN_BOOLEAN_VALUE
    if isinstance(value, (int, float)):
        return UNKNOWN_NUMBER_VALUE
    if isinstance(value, str):
        return UNKNOWN_STRING_VALUE
    if isinstance(value, list):
        return UNKNOWN_ARRAY_VALUE
    return UNKNOWN_OBJECT_VALUE


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every property path of a tree (each dict key and list index, at every depth)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield prefix + (k,)
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield prefix + (i,)
            yield from paths(v, prefix + (i,))


def _at(props: dict, path: tuple) -> Any:
    for key in path:
        props = props[key]
    return props


def replaced(props: dict, path: tuple, make) -> dict:
    out = copy.deepcopy(props)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = make(node[path[-1]])
    return out


def real_resource_args(o: dict, config: Any) -> ResourceValidationArgs:
    # unknown_checking_proxy copies the containers it wraps, as the analyzer's deserializer does.
    return ResourceValidationArgs(
        o["type"], unknown_checking_proxy(o["props"]), urn_for(o["type"], o["name"]), o["name"], OPTS, None, config
    )


def real_stack_resources(stack: list[dict]) -> list[PolicyResource]:
    return [
        PolicyResource(
            o["type"], unknown_checking_proxy(o["props"]), urn_for(o["type"], o["name"]), o["name"],
            OPTS, None, None, [], {},
        )
        for o in stack
    ]


def run_everything(stack: list[dict], only: int | None = None) -> list[tuple[str, str, str]]:
    """All policies through the real args classes; resource policies on stack[only] (or all).
    Returns (policy, urn of the resource reported, message)."""
    fired = []
    resources = real_stack_resources(stack)
    for policy in ALL_POLICIES:
        config = PROD_CONFIG.get(policy.name)
        if isinstance(policy, ResourceValidationPolicy):
            targets = stack if only is None else [stack[only]]
            for o in targets:
                report = Violations()
                policy.validate(real_resource_args(o, config), report)
                fired += [(policy.name, urn_for(o["type"], o["name"]), m) for m in report.messages]
        else:
            report = Violations()
            policy.validate(StackValidationArgs(resources, config), report)
            fired += [(policy.name, urn, m) for m, urn in report.calls]
    return fired


CASES = [
    (monitoring, i, path)
    for monitoring in ("prometheus-operator", "in-process")
    for i, o in enumerate(good_stack(monitoring))
    for path in paths(o["props"])
]


def test_the_compliant_stack_passes_through_real_proxies():
    for monitoring in ("prometheus-operator", "in-process"):
        assert run_everything(good_stack(monitoring)) == []


def test_there_are_many_cases():
    assert len(CASES) > 1000  # guards against the fuzzing silently covering nothing


@pytest.mark.parametrize("as_none", [False, True], ids=["sentinel", "none"])
def test_no_unknown_property_causes_a_crash_or_a_violation(as_none):
    failures = []
    stacks = {m: good_stack(m) for m in ("prometheus-operator", "in-process")}
    for monitoring, i, path in CASES:
        stack = list(stacks[monitoring])
        if as_none and isinstance(_at(stack[i]["props"], path), (dict, list)):
            continue  # a None subtree reads exactly like an unknown one; the leaves are what differ
        make = (lambda _v: None) if as_none else sentinel_for
        stack[i] = dict(stack[i], props=replaced(stack[i]["props"], path, make))
        try:
            fired = run_everything(stack, only=i)
        except UnknownValueError as e:  # would surface as "can't run policy during preview"
            failures.append((stack[i]["name"], path, f"UnknownValueError {e.message}"))
            continue
        if fired:
            failures.append((stack[i]["name"], path, fired))
    assert failures == []


def test_unknown_metadata_name_everywhere_at_once():
    stack = good_stack()
    for o in stack:
        o["props"]["metadata"]["name"] = UNKNOWN_STRING_VALUE
        if "namespace" in o["props"]["metadata"]:
            o["props"]["metadata"]["namespace"] = UNKNOWN_STRING_VALUE
    assert run_everything(stack) == []


def test_plain_unwraps_real_proxies_without_raising():
    props = unknown_checking_proxy(
        {"a": [1, UNKNOWN_NUMBER_VALUE, {"b": UNKNOWN_STRING_VALUE}], "c": UNKNOWN_OBJECT_VALUE, "d": None, "e": "x"}
    )
    with pytest.raises(UnknownValueError):
        props["c"]  # what a rule would hit without plain()
    assert plain(props) == {"a": [1, UNKNOWN, {"b": UNKNOWN}], "c": UNKNOWN, "d": UNKNOWN, "e": "x"}


def test_fakes_have_the_attributes_of_the_real_args():
    real = ResourceValidationArgs("t", {}, "u", "n", OPTS, None, {"k": 1})
    fake = FakeResourceArgs("t", {}, "u", "n", {"k": 1})
    for attr in ("resource_type", "props", "urn", "name", "opts", "provider", "stack_tags"):
        assert hasattr(real, attr) and hasattr(fake, attr), attr
    assert real.get_config() == fake.get_config() == {"k": 1}
    real_stack = StackValidationArgs([], {"k": 2})
    fake_stack = FakeStackArgs([], {"k": 2})
    assert real_stack.get_config() == fake_stack.get_config() == {"k": 2}
    real_res = PolicyResource("t", {}, "u", "n", OPTS, None, None, [], {})
    fake_res = FakeResource("t", {}, "u", "n")
    for attr in vars(real_res):
        assert hasattr(fake_res, attr), attr


def test_unknowns_in_a_bad_stack_never_crash_and_never_add_a_violation():
    """The failing paths meet unknowns too. A violation that still fires with a value unknown must
    hold whatever the value turns out to be, so it fired without the unknown as well."""
    bad = load_manifests(os.path.join(TESTS_DIR, "fixtures", "bad_stack.yaml"))

    def pairs(stack, only=None):
        return {(policy, urn) for policy, urn, _ in run_everything(stack, only=only)}

    baseline = {i: pairs(bad, only=i) for i in range(len(bad))}
    checked = 0
    for i, o in enumerate(bad):
        for path in paths(o["props"]):
            stack = list(bad)
            stack[i] = dict(o, props=replaced(o["props"], path, sentinel_for))
            got = pairs(stack, only=i)  # UnknownValueError or TypeError would fail the test here
            assert got <= baseline[i] | pairs(bad), (o["name"], path, got - baseline[i])
            checked += 1
    assert checked > 200
