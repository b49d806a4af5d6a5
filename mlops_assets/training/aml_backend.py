"""train.py as an Azure ML command job on a compute cluster, through dagster-azure's Pipes client."""

from typing import Any

import dagster as dg

from mlops_assets.azure.jobs import TRAIN_ENVIRONMENT, AzureMLJobs
from mlops_assets.training.backends import TrainingBackend

__all__ = ["TRAIN_ENVIRONMENT", "AzureMLTrainingBackend"]


class AzureMLTrainingBackend(AzureMLJobs, TrainingBackend):
    """Runs train.py on an AML compute cluster and waits for it, bounded."""

    @property
    def backend_name(self) -> str:
        return f"azureml:{self.workspace}/{self.compute}"

    def run_training(self, context: dg.AssetExecutionContext, extras: dict[str, Any]) -> dict[str, Any]:
        # train.py alone: it imports nothing of the project.
        return self.run_pipes_job(
            context,
            {"train.py": "mlops_assets/training/train.py"},
            "python train.py",
            extras,
            purpose="train",
        )
