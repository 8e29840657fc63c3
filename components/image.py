"""RuntimeImage: build the agent_runtime image with pulumi-docker, when a stack asks for it.

Stacks normally reference a pinned, already published image; `image_build.enabled` is for
environments that build from this checkout (a developer's cluster, CI with a Docker engine).
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.config import ImageBuildConfig
from components.errors import ResourceError

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"


class RuntimeImage(pulumi.ComponentResource):
    """The gateway/backup image built from runtime/Dockerfile; `image_ref` is what pods run."""

    image_ref: pulumi.Output[str]

    def __init__(self, name: str, spec: ImageBuildConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("agent-platform:index:RuntimeImage", name, None, opts)
        if spec.tag in ("", "latest"):
            raise ResourceError(f"image_build.tag ({spec.tag!r}) must name a version, never 'latest'", self)
        image = docker.Image(
            f"{name}-image",
            image_name=f"{spec.repository}:{spec.tag}",
            build=docker.DockerBuildArgs(
                context=str(RUNTIME_DIR),
                dockerfile=str(RUNTIME_DIR / "Dockerfile"),
                platform="linux/amd64",
            ),
            skip_push=not spec.push,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Pushed images are pinned by digest; a local build only has its name and tag.
        self.image_ref = image.repo_digest if spec.push else image.image_name
        self.register_outputs({"image_ref": self.image_ref})
