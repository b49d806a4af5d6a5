"""The resources of each profile, built from the settings: the only place a backend is chosen."""

from __future__ import annotations

from typing import Any

from mlops_assets.settings import Settings


def local_resources(settings: Settings) -> dict[str, Any]:
    """Everything on this machine: files under MLOPS_HOME, train.py as a subprocess, MLflow on SQLite."""
    from mlops_assets.batch.backends import InProcessBatchScorer
    from mlops_assets.registry.mlflow_backend import MlflowRegistryResource
    from mlops_assets.training.backends import SubprocessTrainingBackend

    storage = storage_resource(settings)
    return {
        **_shared_resources(settings, storage),
        "trainer": SubprocessTrainingBackend(),
        "batch": InProcessBatchScorer(),
        "registry": MlflowRegistryResource(
            tracking_uri=settings.tracking_uri,
            artifact_root=settings.registry_artifact_root,
            model_name=settings.registered_model_name,
            index=storage,
        ),
    }


def azure_resources(settings: Settings) -> dict[str, Any]:
    """Blob Storage, training on an AML compute cluster, the AML model registry."""
    from mlops_assets.batch.backends import AzureMLBatchScorer
    from mlops_assets.registry.aml_backend import AzureMLRegistryResource
    from mlops_assets.training.aml_backend import AzureMLTrainingBackend

    purpose = "MLOPS_PROFILE=azure"
    settings.require(
        "azure_subscription_id", "azure_resource_group", "aml_workspace", "storage_url", purpose=purpose
    )
    if not str(settings.storage_url).startswith("az://"):
        raise ValueError(f"{purpose} needs MLOPS_STORAGE_URL=az://<container>, not {settings.storage_url}")
    has_vault_secret = bool(settings.key_vault_url and settings.storage_key_vault_secret)
    if not (settings.azure_storage_connection_string or has_vault_secret or settings.azure_storage_account):
        raise ValueError(
            f"{purpose} needs storage credentials: MLOPS_AZURE_STORAGE_CONNECTION_STRING, "
            "MLOPS_KEY_VAULT_URL + MLOPS_STORAGE_KEY_VAULT_SECRET, or MLOPS_AZURE_STORAGE_ACCOUNT "
            "(DefaultAzureCredential)"
        )
    storage = storage_resource(settings)
    workspace = {
        "subscription_id": settings.azure_subscription_id,
        "resource_group": settings.azure_resource_group,
        "workspace": settings.aml_workspace,
    }
    jobs = {
        **workspace,
        "compute": settings.aml_compute_name,
        "experiment": settings.aml_experiment,
        "environment_image": settings.aml_environment_image,
        "identity_client_id": settings.aml_identity_client_id,
        "storage": storage,
        "pipes_container": settings.aml_pipes_container,
        "timeout_seconds": settings.aml_training_timeout_seconds,
    }
    return {
        **_shared_resources(settings, storage),
        "trainer": AzureMLTrainingBackend(**jobs),
        "batch": AzureMLBatchScorer(**jobs),
        "registry": AzureMLRegistryResource(
            **workspace, model_name=settings.registered_model_name, index=storage
        ),
    }


def storage_resource(settings: Settings) -> Any:
    import dagster as dg

    from mlops_assets.core.storage import StorageResource

    # An EnvVar, not the value: the UI and run config show the variable's name only.
    secret = settings.azure_storage_connection_string
    return StorageResource(
        root_url=settings.storage_root,
        connection_string=dg.EnvVar("MLOPS_AZURE_STORAGE_CONNECTION_STRING") if secret else None,
        account_name=settings.azure_storage_account,
        key_vault_url=settings.key_vault_url if settings.storage_key_vault_secret else "",
        key_vault_secret=settings.storage_key_vault_secret,
    )


def _shared_resources(settings: Settings, storage: Any) -> dict[str, Any]:
    """What both profiles configure the same way: the model project, checks, alerts, release."""
    import dagster as dg

    from mlops_assets.core.alerts import AlertWebhook
    from mlops_assets.core.project import ModelProjectResource
    from mlops_assets.core.stage_lock import StageLock
    from mlops_assets.core.storage import StorageIOManager
    from mlops_assets.hosting.runtimes import venvs_dir
    from mlops_assets.ingest.config import ValidationConfig
    from mlops_assets.ingest.feedback_batch import FeedbackConfig
    from mlops_assets.monitoring.assets import DriftConfig
    from mlops_assets.release.assets import ReleaseSettings

    return {
        "storage": storage,
        "io_manager": StorageIOManager(storage=storage),
        "validation": ValidationConfig(),
        "drift": DriftConfig(),
        "feedback": FeedbackConfig(),
        # A webhook URL carries its own credential (Slack, Teams): an EnvVar, so the UI shows the name only.
        "alerts": AlertWebhook(
            url=dg.EnvVar("MLOPS_ALERT_WEBHOOK_URL") if settings.alert_webhook_url else None
        ),
        "project": ModelProjectResource(
            folder=str(settings.project_dir),
            environments_dir=str(settings.environments_dir),
            package_index=settings.package_index,
        ),
        "stage_lock": StageLock(lock_dir=str(settings.lock_dir)),
        **release_resources(settings),
        "release": ReleaseSettings(
            contexts_dir=str(settings.home_dir / "release" / "contexts"),
            venvs_dir=str(venvs_dir(settings.home_dir)),
            environments_dir=str(settings.environments_dir),
            package_index=settings.package_index,
            keep_releases=settings.keep_releases,
            azure_serving=settings.image_serves_azure,
            project_folder=str(settings.project_dir),
        ),
    }


def release_resources(settings: Settings) -> dict[str, Any]:
    """The image builder and deployment target: local processes, or ACR Tasks + ACI + AKS."""
    if settings.release_target == "local":
        from mlops_assets.release.builders import LocalImageBuilder
        from mlops_assets.release.local_target import LocalDeploymentTarget

        return {
            "image_builder": LocalImageBuilder(
                engines=settings.image_engine_names,
                python_base=settings.python_base_image,
                home=str(settings.home_dir),
            ),
            "deploy_target": LocalDeploymentTarget(
                home=str(settings.home_dir),
                qa_port=settings.qa_port,
                production_port=settings.production_port,
                runtime=settings.local_runtime,
                engines=settings.image_engine_names,
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
            scoring_log_url=settings.scoring_log_root
            if settings.scoring_log_root.startswith("az://")
            else "",
            storage_account=settings.azure_storage_account or "",
            aci_identity_client_id=settings.aci_identity_client_id,
            aks_workload_client_id=settings.aks_workload_client_id,
            aci_dns_label=settings.aci_dns_label,
            aks_namespace=settings.aks_namespace,
            kube_context=settings.kube_context,
            public_url=settings.production_url,
            key_vault_url=settings.key_vault_url,
        ),
    }


def resources_for(settings: Settings) -> dict[str, Any]:
    if settings.profile == "azure":
        return azure_resources(settings)
    return local_resources(settings)
