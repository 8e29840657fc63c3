"""`pulumi preview` time of our program against a plain pulumi-kubernetes program.

    python -m bench engine [--repeat 3] [--clusters 50]

Measures, in one run and on the same engine (render mode, file backend, scratch project):
  - the local stack through our components;
  - a generated stack with N agent clusters through our components;
  - a plain pulumi-kubernetes program declaring exactly the same resources (recorded from our
    program under mocks, then declared one by one with the typed classes, no components, no
    validation): the baseline. The ratio is the cost of our layer.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "runtime"), str(ROOT / "tools")]


def _generated_values(clusters: int, render_dir: Path) -> dict[str, Any]:
    from tests.stacks import stack_values

    values = copy.deepcopy(stack_values("local"))
    template = values["clusters"][0]
    values["clusters"] = [{**copy.deepcopy(template), "name": f"agents-{i:02d}"} for i in range(clusters)]
    values["kubernetes"] = {"render_dir": str(render_dir)}
    values["quota"]["pods"] = 10 * clusters
    return values


def _record(values: dict[str, Any], stack: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The resources our program declares, with resolved inputs, recorded under mocks."""
    import pulumi

    from tests.conftest import RecordingMocks
    from tests.stacks import engine_config

    asyncio.set_event_loop(asyncio.new_event_loop())
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="agent-platform", stack=stack, preview=False)
    pulumi.runtime.set_all_config(engine_config(values))
    from components.program import program

    pulumi.runtime.test(program)()
    pulumi.runtime.reset_options()
    return [(r.typ, r.name, r.inputs) for r in mocks.resources
            if r.typ.startswith("kubernetes:") and not r.typ.startswith("pulumi:")]


def plain_program(resources: list[tuple[str, str, dict[str, Any]]], render_dir: Path) -> Callable[[], None]:
    """The same resources declared directly with pulumi-kubernetes classes."""

    def program() -> None:
        import importlib

        import pulumi
        import pulumi_kubernetes as k8s

        provider = k8s.Provider("kubernetes", render_yaml_to_directory=str(render_dir))
        opts = pulumi.ResourceOptions(provider=provider)
        for typ, name, inputs in resources:
            _, group_version, kind = typ.split(":")
            inputs = {k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")}
            if "." in group_version.split("/")[0] and not group_version.startswith(("networking.k8s.io", "rbac")):
                k8s.apiextensions.CustomResource(name, api_version=group_version, kind=kind, opts=opts, **inputs)
                continue
            group, version = group_version.split("/")
            module = importlib.import_module(f"pulumi_kubernetes.{group.split('.')[0]}.{version}")
            snake = {"automountServiceAccountToken": "automount_service_account_token"}
            getattr(module, kind)(name, opts=opts, **{snake.get(k, k): v for k, v in inputs.items()})

    return program


def _timed_preview(stack_name: str, program: Callable[[], None], workdir: Path, repeat: int) -> list[float]:
    import engine
    from pulumi import automation as auto

    from components.stack_safety import is_local

    bin_dir = engine.toolchain_bin()
    env = engine.engine_env(bin_dir, stack_name, workdir / "state", workdir / "home",
                            passphrase=None if is_local(stack_name) else "bench-passphrase", work_dir=workdir)
    engine.install_provider(bin_dir, env)
    options = auto.LocalWorkspaceOptions(work_dir=str(workdir), pulumi_home=str(workdir / "home"), env_vars=env,
                                         pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent)))
    stack = auto.create_or_select_stack(stack_name=stack_name, project_name="agent-platform",
                                        program=program, opts=options)
    stack.preview(color="never")  # warm-up: plugin load, first-run caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        stack.preview(color="never")
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clusters", type=int, default=50)
    args = parser.parse_args(argv)
    from components.program import program as ours

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        work = Path(tmp)
        shutil.copy(ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
        (work / "stacks").mkdir()
        for label, stack, values in (
            ("local stack (3 clusters)", "local", None),
            (f"generated stack ({args.clusters} clusters)", "bench", _generated_values(args.clusters, work / "render")),
        ):
            if values is None:
                from tests.stacks import stack_values

                values = copy.deepcopy(stack_values("local"))
                values["kubernetes"] = {"render_dir": str(work / "render")}
            stack_file = work / "stacks" / f"Pulumi.{stack}.yaml"
            stack_file.write_text(yaml.safe_dump({"config": {f"agent-platform:{k}": v for k, v in values.items()}}))
            resources = _record(values, stack)
            ours_times = _timed_preview(stack, ours, work, args.repeat)
            plain_stack = f"{stack}-plain"
            (work / "stacks" / f"Pulumi.{plain_stack}.yaml").write_text(stack_file.read_text())
            plain = plain_program(resources, work / "render-plain")
            plain_times = _timed_preview(plain_stack, plain, work, args.repeat)
            rows.append((label, len(resources), statistics.median(ours_times), statistics.median(plain_times)))
    print(f"pulumi preview, median of {args.repeat} (after one warm-up), render mode, file backend")
    print(f"{'program':<34} {'resources':>9} {'ours s':>8} {'plain s':>8} {'ratio':>6}")
    for label, count, ours_s, plain_s in rows:
        print(f"{label:<34} {count:>9} {ours_s:>8.2f} {plain_s:>8.2f} {ours_s / plain_s:>6.2f}")
    print(
        json.dumps(
            {
                "engine": [
                    {
                        "program": r[0],
                        "resources": r[1],
                        "ours_s": round(r[2], 3),
                        "plain_s": round(r[3], 3),
                        "ratio": round(r[2] / r[3], 3),
                    }
                    for r in rows
                ]
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
