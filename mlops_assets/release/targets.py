"""Where releases run, behind one interface: QA, production, rollback, and the key a smoke test uses.

The deployment assets call only this; `resources.py` picks the backend (local processes here,
ACI + AKS in `azure_targets.py`).
"""

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets.release.local_target import LocalTarget
from mlops_assets.serving.keys import ensure_key_file, read_keys
from mlops_assets.settings import get_settings


@dataclass(frozen=True)
class Release:
    version: str
    image: str  # what a target pulls (pinned by digest when the builder reported one)
    context: Path | None  # the build context (model/ = artifact + manifest); None for a registry image
    code_digest: str


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    version: str
    image: str
    code_digest: str = ""
    context: str = ""  # the build context it serves, where the target needs it to restore
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def keys_from_settings() -> list[str]:
    settings = get_settings()
    if settings.scoring_keys:
        return [k.strip() for k in settings.scoring_keys.get_secret_value().split(",") if k.strip()]
    ensure_key_file(settings.keys_file)
    return list(read_keys(settings.keys_file))


class DeploymentTarget(dg.ConfigurableResource, ABC):
    ready_timeout_seconds: float = Field(
        default=90, gt=0, description="How long a new service may take to answer ready before it fails."
    )

    @property
    @abstractmethod
    def backend_name(self) -> str: ...

    @abstractmethod
    def scoring_keys(self) -> list[str]:
        """Keys the service accepts (never logged); the first one is the smoke test's."""

    @abstractmethod
    def deploy_qa(self, release: Release) -> Endpoint: ...

    @abstractmethod
    def teardown_qa(self) -> None: ...

    @abstractmethod
    def production(self) -> Endpoint | None: ...

    @abstractmethod
    def release_production(self, release: Release) -> tuple[Endpoint, str]:
        """Put the release in production without downtime; returns the endpoint and how it was done."""

    @abstractmethod
    def restore_production(self, previous: Endpoint) -> Endpoint: ...

    @abstractmethod
    def stop_production(self) -> None: ...


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

    def restore_production(self, previous: Endpoint) -> Endpoint:
        restored, _ = self.release_production(
            Release(previous.version, previous.image, Path(previous.context), previous.code_digest)
        )
        return restored

    def stop_production(self) -> None:
        self.target().stop("production")
