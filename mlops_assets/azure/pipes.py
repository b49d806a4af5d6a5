"""dagster-azure's Pipes pieces for AML, with the three things they leave out.

``PipesAzureMLClient`` polls forever while a job is ``NotResponding`` or ``Paused``: here the
wait is bounded, and past it the job is cancelled and the step fails naming the job and its
state. The context injector leaves its blob behind when the run fails, and the message reader
never deletes the message chunks: both are removed here, whatever the outcome.
"""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_azure.pipes import (
    PipesAzureBlobStorageContextInjector,
    PipesAzureBlobStorageMessageReader,
    PipesAzureMLClient,
)

FINISHED = frozenset({"Completed", "Failed", "Canceled"})


class AmlJobFailure(dg.Failure):
    """An AML job that did not complete; the message names it and its last state."""


class BoundedPipesAzureMLClient(PipesAzureMLClient):
    def __init__(self, *args: Any, timeout_seconds: float, cancel_wait_seconds: float = 300, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.timeout_seconds = timeout_seconds
        self.cancel_wait_seconds = cancel_wait_seconds

    def _poll_til_success(self, context: Any, job_name: str) -> None:
        deadline = time.monotonic() + self.timeout_seconds
        last = None
        while True:
            job = self.client.jobs.get(job_name)
            status = job.status
            if status != last:
                context.log.info(f"[pipes] Azure ML job {job_name}: {status}")
                last = status
            if status == "Completed":
                return
            if status in FINISHED:
                studio = getattr(job, "studio_url", None)
                raise AmlJobFailure(
                    description=f"Azure ML job {job_name} ended {status}"
                    + (f"; its logs: {studio}" if studio else ""),
                    metadata={"aml_job": job_name, "aml_status": status},
                )
            if time.monotonic() > deadline:
                context.log.warning(f"[pipes] Azure ML job {job_name} still {status}: cancelling")
                self.client.jobs.begin_cancel(job_name)
                final = self._poll_til_terminating(job_name)
                raise AmlJobFailure(
                    description=(
                        f"Azure ML job {job_name} was still {status} after {self.timeout_seconds:g} s "
                        f"(MLOPS_AML_TRAINING_TIMEOUT_SECONDS): cancelled, now {final}"
                    ),
                    metadata={"aml_job": job_name, "aml_status": status, "aml_final_status": final},
                )
            time.sleep(self.poll_interval_seconds)

    def _poll_til_terminating(self, job_name: str) -> str:
        deadline = time.monotonic() + self.cancel_wait_seconds
        while True:
            status = self.client.jobs.get(job_name).status
            if status in FINISHED or time.monotonic() > deadline:
                return status
            time.sleep(self.poll_interval_seconds)


class CleanContextInjector(PipesAzureBlobStorageContextInjector):
    """Deletes the context blob even when the job fails (the base class skips it on an error)."""

    @contextmanager
    def inject_context(self, context: Any) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {}
        try:
            with super().inject_context(context) as params:
                yield params
        finally:
            if params:
                _delete_prefix(self.client, self.bucket, params["key"])


class CleanMessageReader(PipesAzureBlobStorageMessageReader):
    """Deletes the message chunks once they are read (the base class leaves them)."""

    @contextmanager
    def read_messages(self, handler: Any) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {}
        try:
            with super().read_messages(handler) as params:
                yield params
        finally:
            if params.get("key_prefix"):
                _delete_prefix(self.client, self.bucket, params["key_prefix"] + "/")


def _delete_prefix(client: Any, container: str, prefix: str) -> None:
    """Best effort: a failed clean-up leaves a few small blobs, and must not hide the step's own error."""
    try:
        container_client = client.get_container_client(container)
        for blob in container_client.list_blobs(name_starts_with=prefix):
            container_client.delete_blob(blob.name)
    except Exception as exc:  # reported, never raised over the real outcome
        logging.getLogger(__name__).warning("could not delete Pipes blobs %s/%s*: %s", container, prefix, exc)
