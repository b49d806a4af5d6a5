"""A Pipes script as an Azure ML command job, waited for (bounded): the path training and batch
scoring share in the azure profile.

Context and messages travel through a blob container of the storage account. The job reaches
them, and the data, with the cluster's managed identity: the ``Command`` carries account names
and the identity's client id, never a key (AML stores a job's environment variables in its
definition, readable by anyone who can read the job).
"""

import contextlib
import hashlib
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.azure.ml_client import aml_client
from mlops_assets.core.storage import StorageResource
from mlops_assets.project.environment import normalized, parse_lock
from mlops_assets.project.package import LOCK_FILE

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

    def job_environment(self, project_name: str, lock_text: str | None) -> Any:
        """What the job runs in: train.yml's environment; for a project that locks packages of its
        own, train.yml plus the lock's pins, registered in the workspace as
        ``mlops-assets-train-<project>`` under the digest of what it installs (made once: AML builds
        it at its first use, and every later job of the same lock reuses it), referred to by id."""
        from azure.ai.ml.entities import Environment
        from azure.core.exceptions import ResourceNotFoundError

        if lock_text is None:
            return Environment(
                name="mlops-assets-train", image=self.environment_image, conda_file=str(TRAIN_ENVIRONMENT)
            )
        conda = conda_with_lock(lock_text)
        digest = hashlib.sha256(json.dumps([self.environment_image, conda], sort_keys=True).encode())
        wanted = Environment(
            name=f"mlops-assets-train-{project_name}",
            version=digest.hexdigest()[:16],
            image=self.environment_image,
            conda_file=conda,
            description="The platform's train group (train.yml) and the project's requirements.lock.",
        )
        client = self.ml_client()
        try:
            found = client.environments.get(wanted.name, version=wanted.version)
        except ResourceNotFoundError:
            found = client.environments.create_or_update(wanted)
        return f"azureml:{found.name}:{found.version}"

    def command(
        self,
        context: dg.AssetExecutionContext,
        code_dir: Path,
        command_line: str,
        purpose: str,
        account_url: str,
        environment: Any = None,
    ) -> Any:
        """The job as AML stores it: code, command line, environment, compute, identity, no secret."""
        from azure.ai.ml import command
        from azure.ai.ml.entities import ManagedIdentityConfiguration

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
            environment=environment or self.job_environment("", None),
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
        environment: Any = None,
    ) -> dict[str, Any]:
        """Upload ``files`` ({path in the job: path in the repository}) as the job's code, run
        ``command_line`` there (in ``environment``, default train.yml's), and return what the
        script reported."""
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
            job = self.command(context, Path(code), command_line, purpose, blob.account_url, environment)
            reported = client.run(context=context, command=job, extras=extras).get_materialize_result()
        result = {key: value.value for key, value in reported.metadata.items()}
        result["aml_job"] = result.pop("AzureML Job Name")
        return result


def conda_with_lock(lock_text: str) -> dict:
    """train.yml with the lock's pins it does not hold added to its pip list, by version (a conda
    file's pip list cannot hash some packages and not others; train.yml's own are by version too)."""
    import yaml

    conda = yaml.safe_load(TRAIN_ENVIRONMENT.read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict) and "pip" in d)
    platform = {normalized(line.split("==")[0]) for line in pip}
    pins = parse_lock(lock_text, LOCK_FILE).pins
    pip += [f"{name}=={version}" for name, version in sorted(pins.items()) if name not in platform]
    return conda


def _ensure_container(blobs: Any, name: str) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        blobs.create_container(name)
