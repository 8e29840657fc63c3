"""What `make up/preview/destroy/template` add around a bare `pulumi` command, and the engine
runs of the tests and the pipeline.

    python tools/engine.py up|preview|refresh|destroy|outputs --stack local [--policy-pack policies]
    python tools/engine.py template --stack prod        # manifests to build/manifests/prod/, no cluster

Every command is the pinned CLI (built by tools/build-toolchain.sh, which also installs the
project's Python language host beside it) running the project's program, exactly what a user
types: `pulumi up -s local --policy-pack policies --policy-pack-config stacks/policy-config.local.json`.
This file only chooses the environment, and refuses unsafe ones (components/stack_safety.py):

  state backend   PULUMI_BACKEND_URL, else your `pulumi login`, else (local and node stacks only)
                  file://<project>/.pulumi-state. Any other stack without one is refused.
  secrets         PULUMI_CONFIG_PASSPHRASE(_FILE) or the stack file's secretsprovider; the public
                  passphrase `agent-platform-local` is supplied for the local and node stacks only.
  PULUMI_HOME     yours (default ~/.pulumi); tests pass a scratch one.
  policy pack     policies/ with stacks/policy-config.<stack>.json, on every stack.

`template` renders any stack to build/manifests/<stack>/ (like `helm template`): a scratch copy
of the stack with `kubernetes.render_dir` set, run with a throwaway backend and passphrase, so a
reviewer reads a prod change offline and no real stack's state is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "runtime")) if p not in sys.path]

import yaml  # noqa: E402
from pulumi import automation as auto  # noqa: E402

from components.stack_safety import (  # noqa: E402
    LOCAL_STATE_DIR,
    is_local,
    passphrase_for,
    secrets_provider,
    unsafe_state_or_secrets,
)

K8S_PROVIDER_VERSION = "4.25.0-alpha.1768448096"
# What a scratch copy of the project (tests, `template`) links from the checkout: the program,
# its packages and the virtualenv `runtime.options.virtualenv` names.
PROGRAM_FILES = ("__main__.py", "components", ".venv")


class UnsafeRun(Exception):
    """A run refused before the CLI starts; the message says why and how to fix it."""


def toolchain_bin() -> Path:
    """Build (or find) the pinned binaries; the script prints the bin directory last and its
    progress (what it builds, how far, elapsed time) on stderr, which stays visible."""
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "build-toolchain.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def logged_in_backend(home: Path | None = None) -> str | None:
    """The backend of your `pulumi login` (PULUMI_HOME/credentials.json `current`), if any."""
    home = home or Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    try:
        return json.loads((home / "credentials.json").read_text()).get("current") or None
    except (OSError, ValueError):
        return None


def engine_env(bin_dir: Path, stack: str, backend_dir: Path | None = None, home: Path | None = None,
               passphrase: str | None = None, work_dir: Path = ROOT) -> dict[str, str]:
    """The CLI's environment for `stack`: explicit arguments first (tests), then the user's own
    settings, then the local defaults, which only the local and node stacks get."""
    env = {k: v for k, v in os.environ.items()}
    if home is not None:
        env["PULUMI_HOME"] = str(home)
    if backend_dir is not None:
        env["PULUMI_BACKEND_URL"] = f"file://{backend_dir}"
    elif not env.get("PULUMI_BACKEND_URL") and not logged_in_backend(home):
        if not is_local(stack):
            raise UnsafeRun(
                f"stack {stack!r} has no state backend: run `pulumi login <backend>` (s3://..., "
                f"https://api.pulumi.com, file://<a directory outside the project>) or set PULUMI_BACKEND_URL. "
                f"The project's {LOCAL_STATE_DIR}/ is for the local and node stacks only."
            )
        env["PULUMI_BACKEND_URL"] = f"file://{work_dir / LOCAL_STATE_DIR}"
    if env.get("PULUMI_BACKEND_URL", "").startswith("file://"):
        Path(env["PULUMI_BACKEND_URL"][len("file://"):].split("?", 1)[0]).mkdir(parents=True, exist_ok=True)
    if passphrase is not None:
        env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    elif (local := passphrase_for(stack, env)) is not None:
        env["PULUMI_CONFIG_PASSPHRASE"] = local
    provider = secrets_provider(work_dir / "stacks" / f"Pulumi.{stack}.yaml")
    problem = unsafe_state_or_secrets(stack, env, work_dir, provider)
    if problem:
        raise UnsafeRun(problem)
    if provider in (None, "passphrase") and not is_local(stack) and not (
        env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    ) and not (env.get("PULUMI_BACKEND_URL") or logged_in_backend(home) or "").startswith("https://"):
        raise UnsafeRun(
            f"stack {stack!r} has no secrets provider: set PULUMI_CONFIG_PASSPHRASE (or "
            f"PULUMI_CONFIG_PASSPHRASE_FILE) to a passphrase of your own, or create the stack with one: "
            f"`pulumi stack init {stack} --secrets-provider <awskms://...|gcpkms://...|hashivault://...>`."
        )
    env.update({
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PATH": os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
    })
    return env


def install_provider(bin_dir: Path, env: dict[str, str]) -> None:
    """Register the built provider under its exact version in `env`'s PULUMI_HOME (build-toolchain.sh
    does it for yours; tests and scratch homes need it too), so nothing is ever downloaded."""
    home = Path(env.get("PULUMI_HOME") or Path.home() / ".pulumi")
    plugin_dir = home / "plugins" / f"resource-kubernetes-v{K8S_PROVIDER_VERSION}"
    if (plugin_dir / "pulumi-resource-kubernetes").exists():
        return
    subprocess.run(
        [str(bin_dir / "pulumi"), "plugin", "install", "resource", "kubernetes", K8S_PROVIDER_VERSION,
         "--file", str(bin_dir.parent / "provider" / "pulumi-resource-kubernetes")],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )


def link_program(work_dir: Path) -> None:
    """A scratch copy of the project (Pulumi.yaml and stacks/) runs the checkout's program."""
    if work_dir.resolve() == ROOT:
        return
    for name in PROGRAM_FILES:
        link = work_dir / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(ROOT / name)


def policy_args(stack: str, work_dir: Path, policy_packs: list[str], policy_config: str | None = None) -> dict[str, Any]:
    packs = [str((ROOT / p).resolve()) for p in policy_packs]
    if not packs:
        return {}
    args: dict[str, Any] = {"policy_packs": packs}
    config_file = Path(policy_config) if policy_config else work_dir / "stacks" / f"policy-config.{stack}.json"
    if config_file.exists():
        args["policy_pack_configs"] = [str(config_file)]
    return args


def stack(name: str, env: dict[str, str], bin_dir: Path, work_dir: Path = ROOT) -> auto.Stack:
    """The stack in `work_dir`, run by the CLI with the project's language host (no inline program)."""
    link_program(work_dir)
    workspace = auto.LocalWorkspace(
        work_dir=str(work_dir),
        pulumi_home=env.get("PULUMI_HOME"),
        env_vars=env,
        pulumi_command=auto.PulumiCommand(root=str(bin_dir.parent), skip_version_check=False),
    )
    return auto.Stack.create_or_select(name, workspace)


def run(command: str, stack_name: str, policy_packs: list[str], policy_config: str | None = None,
        backend_dir: Path | None = None, home: Path | None = None, echo: bool = True,
        work_dir: Path = ROOT, passphrase: str | None = None) -> Any:
    """Run one engine command through the Automation API (structured results for tests);
    `work_dir` holds Pulumi.yaml and stacks/ (tests use a copy)."""
    bin_dir = toolchain_bin()
    env = engine_env(bin_dir, stack_name, backend_dir, home, passphrase, work_dir)
    install_provider(bin_dir, env)
    target = stack(stack_name, env, bin_dir, work_dir)
    out = print if echo else (lambda _line: None)
    policy_kwargs = policy_args(stack_name, work_dir, policy_packs, policy_config)
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


def cli_command(command: str, stack_name: str, policy_packs: list[str], policy_config: str | None,
                work_dir: Path = ROOT) -> list[str]:
    """The bare CLI command a user types for `command` (printed, then run, by main())."""
    cmd = {"outputs": ["pulumi", "stack", "output", "--json"]}.get(command, ["pulumi", command])
    cmd += ["-s", stack_name]
    if command in ("up", "destroy", "refresh"):
        cmd += ["--yes"]
    if command in ("up", "preview"):
        kwargs = policy_args(stack_name, work_dir, policy_packs, policy_config)
        for pack in kwargs.get("policy_packs", []):
            cmd += ["--policy-pack", os.path.relpath(pack, work_dir)]
        for config in kwargs.get("policy_pack_configs", []):
            cmd += ["--policy-pack-config", os.path.relpath(config, work_dir)]
    return cmd


def template(stack_name: str, out_dir: Path, bin_dir: Path, env_home: Path | None = None) -> int:
    """Render `stack_name` to `out_dir` without a cluster: a scratch copy of the project with
    `kubernetes.render_dir` set, a throwaway backend and passphrase, the policy pack as usual."""
    source = ROOT / "stacks" / f"Pulumi.{stack_name}.yaml"
    if not source.exists():
        print(f"error: no stack file {source.relative_to(ROOT)}", file=sys.stderr)
        return 2
    if out_dir.exists():
        shutil.rmtree(out_dir)
    with tempfile.TemporaryDirectory(prefix=f"template-{stack_name}-") as tmp:
        scratch = Path(tmp)
        shutil.copy(ROOT / "Pulumi.yaml", scratch / "Pulumi.yaml")
        shutil.copytree(ROOT / "stacks", scratch / "stacks")
        document = yaml.safe_load(source.read_text())
        document.pop("encryptionsalt", None)
        document.pop("secretsprovider", None)
        document.pop("encryptedkey", None)
        config = document.setdefault("config", {})
        config["agent-platform:kubernetes"] = {"render_dir": str(out_dir.resolve())}
        (scratch / "stacks" / f"Pulumi.{stack_name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        link_program(scratch)
        env = engine_env(bin_dir, stack_name, backend_dir=scratch / "state", home=env_home,
                         passphrase="agent-platform-template", work_dir=scratch)
        install_provider(bin_dir, env)
        subprocess.run(["pulumi", "stack", "init", stack_name], cwd=scratch, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        cmd = cli_command("up", stack_name, ["policies"], None, scratch) + ["--skip-preview"]
        print(f"$ {' '.join(cmd)}   # in a scratch copy, render_dir={out_dir}", file=sys.stderr, flush=True)
        status = subprocess.run(cmd, cwd=scratch, env=env).returncode
    if status == 0:
        files = sorted(out_dir.rglob("*.yaml"))
        print(f"{len(files)} manifests of stack {stack_name!r} in {out_dir}")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["preview", "up", "refresh", "destroy", "outputs", "template"])
    parser.add_argument("--stack", "-s", default="local")
    parser.add_argument("--policy-pack", action="append", default=None, dest="policy_packs",
                        help="default: policies (every stack runs the pack)")
    parser.add_argument("--policy-pack-config")
    parser.add_argument("--out", help="template: output directory (default build/manifests/<stack>)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print("toolchain: finding or building the pinned Pulumi CLI and provider (tools/build-toolchain.sh)",
          file=sys.stderr, flush=True)
    try:
        bin_dir = toolchain_bin()
    except subprocess.CalledProcessError as err:
        print(f"error: tools/build-toolchain.sh exited {err.returncode}", file=sys.stderr)
        return 1
    try:
        if args.command == "template":
            out = Path(args.out) if args.out else ROOT / "build" / "manifests" / args.stack
            return template(args.stack, out, bin_dir)
        env = engine_env(bin_dir, args.stack)
    except UnsafeRun as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    install_provider(bin_dir, env)
    packs = ["policies"] if args.policy_packs is None else args.policy_packs
    cmd = cli_command(args.command, args.stack, packs, args.policy_pack_config)
    where = env.get("PULUMI_BACKEND_URL") or logged_in_backend() or "?"
    if args.command in ("up", "preview"):
        select = ["pulumi", "stack", "select", "--create", args.stack]
        print(f"$ {' '.join(select)}   # state: {where}", file=sys.stderr, flush=True)
        if subprocess.run(select, cwd=ROOT, env=env).returncode != 0:
            return 1
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    if args.command == "up" and not is_local(args.stack):
        print("pulumi waits for each Deployment, Service and Job to become ready (up to 10 minutes each); "
              "its progress lines name what it waits for", file=sys.stderr, flush=True)
    status = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    print(f"({args.command} of {args.stack!r} took {time.monotonic() - started:.0f}s)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
