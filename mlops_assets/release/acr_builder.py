"""ACR Tasks image builder: upload the build context, schedule a Docker build run, wait, record the digest.

Built on azure-mgmt-containerregistry 14 (its 2025-03-01-preview API still carries Tasks: 15
moved them to a separate package). The context travels as a gzipped tarball to the upload URL
the registry hands out (a SAS URL to a blob), then ``schedule_run`` builds and pushes
``<login server>/<repository>:<tag>`` on ACR's agents: no Docker engine needed anywhere.
"""

import gzip
import io
import tarfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from mlops_assets.release.build_context import BuildContext
from mlops_assets.release.builders import ImageBuild, ImageBuilder
from mlops_assets.storage.redaction import redact_sas

TASKS_API_VERSION = "2025-03-01-preview"
TERMINAL = {"Succeeded", "Failed", "Canceled", "Error", "Timeout"}


class BuildError(RuntimeError):
    """A registry build that did not produce the image; the message names the run and why."""


def context_tarball(root: Path) -> bytes:
    """The context as a reproducible tar.gz: sorted, no owners or times (the digest names it)."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            archive.add(path, arcname=path.relative_to(root).as_posix(), filter=normalise)
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)  # "w:gz" stamps the time


LOG_TAIL_BYTES = 8192


def upload_to_sas_url(url: str, data: bytes) -> None:
    from azure.storage.blob import BlobClient

    try:
        BlobClient.from_blob_url(url).upload_blob(data, overwrite=True)
    except Exception as exc:  # the SDK's message may quote the URL: its SAS is a credential
        raise BuildError(f"uploading the build context failed: {redact_sas(str(exc))}") from None


def log_tail(client: Any, resource_group: str, registry: str, run_id: str, lines: int = 15) -> str:
    """The last lines of an ACR run's log, fetched through its SAS link, which is never shown."""
    from azure.storage.blob import BlobClient

    try:
        blob = BlobClient.from_blob_url(
            client.runs.get_log_sas_url(resource_group, registry, run_id).log_link
        )
        size = blob.get_blob_properties().size
        offset = max(0, size - LOG_TAIL_BYTES)
        text = blob.download_blob(offset=offset, length=size - offset).readall().decode("utf-8", "replace")
    except Exception as exc:
        return f"(log not readable: {redact_sas(str(exc))})"
    return redact_sas("\n".join(text.splitlines()[-lines:]))


def build_on_acr(
    client: Any,
    resource_group: str,
    registry: str,
    context: BuildContext,
    repository: str,
    timeout_seconds: float,
    poll_seconds: float = 5.0,
    log=None,
) -> tuple[str, str, str]:
    """Run the build; returns (run id, tag, digest). ``client`` is a ContainerRegistryManagementClient."""
    from azure.mgmt.containerregistry.v2025_03_01_preview.models import DockerBuildRequest, PlatformProperties

    image = f"{repository}:{context.tag}"
    source = client.registries.get_build_source_upload_url(resource_group, registry)
    upload_to_sas_url(source.upload_url, context_tarball(context.path))
    request = DockerBuildRequest(
        source_location=source.relative_path,
        docker_file_path="Dockerfile",
        image_names=[image],
        is_push_enabled=True,
        no_cache=False,
        platform=PlatformProperties(os="Linux", architecture="amd64"),
        timeout=int(timeout_seconds),
    )
    run = client.registries.schedule_run(resource_group, registry, request)
    run_id = run.run_id
    if log:
        log.info(f"ACR run {run_id} building {image} in {registry}")
    deadline = time.monotonic() + timeout_seconds
    while run.status not in TERMINAL:
        if time.monotonic() > deadline:
            client.runs.cancel(resource_group, registry, run_id)
            raise BuildError(
                f"ACR run {run_id} ({image}) still {run.status} after {timeout_seconds:.0f} s; cancelled"
            )
        time.sleep(poll_seconds)
        run = client.runs.get(resource_group, registry, run_id)
    if run.status != "Succeeded":
        message = redact_sas(run.run_error_message or "no message")
        tail = log_tail(client, resource_group, registry, run_id)
        raise BuildError(
            f"ACR run {run_id} ({image}) ended {run.status}: {message}; whole log: "
            f"az acr task logs --registry {registry} --run-id {run_id}; its last lines:\n{tail}"
        )
    for output in run.output_images or []:
        if output.repository == repository and output.tag == context.tag and output.digest:
            return run_id, context.tag, output.digest
    raise BuildError(f"ACR run {run_id} succeeded but reported no digest for {image}")


class AcrTasksImageBuilder(ImageBuilder):
    """Builds and pushes the scoring image with ACR Tasks (azure-mgmt-containerregistry)."""

    subscription_id: str = Field(description="Azure subscription of the registry.")
    resource_group: str = Field(description="Resource group of the registry.")
    registry_name: str = Field(description="Container registry name (without .azurecr.io).")
    timeout_seconds: float = Field(default=1800, gt=0, description="Longest build before it is cancelled.")
    poll_seconds: float = Field(default=5.0, gt=0)

    @property
    def backend_name(self) -> str:
        return "acr-tasks"

    @property
    def login_server(self) -> str:
        return f"{self.registry_name}.azurecr.io"

    def management_client(self) -> Any:
        from azure.identity import DefaultAzureCredential
        from azure.mgmt.containerregistry import ContainerRegistryManagementClient

        return ContainerRegistryManagementClient(
            DefaultAzureCredential(), self.subscription_id, api_version=TASKS_API_VERSION
        )

    def registry_client(self) -> Any:
        """The registry's data plane (tags and manifests), as the same identity."""
        from azure.containerregistry import ContainerRegistryClient
        from azure.identity import DefaultAzureCredential

        return ContainerRegistryClient(
            f"https://{self.login_server}", DefaultAzureCredential(), audience="https://management.azure.com"
        )

    def existing_digest(self, repository: str, tag: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.registry_client().get_manifest_properties(repository, tag).digest
        except ResourceNotFoundError:
            return None

    def build(self, context: BuildContext, repository: str) -> ImageBuild:
        # The tag is the context's content digest: if the registry has it, this exact image exists.
        digest = self.existing_digest(repository, context.tag)
        if digest:
            return ImageBuild(
                f"{self.login_server}/{repository}:{context.tag}",
                False,
                "already in the registry (same build context): not rebuilt",
                digest,
            )
        try:
            run_id, tag, digest = build_on_acr(
                self.management_client(),
                self.resource_group,
                self.registry_name,
                context,
                repository,
                self.timeout_seconds,
                self.poll_seconds,
                dg.get_dagster_logger(),
            )
        except BuildError as exc:
            raise dg.Failure(str(exc)) from exc
        return ImageBuild(
            f"{self.login_server}/{repository}:{tag}", True, f"built and pushed by ACR run {run_id}", digest
        )
