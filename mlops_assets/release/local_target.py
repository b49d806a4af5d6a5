"""The local deployment target: the scoring service on 127.0.0.1, supervised, as a container of
the release's image when an engine holds it, else as a process from the build context's own
locked `serving` requirements in a venv (the image's dependency set, without an engine). The
supervisors are managed by `hosting.processes`.
"""

import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from mlops_assets.hosting.engines import ENGINES, find_engine
from mlops_assets.hosting.health import DeploymentError
from mlops_assets.hosting.processes import LocalTarget
from mlops_assets.hosting.runtimes import ContainerRuntime, ProcessRuntime
from mlops_assets.release.deployments import Endpoint, Release
from mlops_assets.release.targets import DeploymentTarget, keys_from_settings

IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]{64}")  # what LocalImageBuilder reports for an image it built


class LocalDeploymentTarget(DeploymentTarget):
    """Deployments on 127.0.0.1 under MLOPS_HOME (QA on one port, production another)."""

    home: str
    qa_port: int = Field(default=8101, description="Port of the QA deployment.")
    production_port: int = Field(default=8100, description="Stable port of the production deployment.")
    runtime: Literal["auto", "container", "process"] = Field(
        default="auto",
        description="auto: a container when an engine holds the release's image (the image QA "
        "tested is the one production runs), else a process (MLOPS_LOCAL_RUNTIME).",
    )
    engines: list[str] = Field(
        default_factory=lambda: list(ENGINES), description="Engines tried in order (MLOPS_IMAGE_ENGINES)."
    )

    @property
    def backend_name(self) -> str:
        return "local"

    def target(self) -> LocalTarget:
        return LocalTarget(Path(self.home))

    def runtime_for(self, release: Release) -> ProcessRuntime | ContainerRuntime:
        """A container when scoring_image built one (its reference is then the local image ID):
        decided by the release, not by how fast the engine answers now, so a release whose image
        exists never falls back to a process it was not tested as."""
        built = IMAGE_ID.fullmatch(release.image) is not None
        if self.runtime == "process" or (self.runtime == "auto" and not built):
            return ProcessRuntime(Path(self.home))
        if not built:
            raise DeploymentError(
                f"the container runtime was asked for, but version {release.version} has no local image "
                f"({release.image}): scoring_image says why it built none"
            )
        engine = find_engine(tuple(self.engines))
        if engine is None:
            tried = ", ".join(self.engines) or "none configured"
            raise DeploymentError(
                f"version {release.version} is the image {release.image[:12]}, but no container engine "
                f"answered (tried: {tried})"
            )
        return ContainerRuntime(engine)

    def scoring_keys(self) -> list[str]:
        return keys_from_settings()

    @staticmethod
    def _endpoint(deployment) -> Endpoint:
        return Endpoint(
            deployment.name,
            deployment.url,
            deployment.version,
            deployment.image,
            deployment.code_digest,
            str(Path(deployment.model_dir).parent),
            {
                "runtime": deployment.runtime,
                "container": deployment.container,
                "deployment_id": deployment.deployment_id,
                "pid": deployment.pid,  # the supervisor's
                "service_pid": deployment.status.get("service_pid"),
                "port": deployment.port,
                "log": deployment.log,
            },
        )

    def deploy_qa(self, release: Release) -> Endpoint:
        deployment = self.target().deploy(
            "qa",
            release.context,
            release.version,
            release.image,
            self.qa_port,
            self.ready_timeout_seconds,
            runtime=self.runtime_for(release),
        )
        return self._endpoint(deployment)

    def teardown_qa(self) -> None:
        self.target().stop("qa")

    def production(self) -> Endpoint | None:
        deployment = self.target().get("production")
        return None if deployment is None else self._endpoint(deployment)

    def release_production(self, release: Release) -> tuple[Endpoint, str]:
        deployment, mode = self.target().release(
            "production",
            release.context,
            release.code_digest,
            release.version,
            release.image,
            self.production_port,
            self.ready_timeout_seconds,
            runtime=self.runtime_for(release),
        )
        return self._endpoint(deployment), mode

    def restore_production(self, release: Release) -> Endpoint:
        restored, _ = self.release_production(release)
        return restored

    def production_lost(self) -> Endpoint | None:
        lost = self.target().lost("production")
        return None if lost is None else self._endpoint(lost)

    def stop_production(self) -> None:
        self.target().stop("production")
