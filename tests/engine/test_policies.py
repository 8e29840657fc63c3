"""The policy pack through the real engine: shipped stacks pass, a bad stack is stopped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pulumi.automation.errors import CommandError

from tests.stacks import ROOT, STACKS

pytestmark = pytest.mark.engine

FIXTURE = ROOT / "tests" / "policies" / "fixtures" / "bad_stack.yaml"
EXPECT = "policy-fixture.agent-platform.io/expect"
# `- [mandatory] [severity: high]  image-pinned  (kubernetes:apps/v1:Deployment: agents-bad/workers)`
VIOLATION = re.compile(
    r"\[(mandatory|advisory)\](?:\s+\[severity: \w+\])?\s+([a-z0-9-]+)\s+\([^:]+:[^:]+:[^:]+: (?:[^/)]+/)?([^)]+)\)"
)


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stack_passes_its_policy_config(project, stack):
    def render_instead(config):
        # The same resources as against the stack's cluster, rendered: no cluster needed.
        config["agent-platform:kubernetes"] = {"render_dir": str(project.manifests / stack)}

    project.edit(stack, render_instead)
    import engine

    result = engine.run("preview", stack, ["policies"], backend_dir=project.backend, home=project.home,
                        echo=False, work_dir=project.root, passphrase=project.passphrase(stack))
    assert result.change_summary.get("create", 0) > 20
    assert "agent-platform-policies" in result.stdout
    mandatory = [m.group(2) for m in VIOLATION.finditer(result.stdout) if m.group(1) == "mandatory"]
    assert mandatory == [], result.stdout[-4000:]


def _fixture_program():
    import pulumi
    import pulumi_kubernetes as k8s

    provider = k8s.Provider("render", render_yaml_to_directory=str(Path(pulumi.get_stack()).resolve()))
    k8s.yaml.ConfigFile("bad", file=str(FIXTURE), opts=pulumi.ResourceOptions(provider=provider))


def test_bad_stack_is_rejected_with_exactly_the_expected_violations(project, tmp_path):
    import engine
    from pulumi import automation as auto

    expected = set()
    for document in yaml.safe_load_all(FIXTURE.read_text()):
        if document:
            names = document["metadata"].get("annotations", {}).get(EXPECT, "")
            expected |= {(n.strip(), document["metadata"]["name"]) for n in names.split(",") if n.strip()}
    assert len({policy for policy, _ in expected}) >= 10

    bin_dir = engine.toolchain_bin()
    env = engine.engine_env(bin_dir, "policy-fixture", project.backend, project.home,
                            passphrase="engine-test-passphrase", work_dir=project.root)
    engine.install_provider(bin_dir, env)
    (project.root / "stacks" / "Pulumi.policy-fixture.yaml").write_text("config: {}\n")
    options = auto.LocalWorkspaceOptions(work_dir=str(project.root), pulumi_home=str(project.home), env_vars=env,
                                         pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent)))
    stack = auto.create_or_select_stack(stack_name="policy-fixture", project_name="agent-platform",
                                        program=_fixture_program, opts=options)
    with pytest.raises(CommandError) as caught:
        stack.preview(color="never", policy_packs=[str(ROOT / "policies")],
                      policy_pack_configs=[str(ROOT / "stacks" / "policy-config.prod.json")])
    found = {(m.group(2), m.group(3)) for m in VIOLATION.finditer(str(caught.value)) if m.group(1) == "mandatory"}
    assert found == expected, f"missing {sorted(expected - found)}, unexpected {sorted(found - expected)}"
