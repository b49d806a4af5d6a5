"""Image builders behind one interface: local (the first container engine that answers), ACR Tasks."""

import re
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.hosting.engines import ENGINES, PROBE_TIMEOUT, PYTHON_BASES, Engine, find_engine
from mlops_assets.hosting.image_holds import LetGo, hold, let_go
from mlops_assets.release.build_context import BuildContext

# A build that reused a cached layer another home's release removed meanwhile (its image let go
# of: hosting/image_holds.py) fails with podman's "layer not known" (seen here with two test
# workers). Built again, it makes that layer anew.
CACHE_RACE = re.compile(r"(layer|image) not known")
BUILD_ATTEMPTS = 3


@dataclass(frozen=True)
class ImageBuild:
    image: str  # [registry/]repository:tag
    built: bool
    detail: str
    digest: str = ""  # sha256:… of the pushed manifest, when a registry reported it
    image_id: str = ""  # the local engine's image ID, when one built or holds it
    size_bytes: int = 0
    build_seconds: float = 0.0

    @property
    def reference(self) -> str:
        """What a deployment runs: the local image ID, else pinned to the pushed digest, else the tag."""
        if self.image_id:
            return self.image_id
        return f"{self.image.rsplit(':', 1)[0]}@{self.digest}" if self.digest else self.image


class ImageBuilder(dg.ConfigurableResource, ABC):
    @property
    @abstractmethod
    def backend_name(self) -> str: ...

    @abstractmethod
    def build(self, context: BuildContext, repository: str) -> ImageBuild: ...

    def let_go(self, keep: set[str], in_use: set[str]) -> LetGo:
        """Remove the images this builder holds for the home but those tagged in ``keep`` and
        those ``in_use`` names; a registry's images are kept by the registry's own retention."""
        return LetGo()


class LocalImageBuilder(ImageBuilder):
    """Builds with the first container engine that answers (podman, then docker); with none, the
    build context is the deliverable and the step says so."""

    engines: list[str] = Field(
        default_factory=lambda: list(ENGINES), description="Engines tried in order (MLOPS_IMAGE_ENGINES)."
    )
    python_base: str = Field(
        default="",
        description="The PYTHON_BASE build argument; empty: the first of PYTHON_BASES the engine has "
        "(none: not built, never pulled unasked).",
    )
    build_timeout_seconds: float = Field(default=1800, gt=0)
    home: str = Field(
        default="",
        description="The home whose hold each image gets (hosting/image_holds.py), so that its releases "
        "can let go of them; empty: images are built and never removed.",
    )

    @property
    def backend_name(self) -> str:
        return "local"

    def build(self, context: BuildContext, repository: str) -> ImageBuild:
        image = f"{repository}:{context.tag}"
        engine = find_engine(tuple(self.engines))
        if engine is None:
            tried = ", ".join(self.engines) or "none configured"
            return ImageBuild(
                image,
                False,
                f"not built: no container engine answered (tried: {tried}); the build context is ready "
                f"at {context.path}",
            )
        # The tag is the context's digest: this exact image exists. Held before it is used, so a
        # neighbour home letting go of it meanwhile leaves it to us (or it is gone: built again).
        if engine.has_image(image) and self._held(engine, image, context):
            return self._described(engine, image, False, "already built (same build context)", 0.0)
        base = engine.python_base(self.python_base)
        if base is None:  # never pulled unasked: this machine may reach no registry
            return ImageBuild(
                image,
                False,
                f"not built: {engine.name} has no Python base image ({' or '.join(PYTHON_BASES)}): "
                f"`make container-base` builds one from Debian packages, or set MLOPS_PYTHON_BASE_IMAGE; "
                f"the build context is ready at {context.path}",
            )
        started = time.monotonic()
        for attempt in range(1, BUILD_ATTEMPTS + 1):
            try:
                result = engine.run(
                    *engine.build_args(image, base, context.path), timeout=self.build_timeout_seconds
                )
            except subprocess.TimeoutExpired:
                raise dg.Failure(
                    f"{engine.name} build of {image} still running after {self.build_timeout_seconds:.0f} s; stopped"
                ) from None
            output = result.stdout + result.stderr
            if result.returncode == 0 or attempt == BUILD_ATTEMPTS or not CACHE_RACE.search(output):
                break
        if result.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-30:])
            raise dg.Failure(f"{engine.name} build of {image} failed (exit {result.returncode}):\n{tail}")
        seconds = time.monotonic() - started
        if not self._held(engine, image, context):
            raise dg.Failure(f"{image} was removed as soon as it was built (another home let go of it)")
        return self._described(engine, image, True, f"built with {engine.name} in {seconds:.0f} s", seconds)

    def _held(self, engine: Engine, image: str, context: BuildContext) -> bool:
        return not self.home or hold(engine, image, context.tag, Path(self.home))

    def let_go(self, keep: set[str], in_use: set[str]) -> LetGo:
        engine = find_engine(tuple(self.engines)) if self.home else None
        return let_go(engine, Path(self.home), keep, in_use) if engine else LetGo()

    @staticmethod
    def _described(engine: Engine, image: str, built: bool, how: str, seconds: float) -> ImageBuild:
        found = engine.run("image", "inspect", "--format", "{{.Id}} {{.Size}}", image, timeout=PROBE_TIMEOUT)
        image_id, size = found.stdout.split() if found.returncode == 0 else ("", "0")
        detail = f"{how}: image {image_id[:12]}, {int(size) / 1e6:.0f} MB"
        return ImageBuild(
            image, built, detail, image_id=image_id, size_bytes=int(size), build_seconds=seconds
        )
