"""The local deployment target: the scoring service as a process on 127.0.0.1, from the build
context's own locked `serving` requirements in a fresh venv (the image's dependency set, without
Docker). The processes themselves are managed by `local_processes`.
"""

from pathlib import Path

from pydantic import Field

from mlops_assets.release.deployments import Endpoint, Release
from mlops_assets.release.local_processes import LocalTarget
from mlops_assets.release.targets import DeploymentTarget, keys_from_settings


class LocalDeploymentTarget(DeploymentTarget):
    """Deployments as processes on 127.0.0.1 under MLOPS_HOME (QA on one port, production another)."""

    home: str
    qa_port: int = Field(default=8101, description="Port of the QA deployment.")
    production_port: int = Field(default=8100, description="Stable port of the production deployment.")

    @property
    def backend_name(self) -> str:
        return "local"

    def target(self) -> LocalTarget:
        return LocalTarget(Path(self.home))

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
            {"pid": deployment.pid, "port": deployment.port, "log": deployment.log},
        )

    def deploy_qa(self, release: Release) -> Endpoint:
        deployment = self.target().deploy(
            "qa", release.context, release.version, release.image, self.qa_port, self.ready_timeout_seconds
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
        )
        return self._endpoint(deployment), mode

    def restore_production(self, release: Release) -> Endpoint:
        restored, _ = self.release_production(release)
        return restored

    def stop_production(self) -> None:
        self.target().stop("production")
