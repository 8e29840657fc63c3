"""Tier 4: the real Pulumi engine on a temporary file backend, in a copy of the project files."""

from __future__ import annotations

import pytest

from tests.engine_project import Project


@pytest.fixture
def project(tmp_path, toolchain) -> Project:
    project = Project(tmp_path)

    def render_here(config):
        config["agent-platform:kubernetes"] = {"render_dir": str(project.manifests)}

    project.edit("local", render_here)
    return project
