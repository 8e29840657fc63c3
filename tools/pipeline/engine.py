"""Every engine invocation of the pipeline, in one place.

The Automation API calls run the project's `runtime: python` through the bare CLI and the
project's language host (tools/pulumi_language_python.py, installed beside the CLI by
tools/build-toolchain.sh), exactly like `pulumi preview -s <stack>`. `INLINE_PROGRAM = False` runs
the program in-process instead (the Automation API's own language server), the way this worked
before the host existed; nothing uses it now, it stays as a switch for debugging the host.

The pipeline reads the engine's structured event stream (the `--event-log` the Automation API
attaches to each operation), never its human-readable text.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [p for p in (str(ROOT / "tools"), str(ROOT), str(ROOT / "runtime")) if p not in sys.path]

import engine as _driver  # noqa: E402  (tools/engine.py: toolchain, environment, provider plugin)
from pulumi import automation as auto  # noqa: E402

# The one switch between the in-process language server and a bare CLI with its language host.
INLINE_PROGRAM = False


@dataclasses.dataclass
class Target:
    """Where a stack lives: the directory with Pulumi.yaml and stacks/, and optionally an
    explicit state backend and PULUMI_HOME (tests use scratch ones)."""

    work_dir: Path = ROOT
    backend_dir: Path | None = None
    home: Path | None = None
    policy_pack: Path | None = ROOT / "policies"
    echo: bool = True  # the engine's progress lines to stderr

    def policy_config(self, stack: str) -> Path | None:
        path = self.work_dir / "stacks" / f"policy-config.{stack}.json"
        return path if path.exists() else None


@dataclasses.dataclass
class Run:
    """One engine operation: its events (automation `EngineEvent`s), and whether it failed."""

    command: str
    stack: str
    events: list[Any]
    failed: bool
    stderr: str = ""


def _stack(name: str, target: Target) -> auto.Stack:
    bin_dir = _driver.toolchain_bin()
    env = _driver.engine_env(bin_dir, name, target.backend_dir, target.home, work_dir=target.work_dir)
    _driver.install_provider(bin_dir, env)
    program = None
    if INLINE_PROGRAM:
        from components.program import program
    else:
        _driver.link_program(target.work_dir)
    workspace = auto.LocalWorkspace(
        work_dir=str(target.work_dir),
        pulumi_home=env.get("PULUMI_HOME"),
        env_vars=env,
        program=program,
        pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent), skip_version_check=False),
    )
    return auto.Stack.create_or_select(name, workspace)


def _policy_args(stack: str, target: Target) -> dict[str, Any]:
    if target.policy_pack is None:
        return {}
    args: dict[str, Any] = {"policy_packs": [str(target.policy_pack.resolve())]}
    config = target.policy_config(stack)
    if config is not None:
        args["policy_pack_configs"] = [str(config)]
    return args


def _log(line: str) -> None:
    # The engine's progress goes to the job log (stderr); stdout is the pipeline's report.
    print(line, file=sys.stderr, flush=True)


def _run(command: str, stack: str, target: Target, **kwargs: Any) -> Run:
    events: list[Any] = []
    try:
        handle = _stack(stack, target)
    except subprocess.CalledProcessError as err:
        return Run(command, stack, events, failed=True,
                   stderr=f"error: the Pulumi toolchain could not be built or found "
                          f"(tools/build-toolchain.sh exited {err.returncode})")
    except _driver.UnsafeRun as err:
        return Run(command, stack, events, failed=True, stderr=f"error: {err}")
    try:
        operation = {"preview": handle.preview, "up": handle.up}[command]
        result = operation(on_event=events.append, color="never", on_output=_log if target.echo else None,
                           **kwargs)
    except auto.errors.CommandError as err:
        return Run(command, stack, events, failed=True, stderr=str(err))
    return Run(command, stack, events, failed=False, stderr=getattr(result, "stderr", ""))


def preview(stack: str, target: Target, *, refresh: bool = False, expect_no_changes: bool = False) -> Run:
    """`pulumi preview` with the policy pack at the stack's level; `refresh` reads the live
    objects first (in memory only: the state is not written)."""
    return _run("preview", stack, target, refresh=refresh or None,
                expect_no_changes=expect_no_changes or None, **_policy_args(stack, target))


def up(stack: str, target: Target, *, refresh: bool = False) -> Run:
    """`pulumi up` with the policy pack at the stack's level; `refresh` reads the live objects
    first, so that values changed behind Pulumi's back are put back too."""
    return _run("up", stack, target, refresh=refresh or None, **_policy_args(stack, target))
