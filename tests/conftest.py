"""Shared fixtures: Pulumi mocks (tier 1, component tests with mocks), used by component and engine tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

from tests.stacks import ROOT, engine_config

PROJECT = "agent-platform"


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource and fills in what the provider would: `metadata.name` when the
    program leaves it to auto-naming (otherwise HPA targets and volume names come out None).
    Raises on any provider function call, which none of our components make."""

    resources: list[Recorded] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ.startswith("kubernetes:") and not args.typ.startswith("pulumi:providers"):
            metadata = dict(outputs.get("metadata") or {})
            metadata.setdefault("name", f"{args.name}-abcd1234")
            outputs["metadata"] = metadata
        self.resources.append(Recorded(args.typ, args.name, outputs))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        raise NotImplementedError(f"unexpected provider call {args.token} in a component test")

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_contains: str) -> Recorded:
        found = [r for r in self.of_type(typ) if name_contains in r.name]
        assert len(found) == 1, f"expected one {typ} named *{name_contains}*, got {[r.name for r in found]}"
        return found[0]


@pytest.fixture
def event_loop_per_test():
    """A fresh event loop per test: Pulumi's runtime keeps futures on the loop it first saw,
    and a loop shared between tests leaks outputs from one test into the next."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def run_stack(event_loop_per_test) -> Callable[..., RecordingMocks]:
    """Run the real program against mocks for a stack's values; returns the recorded resources.
    `reset_options()` afterwards, because the root Stack resource is created once per process."""

    def run(values: dict[str, Any], stack: str = "local") -> RecordingMocks:
        from components.program import program

        mocks = RecordingMocks()
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
        pulumi.runtime.set_all_config(engine_config(values))

        @pulumi.runtime.test
        def build():
            program()

        build()
        return mocks

    yield run
    pulumi.runtime.set_all_config({})
    pulumi.runtime.reset_options()


@pytest.fixture(scope="session")
def toolchain() -> Path:
    """The pinned CLI and provider; built here when missing. A build that truly cannot happen
    skips with its error printed, never silently."""
    sys.path.insert(0, str(ROOT / "tools"))
    import engine

    try:
        return engine.toolchain_bin()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"the Pulumi toolchain could not be built: {exc}")
