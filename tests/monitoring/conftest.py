"""Fixtures for the monitoring tests: the real `promtool` and `prometheus` binaries.

A missing binary fails the test with the package to install, never skips it: a skipped rule test
looks green while the rules it guards are untested.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

INSTALL_HINT = (
    "install the Debian package `prometheus` (apt-get install -y prometheus; it is listed in "
    "tools/apt-packages.txt, which CI installs)"
)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: {INSTALL_HINT}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian package `prometheus`)."""
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """Path of the prometheus server binary (Debian package `prometheus`)."""
    return _binary("prometheus")


def write_rules(path: Path, groups: list[dict[str, Any]]) -> Path:
    """Write rule groups as a Prometheus rules file (the shape of PrometheusRule spec.groups)."""
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path
