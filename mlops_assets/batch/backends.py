"""Where a file is scored: in the run's own process, or as an Azure ML job (same score_file)."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import dagster as dg

from mlops_assets.azure.jobs import AzureMLJobs
from mlops_assets.batch.scoring import BatchInputError, score_file
from mlops_assets.core.storage import Storage
from mlops_assets.model.loaded import LoadedModel

# What score_job.py imports of the project: uploaded as the AML job's code, nothing more.
JOB_FILES = (
    "mlops_assets/__init__.py",
    "mlops_assets/batch/__init__.py",
    "mlops_assets/batch/scoring.py",
    "mlops_assets/batch/score_job.py",
    "mlops_assets/project/__init__.py",
    "mlops_assets/project/rules.py",
    "mlops_assets/model/__init__.py",
    "mlops_assets/model/rows.py",
    "mlops_assets/model/manifest.py",
    "mlops_assets/model/artifact.py",
    "mlops_assets/model/predictors.py",
    "mlops_assets/model/loaded.py",
    "mlops_assets/core/__init__.py",
    "mlops_assets/core/pipes_transport.py",
)


@dataclass(frozen=True)
class BatchJob:
    storage: Storage
    input_path: str
    output_path: str
    refused_path: str
    model: LoadedModel
    manifest: dict[str, Any]
    artifact_path: str  # the released artifact in storage (registered_model writes it)
    serving_spec: dict[str, Any] | None = None  # the model project's: how each column is read


class BatchScorer(dg.ConfigurableResource, ABC):
    @property
    @abstractmethod
    def backend_name(self) -> str: ...

    @abstractmethod
    def score(self, context: dg.AssetExecutionContext, job: BatchJob) -> dict[str, Any]:
        """rows, scored, refused, seconds, reasons; raises BatchInputError for a file it cannot score."""


class InProcessBatchScorer(BatchScorer):
    """The run's own process: no start-up cost, memory bounded by the chunk size."""

    @property
    def backend_name(self) -> str:
        return "in-process"

    def score(self, context: dg.AssetExecutionContext, job: BatchJob) -> dict[str, Any]:
        store = job.storage
        result = score_file(
            store.fs,
            store.fs_path(job.input_path),
            store.fs_path(job.output_path),
            store.fs_path(job.refused_path),
            job.model,
            progress=lambda rows: context.log.debug(f"{job.input_path}: {rows} rows read"),
        )
        return result.figures()


class AzureMLBatchScorer(AzureMLJobs, BatchScorer):
    """score_job.py as an AML command job on the training cluster, through the same Pipes path."""

    @property
    def backend_name(self) -> str:
        return f"azureml:{self.workspace}/{self.compute}"

    def score(self, context: dg.AssetExecutionContext, job: BatchJob) -> dict[str, Any]:
        store = job.storage
        reported = self.run_pipes_job(
            context,
            {name: name for name in JOB_FILES},
            "python -m mlops_assets.batch.score_job",
            {
                "input_uri": store.uri(job.input_path),
                "output_uri": store.uri(job.output_path),
                "refused_uri": store.uri(job.refused_path),
                "artifact_uri": store.uri(job.artifact_path),
                "manifest": job.manifest,
                "serving_spec": job.serving_spec,
            },
            purpose="batch",
        )
        if "error" in reported:
            raise BatchInputError(reported["error"])
        return reported
