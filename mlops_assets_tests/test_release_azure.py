"""Azure release backends against recording control planes (ACR, ACI, AKS) and real Azurite blobs."""

import base64
import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import httpx
import pytest
import yaml

from mlops_assets.release.acr_builder import AcrTasksImageBuilder, BuildError, build_on_acr, context_tarball
from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets_tests.azurite import ACCOUNT, KEY
from mlops_assets_tests.cloud_recorders import RecordingAcrClient
from mlops_assets_tests.serving_support import free_port, write_release


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

        def registry_client(self):
            return client.data_plane

    builder = Builder(subscription_id="sub", resource_group="rg", registry_name="reg", poll_seconds=0.01)
    build = builder.build(build_context, "mlops-assets/scoring")

    assert build.built and build.image == f"reg.azurecr.io/mlops-assets/scoring:{build_context.tag}"
    assert build.reference == "reg.azurecr.io/mlops-assets/scoring@sha256:" + "ab" * 32
    assert client.recorder.names() == [
        "get_manifest_properties",
        "get_build_source_upload_url",
        "schedule_run",
        "runs.get",
        "runs.get",
    ]
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

    # The same context again: the registry has its tag, so nothing is uploaded or built.
    calls = len(client.recorder.calls)
    again = builder.build(build_context, "mlops-assets/scoring")
    assert not again.built and again.reference == build.reference
    assert client.recorder.names()[calls:] == ["get_manifest_properties"]


def _sas_log_url(azurite, container: str, blob: str, text: str) -> str:
    """What ACR's get_log_sas_url hands out: a read SAS to the run's log blob."""
    from azure.storage.blob import BlobClient, BlobSasPermissions, generate_blob_sas

    BlobClient.from_connection_string(azurite.connection_string, container, blob).upload_blob(
        text.encode(), overwrite=True
    )
    sas = generate_blob_sas(
        ACCOUNT,
        container,
        blob,
        account_key=KEY,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(minutes=10),
    )
    return f"{azurite.account_url}/{container}/{blob}?{sas}"


def test_a_failed_acr_run_fails_with_its_log_tail_and_never_a_sas_token(azurite, build_context, caplog):
    url = _sas_upload_url(azurite, "acr-source", "source/failed.tar.gz")
    log_lines = [f"Step {n}/40 : RUN something" for n in range(1, 40)] + ["ERROR: pip install failed"]
    log_url = _sas_log_url(azurite, "acr-source", "logs/ca1.txt", "\n".join(log_lines) + "\n")
    upload_sas = url.split("?", 1)[1]
    client = RecordingAcrClient(
        url,
        ["Queued", "Failed"],
        log_url=log_url,
        error_message=f"step 1 failed fetching {url}",  # a message that quotes a SAS link
    )

    class Builder(AcrTasksImageBuilder):
        def management_client(self):
            return client

        def registry_client(self):
            return client.data_plane

    with pytest.raises(dg.Failure) as failed:
        Builder(subscription_id="s", resource_group="rg", registry_name="reg", poll_seconds=0.01).build(
            build_context, "mlops-assets/scoring"
        )
    message = str(failed.value)
    assert re.search(
        r"ACR run ca1 \(.*\) ended Failed: step 1 failed fetching http://\S+/source/failed\.tar\.gz", message
    )
    assert "whole log: az acr task logs --registry reg --run-id ca1" in message
    assert message.rstrip().endswith("ERROR: pip install failed") and "Step 30/40" in message
    assert "Step 2/40" not in message  # the tail, not the whole log
    everything = message + repr(failed.value.__cause__) + caplog.text
    for token in (upload_sas, log_url.split("?", 1)[1], "sig="):
        assert token not in everything


def test_a_hanging_acr_run_is_cancelled_at_the_timeout(azurite, build_context):
    url = _sas_upload_url(azurite, "acr-source", "source/hang.tar.gz")
    client = RecordingAcrClient(url, ["Queued", "Running"])
    with pytest.raises(BuildError, match=r"still Running after 0 s; cancelled"):
        build_on_acr(client, "rg", "reg", build_context, "mlops-assets/scoring", 0.2, poll_seconds=0.02)
    assert client.recorder.names()[-1] == "runs.cancel"
    assert client.recorder.last("runs.cancel")[0] == ("rg", "reg", "ca1")


def test_the_context_tarball_is_reproducible(build_context):
    import time

    first = context_tarball(build_context.path)
    time.sleep(1.1)  # gzip headers carry seconds
    assert context_tarball(build_context.path) == first


# --- the release assets with the azure target: ACI for QA, AKS for production ---


@pytest.fixture
def cloud(settings, defs):
    """Recording ACI and Kubernetes control planes whose containers run as real local services."""
    from mlops_assets_tests.cloud_recorders import ContainerRuntime, RecordingAciClient, RecordingKubernetes

    runtime = ContainerRuntime(settings.home_dir / "cloud", Path(defs.resources["release"].contexts_dir))
    prod_port = free_port()
    clouds = SimpleNamespace(
        runtime=runtime,
        aci=RecordingAciClient(runtime),
        kube=RecordingKubernetes(runtime, prod_port),
        prod_url=f"http://127.0.0.1:{prod_port}",
        qa_port=free_port(),
    )
    yield clouds
    runtime.stop_all()


def _azure_target(cloud, **overrides):
    from mlops_assets.release.aks_target import KubernetesApis
    from mlops_assets.release.azure_targets import AzureDeploymentTarget

    class RecordedAzureTarget(AzureDeploymentTarget):
        def aci_client(self):
            return cloud.aci

        def kubernetes_apis(self):
            k = cloud.kube
            return KubernetesApis(k.core, k.apps, k.autoscaling, k.policy)

    fields = {
        "subscription_id": "sub",
        "resource_group": "rg-mlops",
        "location": "westeurope",
        "registry_server": "mlopsreg.azurecr.io",
        "acr_pull_identity_id": "/subscriptions/sub/resourceGroups/rg-mlops/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/acr-pull",
        "aci_dns_label": "mlops-qa",
        "aci_port": cloud.qa_port,
        "public_url": cloud.prod_url,
        "poll_seconds": 0.1,
        "ready_timeout_seconds": 60,
        "rollout_timeout_seconds": 60,
    }
    return RecordedAzureTarget(**{**fields, **overrides})


def _release_on(defs, instance, target, version: int) -> dg.ExecuteInProcessResult:
    from mlops_assets.release.assets import model_versions, prod_deployment, qa_deployment, scoring_image

    instance.add_dynamic_partitions(model_versions.name, [str(version)])
    return dg.materialize(
        [scoring_image, qa_deployment, prod_deployment],
        partition_key=str(version),
        resources={**defs.resources, "deploy_target": target},
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.slow
def test_azure_release_goes_through_aci_qa_and_an_aks_rolling_update_and_undoes_a_broken_one(
    settings, instance, defs, cloud
):
    from mlops_assets_tests.test_release import register

    models = defs.resources["registry"].get_registry()
    one, two, three = register(defs, 0.5), register(defs, 50.0), register(defs, 5.0)
    target = _azure_target(cloud)
    key = target.scoring_keys()[0]

    first = _release_on(defs, instance, target, one)
    assert first.success, [e.step_failure_data for e in first.all_events if e.is_step_failure]
    assert {c.asset_key.to_user_string(): c.passed for c in first.get_asset_check_evaluations()} == {
        "qa_deployment": True,
        "prod_deployment": True,
    }
    image = first.output_for_node("scoring_image")["reference"]
    assert first.output_for_node("prod_deployment")["url"] == cloud.prod_url
    assert models.get_alias("production").version == one

    # ACI: exactly the group that would be sent, then deleted once production has the version.
    (resource_group, group_name, group), _ = cloud.aci.recorder.last("begin_create_or_update")
    assert (resource_group, group_name) == ("rg-mlops", "mlops-scoring-qa")
    sent = group.serialize()
    container = sent["properties"]["containers"][0]["properties"]
    assert container["image"] == image
    assert container["command"][-4:] == ["--port", str(cloud.qa_port), "--workers", "2"]
    assert {"name": "MLOPS_SCORING_KEYS", "secureValue": key} in container["environmentVariables"]
    assert all(
        "value" not in v for v in container["environmentVariables"] if v["name"] == "MLOPS_SCORING_KEYS"
    )
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/health/ready",
        "port": cloud.qa_port,
        "scheme": "http",
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["resources"]["requests"] == {"memoryInGB": 1.5, "cpu": 1.0}
    assert sent["properties"]["ipAddress"] == {
        "ports": [{"protocol": "TCP", "port": cloud.qa_port}],
        "type": "Public",
        "dnsNameLabel": "mlops-qa",
        "autoGeneratedDomainNameLabelScope": "TenantReuse",
    }
    assert sent["properties"]["imageRegistryCredentials"] == [
        {"server": "mlopsreg.azurecr.io", "identity": target.acr_pull_identity_id}
    ]
    assert sent["identity"]["type"] == "UserAssigned" and sent["tags"]["mlops-assets/model-version"] == str(
        one
    )
    assert cloud.aci.recorder.names()[-1] == "begin_delete"  # QA torn down after production took it

    # AKS: keys Secret, Service, PDB, HPA created from deploy/k8s; the Deployment carries the image.
    created = [name for name in cloud.kube.recorder.names() if name.startswith("create")]
    assert created == [
        "create Secret",
        "create ServiceAccount",
        "create Service",
        "create PodDisruptionBudget",
        "create HorizontalPodAutoscaler",
        "create Deployment",
    ]
    (namespace, secret), _ = cloud.kube.recorder.last("create Secret")
    assert namespace == "mlops" and base64.b64decode(secret["data"]["keys"]).decode().split(",")[0] == key
    (_, deployment), _ = cloud.kube.recorder.last("create Deployment")
    pod = deployment["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"] == image
    assert pod["metadata"]["annotations"]["mlops-assets/model-version"] == str(one)
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {v["name"]: v for v in pod["spec"]["containers"][0]["env"]}
    assert env["MLOPS_SCORING_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "scoring-keys", "key": "keys"}

    second = _release_on(defs, instance, target, two)
    assert second.success and second.output_for_node("prod_deployment")["mode"].startswith("rolling update")
    assert models.get_alias("production").version == two
    assert models.get_version(one).release_state == "superseded"
    (_, _, patched), _ = cloud.kube.recorder.last("patch Deployment")
    assert (
        patched["spec"]["template"]["spec"]["containers"][0]["image"]
        == second.output_for_node("scoring_image")["reference"]
    )

    # Version 3's pods never become ready: the rollout stops progressing, is undone, the step fails.
    cloud.kube.broken_images.add(_image_of(defs, instance, three))
    broken = _release_on(defs, instance, target, three)
    assert not broken.success
    failure = next(e for e in broken.all_events if e.is_step_failure)
    assert failure.step_failure_data.user_failure_data is not None, (
        failure.step_failure_data.error.to_string()
    )
    message = failure.step_failure_data.user_failure_data.description
    assert f"AKS rollout of version {three} failed (progress deadline exceeded" in message
    assert f"undone to version {two}" in message
    assert f"rolled back to version {two}" in message
    (_, _, undo), _ = cloud.kube.recorder.last("patch Deployment")
    assert undo["spec"]["template"]["metadata"]["annotations"]["mlops-assets/model-version"] == str(two)
    assert models.get_alias("production").version == two
    # Its pods never became ready, so it never served: "failed", not "rolled_back".
    assert models.get_version(three).release_state == "failed"
    assert httpx.get(f"{cloud.prod_url}/health/ready").json()["version"] == str(two)


def _image_of(defs, instance, version: int) -> str:
    from mlops_assets_tests.test_release import materialize_image

    result = materialize_image(defs, instance, version)
    assert result.success
    return result.output_for_node("scoring_image")["reference"]


def test_an_aci_group_that_fails_to_start_is_deleted_and_named(settings, tmp_path):
    from mlops_assets.hosting.health import DeploymentError
    from mlops_assets.release.aci_target import AciQa, AciSpec
    from mlops_assets_tests.cloud_recorders import ContainerRuntime, RecordingAciClient

    client = RecordingAciClient(ContainerRuntime(tmp_path, tmp_path), fail=True)
    qa = AciQa(client, AciSpec("rg", "westeurope", "qa-group", "label"), ready_timeout=5, poll_seconds=0.01)
    with pytest.raises(
        DeploymentError,
        match=r"ACI group qa-group \(reg/scoring:v1\) not running: provisioning Failed; events: Failed to pull image; deleted",
    ):
        qa.deploy("reg/scoring:v1", "1", ["k"])
    assert client.recorder.names() == ["begin_create_or_update", "get", "begin_delete"]


def test_keys_come_from_one_key_vault_secret_and_are_split_for_rotation():
    from mlops_assets.release.azure_targets import keys_from_key_vault

    class SecretClient:
        def __init__(self):
            self.asked = []

        def get_secret(self, name):
            self.asked.append(name)
            return SimpleNamespace(value="new-key, old-key")

    client = SecretClient()
    assert keys_from_key_vault(client, "scoring-keys") == ["new-key", "old-key"]
    assert client.asked == ["scoring-keys"]


def _kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", *map(str, paths)],
        capture_output=True,
        text=True,
    )


def test_every_k8s_manifest_and_a_rendered_release_validate_strictly(tmp_path):
    from mlops_assets.release.aks_target import MANIFESTS, keys_secret, load_manifests, release_deployment

    manifests = sorted(MANIFESTS.glob("*.yaml"))
    assert {p.stem for p in manifests} >= {"deployment", "service", "hpa", "pdb"}
    checked = _kubernetes_validate(*manifests)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    objects = load_manifests()
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(
        yaml.safe_dump_all(
            [
                release_deployment(
                    objects["Deployment"], "reg.azurecr.io/scoring@sha256:" + "0" * 64, "7", "c0de"
                ),
                keys_secret(["k1", "k2"]),
            ]
        )
    )
    checked = _kubernetes_validate(rendered)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # Strict means strict: an unknown field is refused (a typo would otherwise be dropped silently).
    typo = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    typo["spec"]["strategy"]["rollingUpdate"]["maxUnavailabel"] = 0
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(typo))
    assert _kubernetes_validate(tmp_path / "typo.yaml").returncode != 0


def test_the_deployment_manifest_rolls_without_losing_capacity():
    from mlops_assets.release.aks_target import load_manifests

    objects = load_manifests()
    deployment = objects["Deployment"]
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert set(container["resources"]) == {"requests", "limits"}
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
    assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert (
        objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    )
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert objects["Service"]["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    # The image's entrypoint serves on the container port the probes and Service use.
    dockerfile = (
        Path(__file__).resolve().parents[1] / "deploy" / "docker" / "scoring.Dockerfile"
    ).read_text()
    assert f'"--port", "{container["ports"][0]["containerPort"]}"' in dockerfile


def test_the_azure_release_target_is_chosen_by_settings_and_names_what_is_missing(settings, monkeypatch):
    from mlops_assets.definitions import build_definitions
    from mlops_assets.release.acr_builder import AcrTasksImageBuilder
    from mlops_assets.release.azure_targets import AzureDeploymentTarget
    from mlops_assets.settings import get_settings

    monkeypatch.setenv("MLOPS_RELEASE_TARGET", "azure")
    monkeypatch.setenv("MLOPS_AZURE_SUBSCRIPTION_ID", "sub")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="MLOPS_AZURE_RESOURCE_GROUP, MLOPS_AZURE_LOCATION, MLOPS_ACR_NAME"):
        build_definitions(get_settings())
    for name, value in {
        "MLOPS_AZURE_RESOURCE_GROUP": "rg",
        "MLOPS_AZURE_LOCATION": "westeurope",
        "MLOPS_ACR_NAME": "mlopsreg",
        "MLOPS_ACI_DNS_LABEL": "mlops-qa",
        "MLOPS_PRODUCTION_URL": "https://scoring.example.org",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    resources = build_definitions(get_settings()).resources  # builds no client: nothing is contacted
    builder, target = resources["image_builder"], resources["deploy_target"]
    assert isinstance(builder, AcrTasksImageBuilder) and builder.login_server == "mlopsreg.azurecr.io"
    assert isinstance(target, AzureDeploymentTarget)
    assert (target.registry_server, target.aci_dns_label, target.public_url) == (
        "mlopsreg.azurecr.io",
        "mlops-qa",
        "https://scoring.example.org",
    )
    get_settings.cache_clear()


def test_aci_and_aks_give_the_service_its_request_log_destination_identity_and_telemetry():
    """What the control planes are sent so that production traffic reaches scoring-logs/ (as the
    group's user-assigned identity on ACI, the pods' workload identity on AKS) and App Insights."""
    from mlops_assets.release.aci_target import AciSpec, container_group
    from mlops_assets.release.aks_target import (
        ServingIdentity,
        load_manifests,
        release_deployment,
        service_account,
        telemetry_secret,
    )

    telemetry = (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://in.example/"
    )
    identity = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/qa"
    )
    spec = AciSpec(
        "rg", "westeurope", "qa", "mlops-qa", registry_server="r.azurecr.io", identity_id=identity,
        identity_client_id="aci-client-id", scoring_log_url="az://mlops", storage_account="mlopsdata",
    )  # fmt: skip
    sent = container_group(spec, "r.azurecr.io/scoring@sha256:ab", "3", ["k1"], telemetry).serialize()
    env = {v["name"]: v for v in sent["properties"]["containers"][0]["properties"]["environmentVariables"]}
    assert env["MLOPS_SCORING_LOG_URL"]["value"] == "az://mlops"
    assert env["MLOPS_AZURE_STORAGE_ACCOUNT"]["value"] == "mlopsdata"
    assert env["AZURE_CLIENT_ID"]["value"] == "aci-client-id"  # DefaultAzureCredential picks this identity
    assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"] == {
        "name": "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "secureValue": telemetry,
    }
    assert list(sent["identity"]["userAssignedIdentities"]) == [identity]
    # Without a destination nothing is set: the image's defaults apply.
    bare = container_group(AciSpec("rg", "westeurope", "qa", "mlops-qa"), "img", "3", ["k1"]).serialize()
    names = {v["name"] for v in bare["properties"]["containers"][0]["properties"]["environmentVariables"]}
    assert names == {"MLOPS_SCORING_KEYS", "MLOPS_DEPLOYMENT_ID"}

    manifests = load_manifests()
    serving = ServingIdentity("az://mlops", "mlopsdata", "aks-client-id")
    deployment = release_deployment(manifests["Deployment"], "img@sha256:ab", "3", "code", serving)
    pod = deployment["spec"]["template"]
    env = {v["name"]: v for v in pod["spec"]["containers"][0]["env"]}
    assert env["MLOPS_SCORING_LOG_URL"]["value"] == "az://mlops"
    assert env["MLOPS_AZURE_STORAGE_ACCOUNT"]["value"] == "mlopsdata"
    assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"] == {
        "name": "scoring-telemetry",
        "key": "connection-string",
        "optional": True,
    }
    assert pod["spec"]["serviceAccountName"] == "scoring"
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    account = service_account(manifests["ServiceAccount"], serving)
    assert account["metadata"]["annotations"]["azure.workload.identity/client-id"] == "aks-client-id"
    assert base64.b64decode(telemetry_secret(telemetry)["data"]["connection-string"]).decode() == telemetry
    # Applying the release twice does not repeat a variable.
    again = release_deployment(deployment, "img@sha256:cd", "4", "code", serving)
    names = [v["name"] for v in again["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert len(names) == len(set(names))


def test_a_project_s_service_size_reaches_aci_and_aks_and_an_undo_puts_the_previous_size_back(tmp_path):
    """[serving] workers and cpus travel in the build context (its packaged serving spec): ACI's
    group and AKS's Deployment get them, and the Deployment carries them for an undo; a context
    whose project sets nothing keeps each target's default."""
    from mlops_assets.hosting.sizing import CLOUD, LOCAL, Sizing, sizing
    from mlops_assets.release.aci_target import AciSpec, container_group
    from mlops_assets.release.aks_target import SIZING_ANNOTATION, load_manifests, release_deployment
    from mlops_assets_tests.projects import CHURN

    write_release(tmp_path / "release", 3)
    spec = CHURN.spec.model_copy(
        update={"serving": CHURN.spec.serving.model_copy(update={"workers": 4, "cpus": 0.25})}
    )

    def context_for(serving_spec: dict):
        built, _ = assemble(
            tmp_path / "contexts",
            "model.skops",
            (tmp_path / "release" / "model.skops").read_bytes(),
            json.loads((tmp_path / "release" / "manifest.json").read_text()),
            serving_requirements(),
            serving_spec=serving_spec,
        )
        return built

    size = sizing(context_for(spec.serving_dict()).path, CLOUD)
    assert size == Sizing(workers=4, cpus=0.25)
    unsized = context_for(CHURN.spec.serving_dict())
    assert (sizing(unsized.path, CLOUD), sizing(unsized.path, LOCAL), sizing(None, LOCAL)) == (
        CLOUD,
        LOCAL,
        LOCAL,
    )

    sent = container_group(AciSpec("rg", "westeurope", "qa", "mlops-qa"), "img", "3", ["k1"], size=size)
    container = sent.serialize()["properties"]["containers"][0]["properties"]
    assert container["command"][-2:] == ["--workers", "4"]
    assert container["resources"] == {
        "requests": {"memoryInGB": 1.5, "cpu": 0.25},
        "limits": {"memoryInGB": 1.5, "cpu": 0.25},
    }

    deployment = release_deployment(load_manifests()["Deployment"], "img@sha256:ab", "3", "code", size=size)
    pod = deployment["spec"]["template"]
    scoring = pod["spec"]["containers"][0]
    assert scoring["args"] == ["--workers", "4"]
    assert (scoring["resources"]["limits"]["cpu"], scoring["resources"]["requests"]["cpu"]) == (
        "0.25",
        "0.25",
    )
    assert json.loads(pod["metadata"]["annotations"][SIZING_ANNOTATION]) == {"workers": 4, "cpus": 0.25}
    default = release_deployment(load_manifests()["Deployment"], "img@sha256:ab", "3", "code")
    scoring = default["spec"]["template"]["spec"]["containers"][0]
    assert scoring["args"] == ["--workers", "2"]
    assert (
        scoring["resources"]["limits"]["cpu"]
        == load_manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
            "cpu"
        ]
    )
