"""What the README tells a user to type, typed: the bare `pulumi` with the project's language host.

No Automation API here: each command is the CLI in a subprocess, in a scratch copy of the project
(Pulumi.yaml, stacks/, and links to the program and its virtualenv), with the user's environment
reduced to a backend, a PULUMI_HOME and a passphrase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.stacks import ROOT

pytestmark = pytest.mark.engine

PACK = ["--policy-pack", str(ROOT / "policies")]


@pytest.fixture
def cli(project, toolchain):
    """`pulumi ...` in the scratch project, as a user with the toolchain's bin dir on PATH runs it."""
    import engine

    engine.link_program(project.root)
    env = {
        "PATH": f"{toolchain}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "PULUMI_HOME": str(project.home),
        "PULUMI_BACKEND_URL": f"file://{project.backend}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }
    project.backend.mkdir(parents=True, exist_ok=True)
    engine.install_provider(toolchain, env)

    def run(*args: str, passphrase: str = "agent-platform-local", check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["pulumi", *args], cwd=project.root, capture_output=True, text=True, timeout=600,
                              env={**env, "PULUMI_CONFIG_PASSPHRASE": passphrase})
        if check:
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    return run


def test_up_output_about_preview_destroy_of_the_local_stack(cli, project):
    cli("stack", "init", "local")
    up = cli("up", "-s", "local", "--yes", *PACK, "--policy-pack-config", "stacks/policy-config.local.json")
    assert "agent-platform-policies" in up.stdout and "created" in up.stdout
    outputs = json.loads(cli("stack", "output", "-s", "local", "--json").stdout)
    assert outputs["namespace"] == "agents-local"
    assert len(list(project.manifests.rglob("*.yaml"))) > 20

    about = json.loads(cli("about", "-s", "local", "--json").stdout)
    assert about["runtime"]["language"] == "python"
    assert about["runtime"]["executable"] == str(project.root / ".venv" / "bin" / "python")
    assert {"pulumi_kubernetes", "pulumi_policy"} <= {d["name"] for d in about["dependencies"]}
    # The host sits beside the CLI: the engine does not warn about one found on PATH.
    assert "from $PATH" not in up.stdout + up.stderr

    # (No `pulumi refresh` here: render mode has no cluster to read back; tests/cluster refreshes.)
    cli("preview", "-s", "local", "--expect-no-changes", *PACK,
        "--policy-pack-config", "stacks/policy-config.local.json")
    cli("destroy", "-s", "local", "--yes")
    assert list(project.manifests.rglob("*.yaml")) == []


def test_prod_preview_with_its_policy_config(cli, project):
    def render_instead(config):
        config["agent-platform:kubernetes"] = {"render_dir": str(project.manifests / "prod")}

    project.edit("prod", render_instead)
    cli("stack", "init", "prod", passphrase="a-passphrase-of-mine")
    preview = cli("preview", "-s", "prod", *PACK, "--policy-pack-config", "stacks/policy-config.prod.json",
                  passphrase="a-passphrase-of-mine")
    assert "agent-platform-policies" in preview.stdout
    assert "mandatory" not in preview.stdout, preview.stdout[-3000:]


def test_prod_refuses_the_public_passphrase_with_one_message(cli, project):
    cli("stack", "init", "prod")  # the CLI itself accepts any passphrase...
    preview = cli("preview", "-s", "prod", passphrase="agent-platform-local", check=False)
    text = preview.stdout + preview.stderr
    assert preview.returncode != 0
    # ...the program refuses before creating anything, naming the stack and the fix.
    assert "stack 'prod': its secrets would be encrypted with the public passphrase" in text
    assert "Fix:" in text and "Traceback" not in text
    assert "kubernetes:" not in text


def test_a_bad_stack_value_is_one_line_without_traceback(cli, project):
    def break_it(config):
        config["agent-platform:clusters"][0]["autoscaling"]["max_instances"] = 0

    project.edit("local", break_it)
    cli("stack", "init", "local")
    preview = cli("preview", "-s", "local", check=False)
    text = preview.stdout + preview.stderr
    assert preview.returncode != 0
    assert "stacks/Pulumi.local.yaml: agent-platform:clusters.workers.autoscaling" in text
    assert "Traceback" not in text


def test_make_template_renders_prod_without_a_cluster_or_its_state(tmp_path, toolchain):
    out = tmp_path / "prod"
    prod_before = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env["PULUMI_HOME"] = str(tmp_path / "home")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "engine.py"), "template", "--stack", "prod",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    docs = [d for f in sorted(out.rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert deployments and all(d["metadata"]["namespace"] == "agents-prod" for d in deployments.values())
    assert deployments["workers"]["spec"]["replicas"] == 3  # prod's own values, not local's
    assert f"manifests of stack 'prod' in {out}" in proc.stdout
    assert "agent-platform-policies" in proc.stdout + proc.stderr  # the policy pack ran
    # The real prod stack file is untouched (no salt, no render_dir written into it).
    assert (ROOT / "stacks" / "Pulumi.prod.yaml").read_text() == prod_before
