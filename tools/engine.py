"""Drive the real Pulumi engine (CLI v3.260.0, built by tools/build-toolchain.sh) on a stack.

    python tools/engine.py up --stack local [--policy-pack policies]
    python tools/engine.py preview|refresh|destroy|outputs --stack local

The program runs through the Automation API's in-process language server: the Python language
host binary (Go module sdk/python/cmd/pulumi-language-python/v3) is not served by the module
proxy this machine reaches, while the CLI and the Kubernetes provider are. The CLI still does
everything else: it reads Pulumi.yaml and stacks/Pulumi.<stack>.yaml (stackConfigDir), keeps
state in a file:// backend inside the project, runs the policy pack and the provider.

Defaults (all overridable by the environment):
  PULUMI_BACKEND_URL          file://<project>/.pulumi-state
  PULUMI_CONFIG_PASSPHRASE    agent-platform-local   (local stack only; set your own elsewhere)
  PULUMI_HOME                 <project>/.pulumi-home
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]

from pulumi import automation as auto  # noqa: E402

LOCAL_PASSPHRASE = "agent-platform-local"
K8S_PROVIDER_VERSION = "4.25.0-alpha.1768448096"


def toolchain_bin() -> Path:
    """Build (or find) the pinned binaries; the script prints the bin directory last."""
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "build-toolchain.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def engine_env(bin_dir: Path, backend_dir: Path | None = None, home: Path | None = None) -> dict[str, str]:
    """Settings for the CLI: explicit arguments first (tests), then the user's environment."""
    if backend_dir is not None:
        backend = f"file://{backend_dir}"
    else:
        backend = os.environ.get("PULUMI_BACKEND_URL") or f"file://{ROOT / '.pulumi-state'}"
    if backend.startswith("file://"):
        Path(backend[len("file://"):]).mkdir(parents=True, exist_ok=True)
    env = {
        "PULUMI_BACKEND_URL": backend,
        "PULUMI_HOME": str(home or Path(os.environ.get("PULUMI_HOME", ROOT / ".pulumi-home"))),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", LOCAL_PASSPHRASE),
        # The policy shim runs `python`: make it the project's interpreter.
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    return env


def install_provider(bin_dir: Path, env: dict[str, str]) -> None:
    """Register the built provider under its exact version, so nothing is ever downloaded."""
    plugin_dir = Path(env["PULUMI_HOME"]) / "plugins" / f"resource-kubernetes-v{K8S_PROVIDER_VERSION}"
    if (plugin_dir / "pulumi-resource-kubernetes").exists():
        return
    subprocess.run(
        [str(bin_dir / "pulumi"), "plugin", "install", "resource", "kubernetes", K8S_PROVIDER_VERSION,
         "--file", str(bin_dir.parent / "provider" / "pulumi-resource-kubernetes")],
        check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
    )


def stack(name: str, env: dict[str, str], bin_dir: Path, work_dir: Path = ROOT) -> auto.Stack:
    from components.program import program

    workspace = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        pulumi_home=env["PULUMI_HOME"],
        env_vars=env,
        pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent), skip_version_check=False),
    )
    return auto.create_or_select_stack(stack_name=name, project_name="agent-platform", program=program, opts=workspace)


def run(command: str, stack_name: str, policy_packs: list[str], policy_config: str | None = None,
        backend_dir: Path | None = None, home: Path | None = None, echo: bool = True,
        work_dir: Path = ROOT) -> Any:
    """Run one engine command; `work_dir` holds Pulumi.yaml and stacks/ (tests use a copy)."""
    bin_dir = toolchain_bin()
    env = engine_env(bin_dir, backend_dir, home)
    install_provider(bin_dir, env)
    target = stack(stack_name, env, bin_dir, work_dir)
    out = print if echo else (lambda _line: None)
    packs = [str((ROOT / p).resolve()) for p in policy_packs]
    policy_kwargs: dict[str, Any] = {}
    if packs:
        policy_kwargs["policy_packs"] = packs
        config_file = policy_config or work_dir / "stacks" / f"policy-config.{stack_name}.json"
        if Path(config_file).exists():
            policy_kwargs["policy_pack_configs"] = [str(config_file)]
    if command == "preview":
        return target.preview(on_output=out, color="never", diff=False, **policy_kwargs)
    if command == "up":
        return target.up(on_output=out, color="never", **policy_kwargs)
    if command == "refresh":
        return target.refresh(on_output=out, color="never")
    if command == "destroy":
        return target.destroy(on_output=out, color="never")
    if command == "outputs":
        return {k: v.value for k, v in target.outputs().items()}
    raise ValueError(f"unknown command {command!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["preview", "up", "refresh", "destroy", "outputs"])
    parser.add_argument("--stack", "-s", default="local")
    parser.add_argument("--policy-pack", action="append", default=[], dest="policy_packs")
    parser.add_argument("--policy-pack-config")
    args = parser.parse_args(argv)
    try:
        result = run(args.command, args.stack, args.policy_packs, args.policy_pack_config)
    except auto.errors.CommandError:
        # The engine already printed its diagnostics (one clear line for a config error).
        print(f"pulumi {args.command} failed for stack {args.stack!r}", file=sys.stderr)
        return 1
    if args.command == "outputs":
        print(json.dumps(result, indent=2, sort_keys=True))
    elif args.command == "up":
        print("\nOutputs:")
        for key, value in sorted(result.outputs.items()):
            print(f"  {key}: {json.dumps(value.value)}")
        print(f"\nChanges: {result.summary.resource_changes}")
    elif args.command == "preview":
        print(f"\nChanges: {result.change_summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
