"""train.py as an Azure ML command job on a compute cluster, through dagster-azure's Pipes client."""

from typing import Any

import dagster as dg

from mlops_assets.azure.jobs import TRAIN_ENVIRONMENT, AzureMLJobs
from mlops_assets.project.loader import ModelProject
from mlops_assets.project.package import LOCK_FILE
from mlops_assets.training.backends import TrainingBackend

__all__ = ["TRAIN_ENVIRONMENT", "AzureMLTrainingBackend"]
PROJECT_DIR = "project"  # the model project's folder inside the job's code snapshot
TRAINER_FILES = {
    "train.py": "mlops_assets/training/train.py",
    "mlops_assets/__init__.py": "mlops_assets/__init__.py",
    "mlops_assets/core/__init__.py": "mlops_assets/core/__init__.py",
    "mlops_assets/core/pipes_transport.py": "mlops_assets/core/pipes_transport.py",
    "mlops_assets/project/__init__.py": "mlops_assets/project/__init__.py",
    "mlops_assets/project/code.py": "mlops_assets/project/code.py",
    "mlops_assets/project/package.py": "mlops_assets/project/package.py",
    "mlops_assets/project/metrics.py": "mlops_assets/project/metrics.py",
    "mlops_assets/project/fitting.py": "mlops_assets/project/fitting.py",
    "mlops_assets/project/environment.py": "mlops_assets/project/environment.py",
    "mlops_assets/project/snapshot.py": "mlops_assets/project/snapshot.py",
}


class AzureMLTrainingBackend(AzureMLJobs, TrainingBackend):
    """Runs train.py on an AML compute cluster and waits for it, bounded."""

    @property
    def backend_name(self) -> str:
        return f"azureml:{self.workspace}/{self.compute}"

    def run_training(
        self,
        context: dg.AssetExecutionContext,
        extras: dict[str, Any],
        project: ModelProject,
        python: str | None = None,  # the job's environment: train.yml's, plus the project's lock
    ) -> dict[str, Any]:
        lock = project.folder / LOCK_FILE
        locked = lock.read_text(encoding="utf-8") if project.spec.environment.requirements else None
        # train.py, the standalone modules it imports, and the model project: not the code location.
        return self.run_pipes_job(
            context,
            {**TRAINER_FILES, **{f"{PROJECT_DIR}/{name}": str(path) for name, path in project.files.items()}},
            "python train.py",
            {**extras, "project_dir": PROJECT_DIR},
            purpose="train",
            environment=self.job_environment(project.name, locked) if locked else None,
        )
