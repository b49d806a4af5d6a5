"""Image builders behind one interface: local (context + digest, docker when an engine answers)."""

import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from mlops_assets.release.build_context import BuildContext


@dataclass(frozen=True)
class ImageBuild:
    image: str  # [registry/]repository:tag
    built: bool
    detail: str
    digest: str = ""  # sha256:… of the pushed manifest, when a registry reported it

    @property
    def reference(self) -> str:
        """What a deployment pulls: pinned to the digest when there is one."""
        return f"{self.image.rsplit(':', 1)[0]}@{self.digest}" if self.digest else self.image


class ImageBuilder(dg.ConfigurableResource, ABC):
    @property
    @abstractmethod
    def backend_name(self) -> str: ...

    @abstractmethod
    def build(self, context: BuildContext, repository: str) -> ImageBuild: ...


class LocalImageBuilder(ImageBuilder):
    """`docker build` when a Docker engine answers; otherwise the context is the deliverable."""

    docker: str = Field(default="docker", description="Docker CLI to call.")
    engine_timeout_seconds: float = 5.0

    @property
    def backend_name(self) -> str:
        return "local"

    def _engine_reachable(self) -> str | None:
        if shutil.which(self.docker) is None:
            return f"{self.docker} CLI not found"
        try:
            probe = subprocess.run(
                [self.docker, "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                text=True,
                timeout=self.engine_timeout_seconds,
            )
        except subprocess.TimeoutExpired:
            return "Docker engine did not answer"
        return None if probe.returncode == 0 else "no Docker engine reachable"

    def build(self, context: BuildContext, repository: str) -> ImageBuild:
        image = f"{repository}:{context.tag}"
        unreachable = self._engine_reachable()
        if unreachable:
            return ImageBuild(
                image, False, f"not built: {unreachable}; the build context is ready at {context.path}"
            )
        result = subprocess.run(
            [self.docker, "build", "--tag", image, str(context.path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise dg.Failure(f"docker build of {image} failed: {result.stderr.strip()[-2000:]}")
        return ImageBuild(image, True, "built with docker")
