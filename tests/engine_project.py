"""A scratch copy of the project for engine runs (tiers 4 and 5)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from tests.stacks import ROOT

sys.path.insert(0, str(ROOT / "tools"))


class Project:
    """A scratch copy of Pulumi.yaml and stacks/, so tests never touch the real stack files,
    with its own backend, PULUMI_HOME and manifest directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.backend = root / "state"
        self.home = root / "pulumi-home"
        self.manifests = root / "manifests"
        shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
        shutil.copytree(ROOT / "stacks", root / "stacks")

    def stack_file(self, stack: str) -> Path:
        return self.root / "stacks" / f"Pulumi.{stack}.yaml"

    def edit(self, stack: str, edit) -> None:
        path = self.stack_file(stack)
        document = yaml.safe_load(path.read_text())
        edit(document["config"])
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    def run(self, command: str, stack: str = "local", policy_packs: list[str] | None = None):
        import engine

        return engine.run(command, stack, policy_packs or [], backend_dir=self.backend, home=self.home,
                          echo=False, work_dir=self.root, passphrase=self.passphrase(stack))

    @staticmethod
    def passphrase(stack: str) -> str | None:
        """The local stacks' public passphrase is theirs alone: others get a test one."""
        from components.stack_safety import is_local

        return None if is_local(stack) else "engine-test-passphrase"
