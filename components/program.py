"""The Pulumi program: load the stack config, build one Platform, export its outputs.

Kept importable (rather than living only in __main__.py) so the engine driver in tools/ and the
tests run exactly the program `pulumi up` runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from components.config import PlatformConfig, StackConfigError, load_platform_config
from components.platform import Platform
from components.stack_safety import secrets_provider, unsafe_state_or_secrets

PROJECT_DIR = Path(__file__).resolve().parent.parent


def provider(config: PlatformConfig) -> k8s.Provider:
    kube = config.kubernetes
    if kube.render_dir:
        # Render mode: manifests to a directory, no cluster is contacted.
        render_dir = Path(kube.render_dir)
        if not render_dir.is_absolute():
            render_dir = PROJECT_DIR / render_dir
        return k8s.Provider("kubernetes", render_yaml_to_directory=str(render_dir))
    return k8s.Provider("kubernetes", context=kube.context, kubeconfig=os.environ.get("KUBECONFIG"))


def program() -> None:
    # Before anything else, so a bare `pulumi up -s prod` with the local passphrase or the
    # project's state directory stops here (the engine has not written state yet).
    stack = pulumi.get_stack()
    provider_url = secrets_provider(Path.cwd() / "stacks" / f"Pulumi.{stack}.yaml")
    problem = unsafe_state_or_secrets(stack, os.environ, Path.cwd(), provider_url)
    if problem:
        raise pulumi.RunError(problem)
    try:
        config = load_platform_config()
    except StackConfigError as exc:
        # RunError ends the program with this message alone: no traceback for a config mistake.
        raise pulumi.RunError(str(exc)) from None
    # No except here: a component refusing its own input raises components.errors.ResourceError
    # (a RunError naming the component, no traceback); any other exception is a bug, and its
    # traceback is the report, never blamed on the stack file.
    platform = Platform(
        "agents",
        config,
        opts=pulumi.ResourceOptions(providers={"kubernetes": provider(config)}),
    )
    pulumi.export("environment", config.environment)
    pulumi.export("namespace", platform.namespace)
    pulumi.export("gateway_url", platform.gateway_url)
    pulumi.export("clusters", sorted(platform.clusters))
    if config.kubernetes.render_dir:
        pulumi.export("manifests_dir", config.kubernetes.render_dir)
