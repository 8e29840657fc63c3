"""Which stacks a change touches, from the paths it changes.

A stack's own files (stacks/Pulumi.<s>.yaml, stacks/policy-config.<s>.json) touch that stack;
paths that never reach a deployment (tests, benchmarks, docs, CI templates, Markdown) touch
none; anything else (the program, components, policies, the runtime's config models, pinned
requirements, a path this table does not know) touches every stack: unsure means preview.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

_STACK_FILE = re.compile(r"^stacks/(?:Pulumi|policy-config)\.(?P<stack>[A-Za-z0-9_.-]+?)\.(?:ya?ml|json)$")
_INERT_PREFIXES = ("tests/", "bench/", "docs/", "tools/ci/", ".ci/", ".github/", ".gitlab/")
_INERT_SUFFIXES = (".md",)
_INERT_FILES = (".gitignore", ".gitlab-ci.yml", "LICENSE")


def all_stacks(work_dir: Path) -> list[str]:
    """The stacks with a stack file, in the order they are promoted through when known."""
    names = [p.name[len("Pulumi."):-len(".yaml")] for p in (work_dir / "stacks").glob("Pulumi.*.yaml")]
    order = {name: i for i, name in enumerate(("local", "dev", "staging", "prod"))}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def touched(paths: Iterable[str], stacks: list[str]) -> list[str]:
    """The stacks, of `stacks`, that changes to `paths` (repository-relative) can alter."""
    hit: set[str] = set()
    for path in paths:
        path = path.strip()
        if not path:
            continue
        match = _STACK_FILE.match(path)
        if match:
            if match["stack"] in stacks:
                hit.add(match["stack"])
            continue
        if path == "stacks/schema.json" or path.startswith(_INERT_PREFIXES) or path.endswith(_INERT_SUFFIXES) \
                or path in _INERT_FILES:
            continue
        return list(stacks)
    return [s for s in stacks if s in hit]


def _git(work_dir: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=work_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def changed_paths(work_dir: Path, base: str) -> list[str]:
    """Paths changed since the branch left `base` (its merge base, as a pull request shows
    them), committed or not, untracked files included."""
    fork_point = _git(work_dir, "merge-base", base, "HEAD").strip()
    changed = _git(work_dir, "diff", "--name-only", fork_point, "--").splitlines()
    untracked = _git(work_dir, "ls-files", "--others", "--exclude-standard").splitlines()
    return sorted(set(changed) | set(untracked))
