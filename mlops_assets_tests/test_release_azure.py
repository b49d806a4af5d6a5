"""Azure release backends against recording control planes (ACR, ACI, AKS) and real Azurite blobs."""

import gzip
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.release.acr_builder import AcrTasksImageBuilder, BuildError, build_on_acr, context_tarball
from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets_tests.azurite import ACCOUNT, KEY
from mlops_assets_tests.cloud_recorders import RecordingAcrClient
from mlops_assets_tests.serving_support import write_release


@pytest.fixture(scope="module")
def build_context(tmp_path_factory):
    root = tmp_path_factory.mktemp("acr")
    write_release(root / "release", 3)
    manifest = json.loads((root / "release" / "manifest.json").read_text())
    context, _ = assemble(
        root / "contexts",
        "model.skops",
        (root / "release" / "model.skops").read_bytes(),
        manifest,
        serving_requirements(),
    )
    return context


def _sas_upload_url(azurite, container: str, blob: str) -> str:
    """What ACR's get_build_source_upload_url hands out: a write SAS to one blob."""
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    if not service.get_container_client(container).exists():
        service.create_container(container)
    sas = generate_blob_sas(
        ACCOUNT,
        container,
        blob,
        account_key=KEY,
        permission=BlobSasPermissions(create=True, write=True),
        expiry=datetime.now(UTC) + timedelta(minutes=10),
    )
    return f"{azurite.account_url}/{container}/{blob}?{sas}"


def _download(azurite, container: str, blob: str) -> bytes:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.get_blob_client(container, blob).download_blob().readall()


def test_acr_build_uploads_the_context_and_schedules_a_docker_build_pinned_by_digest(azurite, build_context):
    url = _sas_upload_url(azurite, "acr-source", "source/ctx.tar.gz")
    client = RecordingAcrClient(url, ["Queued", "Running", "Succeeded"])

    class Builder(AcrTasksImageBuilder):
        def management_client(self):
            return client

    builder = Builder(subscription_id="sub", resource_group="rg", registry_name="reg", poll_seconds=0.01)
    build = builder.build(build_context, "mlops-assets/scoring")

    assert build.built and build.image == f"reg.azurecr.io/mlops-assets/scoring:{build_context.tag}"
    assert build.reference == "reg.azurecr.io/mlops-assets/scoring@sha256:" + "ab" * 32
    assert client.recorder.names() == ["get_build_source_upload_url", "schedule_run", "runs.get", "runs.get"]
    (resource_group, registry, request), _ = client.recorder.last("schedule_run")
    assert (resource_group, registry) == ("rg", "reg")
    assert request.serialize() == {
        "type": "DockerBuildRequest",
        "isArchiveEnabled": False,
        "imageNames": [f"mlops-assets/scoring:{build_context.tag}"],
        "isPushEnabled": True,
        "noCache": False,
        "dockerFilePath": "Dockerfile",
        "timeout": 1800,
        "platform": {"os": "Linux", "architecture": "amd64"},
        "sourceLocation": "source/ctx.tar.gz",
    }
    # The uploaded blob is the context, byte for byte, as a reproducible tarball.
    uploaded = _download(azurite, "acr-source", "source/ctx.tar.gz")
    assert uploaded == context_tarball(build_context.path)
    with tarfile.open(fileobj=io.BytesIO(uploaded)) as archive:
        names = set(archive.getnames())
        assert {"Dockerfile", "requirements.txt", "model/manifest.json", "model/model.skops"} <= names
        dockerfile = archive.extractfile("Dockerfile").read()
        assert {m.mtime for m in archive.getmembers()} == {0}
    assert dockerfile == (build_context.path / "Dockerfile").read_bytes()
    assert gzip.decompress(uploaded)  # a real gzip stream


def test_a_failed_acr_run_fails_the_build_with_the_run_and_its_log(azurite, build_context):
    url = _sas_upload_url(azurite, "acr-source", "source/failed.tar.gz")
    client = RecordingAcrClient(url, ["Queued", "Failed"])

    class Builder(AcrTasksImageBuilder):
        def management_client(self):
            return client

    with pytest.raises(
        dg.Failure, match=r"ACR run ca1 \(.*\) ended Failed: step 1 failed; log: https://logs"
    ):
        Builder(subscription_id="s", resource_group="rg", registry_name="reg", poll_seconds=0.01).build(
            build_context, "mlops-assets/scoring"
        )


def test_a_hanging_acr_run_is_cancelled_at_the_timeout(azurite, build_context):
    url = _sas_upload_url(azurite, "acr-source", "source/hang.tar.gz")
    client = RecordingAcrClient(url, ["Queued", "Running"])
    with pytest.raises(BuildError, match=r"still Running after 0 s; cancelled"):
        build_on_acr(client, "rg", "reg", build_context, "mlops-assets/scoring", 0.2, poll_seconds=0.02)
    assert client.recorder.names()[-1] == "runs.cancel"
    assert client.recorder.last("runs.cancel")[0] == ("rg", "reg", "ca1")


def test_the_context_tarball_is_reproducible(build_context):
    assert context_tarball(build_context.path) == context_tarball(Path(build_context.path))
