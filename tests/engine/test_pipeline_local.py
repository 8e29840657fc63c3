"""Tier 4: `python -m tools.pipeline` on the local stack (render mode) with the real engine.

A deploy, a preview of a change that updates a Deployment and replaces a ConfigMap (each named
with its fields), and a deploy refused by a mandatory policy that renders nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stacks import ROOT

pytestmark = pytest.mark.engine


@pytest.fixture
def project(tmp_path, toolchain) -> Path:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for path in (ROOT / "stacks").iterdir():
        (tmp_path / "stacks" / path.name).write_text(path.read_text())
    stack = tmp_path / "stacks" / "Pulumi.local.yaml"
    stack.write_text(stack.read_text().replace("render_dir: build/manifests/local",
                                               f"render_dir: {tmp_path / 'manifests'}"))
    return tmp_path


def pipeline(project: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{project / 'state'}", "PULUMI_HOME": str(project / "home")}
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)  # the local stack's documented passphrase
    proc = subprocess.run([sys.executable, "-m", "tools.pipeline", "--work-dir", str(project), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout, proc.stderr[-3000:]


def test_deploy_then_preview_a_change(project):
    status, out, err = pipeline(project, "deploy", "local")
    assert status == 0, out + err
    assert "## Deploy `local`: done" in out and "update passed" in out
    assert (project / "manifests").is_dir()

    status, out, err = pipeline(project, "preview", "--stack", "local")
    assert status == 0, out + err
    assert "`local`: no changes" in out

    stack = project / "stacks" / "Pulumi.local.yaml"
    stack.write_text(
        stack.read_text()
        .replace("registry.local/agents/worker:0.4.2", "registry.local/agents/worker:0.4.3")
        .replace("max_run_seconds: 120", "max_run_seconds: 90", 1)
    )
    status, out, err = pipeline(project, "preview", "--stack", "local")
    assert status == 0, out + err
    # The cluster's settings ConfigMap and the gateway's runtime ConfigMap (its route deadline
    # defaults to the cluster's max_run_seconds) are both replaced under new names.
    assert "2 to replace" in out
    rows = {
        line.split("|")[2].strip(): line
        for line in out.splitlines()
        if line.startswith("| update |") or line.startswith("| replace |")
    }
    deployment = rows["`Deployment agents-local/workers`"]
    assert "`spec.template.spec.containers[0].image`" in deployment
    assert "`spec.template.spec.terminationGracePeriodSeconds`" in deployment
    replaced = [line for key, line in rows.items() if line.startswith("| replace |")]
    (settings,) = [line for line in replaced if "ConfigMap agents-local/agents-workers-settings-" in line]
    assert "`data.AGENT_MAX_RUN_SECONDS` (forces replacement)" in settings


def test_a_mandatory_violation_refuses_the_deploy(project):
    config = project / "stacks" / "policy-config.local.json"
    levels = json.loads(config.read_text())
    levels["image-pinned"] = {"enforcementLevel": "mandatory"}
    config.write_text(json.dumps(levels))
    stack = project / "stacks" / "Pulumi.local.yaml"
    stack.write_text(
        stack.read_text().replace("registry.local/agents/worker:0.4.2", "registry.local/agents/worker:latest")
    )
    status, out, err = pipeline(project, "deploy", "local")
    assert status == 1, out + err
    assert "## Deploy `local`: refused (mandatory policy violations)" in out
    assert "| **mandatory** | `image-pinned` | `Deployment agents-local/workers` |" in out
    assert not (project / "manifests").exists()  # nothing was deployed
