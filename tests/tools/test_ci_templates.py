"""The CI templates under docs/ci/: valid for their CI systems, and calling commands that exist.

GitHub Actions files are checked by actionlint (built from the Go module proxy by
tools/build-actionlint.sh) on a copy laid out as a user would (`.github/` of a repository, so
that the local setup action resolves too) and by the workflows' JSON schemas that
check-jsonschema vendors; the GitLab file by the vendored gitlab-ci schema.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.stacks import ROOT
from tools.pipeline.__main__ import parser

CI = ROOT / "docs" / "ci"
WORKFLOW = CI / "github" / "workflows" / "agent-platform.yml"
ACTION = CI / "github" / "actions" / "agent-platform-setup" / "action.yml"
GITLAB = CI / "gitlab-ci.yml"


def _schema_check(schema: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("schema, path", [
    ("vendor.github-workflows", WORKFLOW),
    ("vendor.github-actions", ACTION),
    ("vendor.gitlab-ci", GITLAB),
])
def test_templates_match_their_schemas(schema, path):
    result = _schema_check(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_gitlab_file(tmp_path):
    broken = tmp_path / "gitlab-ci.yml"
    broken.write_text(GITLAB.read_text().replace("    action: verify", "    action: check"))
    result = _schema_check("vendor.gitlab-ci", broken)
    assert result.returncode != 0 and "$.drift.environment" in result.stdout


@pytest.fixture(scope="module")
def actionlint() -> Path:
    proc = subprocess.run(["bash", str(ROOT / "tools" / "build-actionlint.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"tools/build-actionlint.sh failed:\n{proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _as_user_repo(tmp_path: Path, workflow_text: str) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(CI / "github", repo / ".github")
    (repo / ".github" / "workflows" / "agent-platform.yml").write_text(workflow_text)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def test_actionlint_passes_the_workflow_as_a_user_installs_it(tmp_path, actionlint):
    repo = _as_user_repo(tmp_path, WORKFLOW.read_text())
    result = subprocess.run([str(actionlint), "-no-color"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path, actionlint):
    broken = WORKFLOW.read_text().replace("steps.preview.outputs.status != '0'", "steps.previeww.outputs.status != '0'")
    repo = _as_user_repo(tmp_path, broken)
    result = subprocess.run([str(actionlint), "-no-color"], cwd=repo, capture_output=True, text=True)
    assert result.returncode != 0 and "previeww" in result.stdout


def _pipeline_calls(text: str) -> list[list[str]]:
    """Every `python -m tools.pipeline ...` command line, shell variables given sample values."""
    calls = []
    for match in re.finditer(r"python -m tools\.pipeline ([^\n|]*?)(?:\s*\\\n\s*([^\n|]*))?(?:\|\||$)", text, re.M):
        line = " ".join(part for part in match.groups() if part)
        line = re.sub(r'"?\$\{\{[^}]*\}\}"?', "dev", line)
        line = re.sub(r'"\$[A-Za-z_]+/?([^"]*)"', r"out/\1", line)
        line = re.sub(r"\$[A-Za-z_]+", "dev", line)
        calls.append(shlex.split(line))
    return calls


@pytest.mark.parametrize("path", [WORKFLOW, GITLAB])
def test_templates_call_commands_that_exist(path):
    calls = _pipeline_calls(path.read_text())
    commands = set()
    for argv in calls:
        args = parser().parse_args(argv)  # exits (fails the test) on an unknown command or option
        commands.add(args.command)
    assert commands == {"preview", "deploy", "promote", "drift"}, calls


def test_github_workflow_triggers():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    on = workflow[True]  # YAML 1.1 reads the `on:` key as a boolean
    assert {"pull_request", "push", "schedule", "workflow_dispatch"} <= set(on)
    jobs = workflow["jobs"]
    assert "pull_request" in jobs["preview"]["if"] and "pull-requests" in jobs["preview"]["permissions"]
    assert "push" in jobs["deploy-dev"]["if"]
    assert "workflow_dispatch" in jobs["promote"]["if"]
    assert jobs["drift"]["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]


def test_gitlab_promotions_are_manual_and_drift_is_scheduled():
    pipeline = yaml.safe_load(GITLAB.read_text())
    assert pipeline[".promote"]["rules"][0]["when"] == "manual"
    assert pipeline["promote-prod"]["needs"] == ["promote-staging"]
    assert "schedule" in pipeline["drift"]["rules"][0]["if"]
    assert "merge_request_event" in pipeline["preview"]["rules"][0]["if"]
