"""The resources of each profile, built from the settings: the only place a backend is chosen."""

from __future__ import annotations

from typing import Any

from mlops_assets.settings import Settings


def local_resources(settings: Settings) -> dict[str, Any]:
    import dagster as dg

    from mlops_assets.data.config import ValidationConfig
    from mlops_assets.monitoring.alerts import AlertWebhook
    from mlops_assets.monitoring.assets import DriftConfig
    from mlops_assets.monitoring.feedback_batch import FeedbackConfig
    from mlops_assets.registry.assets import EvaluationParams
    from mlops_assets.registry.mlflow_backend import MlflowRegistryResource
    from mlops_assets.release.assets import ReleaseSettings
    from mlops_assets.storage import StorageIOManager, StorageResource
    from mlops_assets.training.backends import SubprocessTrainingBackend, TrainingParams

    secret = settings.azure_storage_connection_string
    # An EnvVar, not the value: the UI and run config show the variable's name only.
    connection = dg.EnvVar("MLOPS_AZURE_STORAGE_CONNECTION_STRING") if secret else None
    storage = StorageResource(root_url=settings.storage_root, connection_string=connection)
    return {
        "storage": storage,
        "io_manager": StorageIOManager(storage=storage),
        "validation": ValidationConfig(),
        "drift": DriftConfig(),
        "feedback": FeedbackConfig(),
        "alerts": AlertWebhook(url=settings.alert_webhook_url),
        "training": TrainingParams(alpha=settings.ridge_alpha, holdout_percent=settings.holdout_percent),
        "gate": EvaluationParams(min_improvement=settings.min_improvement),
        "trainer": SubprocessTrainingBackend(),
        **release_resources(settings),
        "release": ReleaseSettings(contexts_dir=str(settings.home_dir / "release" / "contexts")),
        "registry": MlflowRegistryResource(
            tracking_uri=settings.tracking_uri,
            artifact_root=settings.registry_artifact_root,
            model_name=settings.model_name,
        ),
    }


def release_resources(settings: Settings) -> dict[str, Any]:
    """The image builder and deployment target: local processes, or ACR Tasks + ACI + AKS."""
    if settings.release_target == "local":
        from mlops_assets.release.builders import LocalImageBuilder
        from mlops_assets.release.targets import LocalDeploymentTarget

        return {
            "image_builder": LocalImageBuilder(),
            "deploy_target": LocalDeploymentTarget(
                home=str(settings.home_dir),
                qa_port=settings.qa_port,
                production_port=settings.production_port,
            ),
        }
    from mlops_assets.release.acr_builder import AcrTasksImageBuilder
    from mlops_assets.release.azure_targets import AzureDeploymentTarget

    settings.require(
        "azure_subscription_id", "azure_resource_group", "azure_location", "acr_name", "aci_dns_label"
    )
    return {
        "image_builder": AcrTasksImageBuilder(
            subscription_id=settings.azure_subscription_id,
            resource_group=settings.azure_resource_group,
            registry_name=settings.acr_name,
        ),
        "deploy_target": AzureDeploymentTarget(
            subscription_id=settings.azure_subscription_id,
            resource_group=settings.azure_resource_group,
            location=settings.azure_location,
            registry_server=f"{settings.acr_name}.azurecr.io",
            acr_pull_identity_id=settings.acr_pull_identity_id,
            aci_dns_label=settings.aci_dns_label,
            aks_namespace=settings.aks_namespace,
            kube_context=settings.kube_context,
            public_url=settings.production_url,
            key_vault_url=settings.key_vault_url,
        ),
    }


def resources_for(settings: Settings) -> dict[str, Any]:
    if settings.profile == "local":
        return local_resources(settings)
    raise NotImplementedError(
        f"MLOPS_PROFILE={settings.profile}: the azure profile is not built yet; use MLOPS_PROFILE=local"
    )
