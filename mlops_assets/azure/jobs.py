"""A Pipes script as an Azure ML command job, waited for (bounded): the path training and batch
scoring share in the azure profile.

Context and messages travel through a blob container of the storage account. The job reaches
them, and the data, with the cluster's managed identity: the ``Command`` carries account names
and the identity's client id, never a key (AML stores a job's environment variables in its
definition, readable by anyone who can read the job).
"""

import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.azure.ml_client import aml_client
from mlops_assets.core.storage import StorageResource

REPO = Path(__file__).resolve().parents[2]
TRAIN_ENVIRONMENT = REPO / "deploy" / "environments" / "train.yml"


class AzureMLJobs(dg.ConfigurableResource):
    """Where and how AML command jobs run: workspace, cluster, environment, identity, bounds."""

    subscription_id: str
    resource_group: str
    workspace: str
    compute: str = Field(default="cpu-cluster", description="AML compute cluster the jobs run on.")
    experiment: str = "mlops-assets-training"
    environment_image: str = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
    identity_client_id: str = Field(
        default="", description="Client id of the cluster's user-assigned identity; empty: its system one."
    )
    storage: dg.ResourceDependency[StorageResource]
    pipes_container: str = "dagster-pipes"
    timeout_seconds: float = Field(default=3600, gt=0)
    poll_interval_seconds: float = Field(default=10, gt=0)
    message_interval_seconds: float = Field(default=10, gt=0, description="How often messages are exchanged.")

    def ml_client(self) -> Any:
        return aml_client(self.subscription_id, self.resource_group, self.workspace)

    def command(
        self,
        context: dg.AssetExecutionContext,
        code_dir: Path,
        command_line: str,
        purpose: str,
        account_url: str,
    ) -> Any:
        """The job as AML stores it: code, command line, environment, compute, identity, no secret."""
        from azure.ai.ml import command
        from azure.ai.ml.entities import Environment, ManagedIdentityConfiguration

        variables = {
            "MLOPS_PIPES_ACCOUNT_URL": account_url,
            "MLOPS_PIPES_INTERVAL_SECONDS": f"{self.message_interval_seconds:g}",
        }
        account = self.storage.storage_account()
        if account:
            variables["AZURE_STORAGE_ACCOUNT_NAME"] = account  # adlfs: az:// paths with the identity
        if self.identity_client_id:
            variables["AZURE_CLIENT_ID"] = self.identity_client_id  # DefaultAzureCredential picks it
        run_id, asset = context.run_id, context.asset_key.to_user_string()
        return command(
            name=f"mlops-{purpose}-{run_id[:8]}-{uuid.uuid4().hex[:8]}",
            display_name=f"{asset} (dagster run {run_id[:8]})",
            experiment_name=self.experiment,
            description=f"{command_line} for the {asset} asset, launched by Dagster Pipes",
            code=str(code_dir),
            command=command_line,
            environment=Environment(
                name="mlops-assets-train", image=self.environment_image, conda_file=str(TRAIN_ENVIRONMENT)
            ),
            compute=self.compute,
            instance_count=1,
            environment_variables=variables,
            identity=ManagedIdentityConfiguration(client_id=self.identity_client_id or None),
            timeout=int(self.timeout_seconds),
            tags={"dagster_run_id": run_id, "dagster_asset": asset},
        )

    def run_pipes_job(
        self,
        context: dg.AssetExecutionContext,
        files: dict[str, str],
        command_line: str,
        extras: dict[str, Any],
        purpose: str,
    ) -> dict[str, Any]:
        """Upload ``files`` ({path in the job: path in the repository}) as the job's code, run
        ``command_line`` there, and return what the script reported."""
        from mlops_assets.azure.blob import blob_resource
        from mlops_assets.azure.pipes import (
            BoundedPipesAzureMLClient,
            CleanContextInjector,
            CleanMessageReader,
        )

        blob = blob_resource(self.storage)
        with blob.get_client() as blobs, tempfile.TemporaryDirectory() as code:
            _ensure_container(blobs, self.pipes_container)
            # Only what the script imports is uploaded as the job's code: not the Dagster code location.
            for target, source in files.items():
                (Path(code) / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / source, Path(code) / target)
            client = BoundedPipesAzureMLClient(
                client=self.ml_client(),
                context_injector=CleanContextInjector(container=self.pipes_container, client=blobs),
                message_reader=CleanMessageReader(
                    container=self.pipes_container, client=blobs, interval=self.message_interval_seconds
                ),
                poll_interval_seconds=self.poll_interval_seconds,
                timeout_seconds=self.timeout_seconds,
            )
            job = self.command(context, Path(code), command_line, purpose, blob.account_url)
            reported = client.run(context=context, command=job, extras=extras).get_materialize_result()
        result = {key: value.value for key, value in reported.metadata.items()}
        result["aml_job"] = result.pop("AzureML Job Name")
        return result


def _ensure_container(blobs: Any, name: str) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        blobs.create_container(name)
