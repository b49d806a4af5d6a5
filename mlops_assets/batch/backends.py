"""Where a file is scored: in the project runner, or as an Azure ML job (same score_file)."""

import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import dagster as dg

from mlops_assets.azure.jobs import AzureMLJobs
from mlops_assets.core.storage import Storage
from mlops_assets.model.batch_scoring import BatchInputError
from mlops_assets.project.package import LOCK_FILE, sources_of
from mlops_assets.runner.client import Artifact, ProjectRunner

# What score_job.py imports of the project: uploaded as the AML job's code, nothing more.
JOB_FILES = (
    "mlops_assets/__init__.py",
    "mlops_assets/batch/__init__.py",
    "mlops_assets/model/batch_scoring.py",
    "mlops_assets/batch/score_job.py",
    "mlops_assets/project/__init__.py",
    "mlops_assets/project/rules.py",
    "mlops_assets/project/package.py",
    "mlops_assets/model/__init__.py",
    "mlops_assets/model/rows.py",
    "mlops_assets/model/manifest.py",
    "mlops_assets/model/artifact.py",
    "mlops_assets/model/compiled.py",
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
    artifact: Artifact  # its bytes checked against the manifest's sha256 already
    manifest: dict[str, Any]
    artifact_path: str  # the released artifact in storage (registered_model writes it)
    runner: ProjectRunner  # where a fitted project model may load in this deployment
    serving_spec: dict[str, Any] | None = None  # the version's: how each column is read
    graph: bytes | None = None  # its compiled graph, beside the artifact in storage

    @property
    def graph_path(self) -> str | None:
        graph_file = self.manifest.get("compiled", {}).get("file")
        return f"{self.artifact_path.rsplit('/', 1)[0]}/{graph_file}" if graph_file else None


class BatchScorer(dg.ConfigurableResource, ABC):
    @property
    @abstractmethod
    def backend_name(self) -> str: ...

    @abstractmethod
    def score(self, context: dg.AssetExecutionContext, job: BatchJob) -> dict[str, Any]:
        """rows, scored, refused, seconds, reasons; raises BatchInputError for a file it cannot score."""


class InProcessBatchScorer(BatchScorer):
    """On this machine, in the project runner (the run's warm one): memory bounded by the chunk
    size. The runner holds no storage credential, so a file in remote storage is streamed to its
    scratch folder and the outputs back (local storage is read and written in place)."""

    @property
    def backend_name(self) -> str:
        return "in-process"

    def score(self, context: dg.AssetExecutionContext, job: BatchJob) -> dict[str, Any]:
        store = job.storage
        paths = [store.fs_path(p) for p in (job.input_path, job.output_path, job.refused_path)]
        if store.is_local:
            return self._run(job, *paths)
        staged = job.runner.scratch / "batch"
        shutil.rmtree(staged, ignore_errors=True)
        (staged / "out").mkdir(parents=True)
        name = paths[0].rsplit("/", 1)[-1]
        local = [
            str(staged / name),
            str(staged / "out" / "scored.parquet"),
            str(staged / "out" / "refused.parquet"),
        ]
        try:
            store.fs.get(paths[0], local[0])
            figures = self._run(job, *local)
            store.fs.put(local[1], paths[1])
            if figures["refused"]:
                store.fs.put(local[2], paths[2])
            elif store.fs.exists(paths[2]):  # a rescored file that is clean now: no stale refusals
                store.fs.rm(paths[2])
            return figures
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    @staticmethod
    def _run(job: BatchJob, input_path: str, output_path: str, refused_path: str) -> dict[str, Any]:
        return job.runner.score_file(
            job.artifact, job.manifest, job.serving_spec, input_path, output_path, refused_path, job.graph
        )


class AzureMLBatchScorer(AzureMLJobs, BatchScorer):
    """score_job.py as an AML command job on the training cluster, through the same Pipes path."""

    @property
    def backend_name(self) -> str:
        return f"azureml:{self.workspace}/{self.compute}"

    def score(self, context: dg.AssetExecutionContext, job: BatchJob) -> dict[str, Any]:
        lock = (sources_of(job.manifest) or {}).get(LOCK_FILE)  # the version's own, as it was trained
        project = str((job.manifest.get("project") or {}).get("name") or job.manifest.get("model_name"))
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
                "graph_uri": store.uri(job.graph_path) if job.graph_path else None,
                "manifest": job.manifest,
                "serving_spec": job.serving_spec,
            },
            purpose="batch",
            environment=self.job_environment(project, lock) if lock else None,
        )
        if "error" in reported:
            raise BatchInputError(reported["error"])
        return reported
