"""Where releases run, behind one interface: QA, production, rollback, and the key a smoke test uses.

The deployment assets call only this; `resources.py` picks the backend (local processes here,
ACI + AKS in `azure_targets.py`). Add a release target as a subclass of ``DeploymentTarget``
beside them and choose it in ``resources.py``; what runs on this machine lives in ``hosting/``.
"""

from abc import ABC, abstractmethod

import dagster as dg
from pydantic import Field

from mlops_assets.release.deployments import Endpoint, Release
from mlops_assets.serving.keys import ensure_key_file, read_keys
from mlops_assets.settings import get_settings


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
    def restore_production(self, release: Release) -> Endpoint:
        """Serve ``release`` again (what served before a failed release), however it was lost."""

    @abstractmethod
    def stop_production(self) -> None: ...

    def production_lost(self) -> Endpoint | None:
        """What served production until it died with nothing left to restart it (not stopped on
        purpose); None where the platform restarts it itself (AKS) or nothing was lost."""
        return None
