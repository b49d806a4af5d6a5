"""The resources of each profile, built from the settings: the only place a backend is chosen."""

from __future__ import annotations

from typing import Any

from mlops_assets.settings import Settings


def local_resources(settings: Settings) -> dict[str, Any]:
    from mlops_assets.data.config import ValidationConfig
    from mlops_assets.registry.assets import EvaluationParams
    from mlops_assets.registry.mlflow_backend import MlflowRegistryResource
    from mlops_assets.release.assets import ReleaseSettings
    from mlops_assets.release.builders import LocalImageBuilder
    from mlops_assets.release.targets import LocalDeploymentTarget
    from mlops_assets.storage import StorageIOManager, StorageResource
    from mlops_assets.training.backends import SubprocessTrainingBackend, TrainingParams

    storage = StorageResource(root_url=settings.storage_root)
    return {
        "storage": storage,
        "io_manager": StorageIOManager(storage=storage),
        "validation": ValidationConfig(),
        "training": TrainingParams(alpha=settings.ridge_alpha, holdout_percent=settings.holdout_percent),
        "gate": EvaluationParams(min_improvement=settings.min_improvement),
        "trainer": SubprocessTrainingBackend(),
        "image_builder": LocalImageBuilder(),
        "deploy_target": LocalDeploymentTarget(
            home=str(settings.home_dir), qa_port=settings.qa_port, production_port=settings.production_port
        ),
        "release": ReleaseSettings(contexts_dir=str(settings.home_dir / "release" / "contexts")),
        "registry": MlflowRegistryResource(
            tracking_uri=settings.tracking_uri,
            artifact_root=settings.registry_artifact_root,
            model_name=settings.model_name,
        ),
    }


def resources_for(settings: Settings) -> dict[str, Any]:
    if settings.profile == "local":
        return local_resources(settings)
    raise NotImplementedError(
        f"MLOPS_PROFILE={settings.profile}: the azure profile is not built yet; use MLOPS_PROFILE=local"
    )
