"""tools/pipeline/selection.py: which stacks a pull request previews."""

from __future__ import annotations

import subprocess

from tests.stacks import ROOT
from tests.stacks import STACKS as SHIPPED
from tools.pipeline.selection import all_stacks, changed_paths, touched

STACKS = ["local", "dev", "staging", "prod"]


def test_shipped_stacks_in_promotion_order():
    # The promoted stacks come first, in order; a stack outside the promotion (node) sorts after them.
    assert all_stacks(ROOT) == STACKS + [s for s in SHIPPED if s not in STACKS]


def test_a_stack_file_touches_its_stack_only():
    assert touched(["stacks/Pulumi.staging.yaml", "stacks/policy-config.prod.json"], STACKS) == ["staging", "prod"]


def test_docs_and_tests_touch_nothing():
    assert touched(["README.md", "tests/tools/x.py", "bench/a.py", "docs/ci/github-actions.yml",
                    "stacks/schema.json"], STACKS) == []


def test_program_policies_runtime_and_unknown_paths_touch_every_stack():
    for path in ("components/gateway.py", "policies/agent_policies/k8s.py", "runtime/agent_runtime/config.py",
                 "requirements.txt", "Pulumi.yaml", "something/new.txt"):
        assert touched(["README.md", path], STACKS) == STACKS, path


def test_changed_paths_since_the_merge_base(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config: {}\n")
    git("add", ".")
    git("commit", "-qm", "base")
    git("checkout", "-qb", "feature")
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config: {a: 1}\n")
    git("commit", "-qam", "change dev")
    git("checkout", "-q", "main")
    (tmp_path / "stacks" / "Pulumi.prod.yaml").write_text("config: {}\n")
    git("add", ".")
    git("commit", "-qm", "main moves on")  # not part of the feature's change
    git("checkout", "-q", "feature")
    (tmp_path / "README.md").write_text("new, untracked\n")
    assert changed_paths(tmp_path, "main") == ["README.md", "stacks/Pulumi.dev.yaml"]
