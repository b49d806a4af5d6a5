"""MLOPS_PROFILE=azure end to end on this machine: storage on Azurite, training as an AML command
job through dagster-azure's Pipes client (a stand-in MLClient runs the job as a local process, so
context and messages really travel through blob storage), registry on a recording AML client.
"""

import json
import uuid

import dagster as dg
import pytest

from mlops_assets.batch.backends import JOB_FILES, AzureMLBatchScorer
from mlops_assets.ingest.seed import seed
from mlops_assets.ops.runner import ingest_new_files, retrain
from mlops_assets.registry.aml_backend import AzureMLRegistryResource
from mlops_assets.settings import get_settings
from mlops_assets.training.aml_backend import AzureMLTrainingBackend
from mlops_assets_tests.azurite import KEY
from mlops_assets_tests.cloud_recorders import LocalAmlWorkspace
from mlops_assets_tests.projects import DIABETES, TARGET

IDENTITY = "7f0c1a52-4c55-4a8e-9d1e-3b8f7a1d2c90"


def use_azure_profile(monkeypatch, emulator_connection: str, container: str = "", **settings: str):
    """MLOPS_PROFILE=azure on a fresh container of the emulator; other settings as MLOPS_<NAME>=value."""
    from azure.storage.blob import BlobServiceClient

    container = container or f"mlops-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(emulator_connection).create_container(container)
    chosen = {
        "PROFILE": "azure",
        "STORAGE_URL": f"az://{container}",
        "AZURE_STORAGE_CONNECTION_STRING": emulator_connection,
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_RESOURCE_GROUP": "rg-mlops",
        "AML_WORKSPACE": "mlw-mlops",
        "EVENT_LOG_KEY": "the event-log key every writer shares",
        **settings,
    }
    for name, value in chosen.items():
        if value:
            monkeypatch.setenv(f"MLOPS_{name}", value)
        else:
            monkeypatch.delenv(f"MLOPS_{name}", raising=False)
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def azure_settings(settings, azurite, monkeypatch):
    yield use_azure_profile(monkeypatch, azurite.connection_string, AML_IDENTITY_CLIENT_ID=IDENTITY)
    get_settings.cache_clear()


def on_aml(defs: dg.Definitions, aml: LocalAmlWorkspace, **trainer_fields) -> dg.Definitions:
    """The profile's definitions with only the AML control plane swapped for the stand-in."""

    class Trainer(AzureMLTrainingBackend):
        def ml_client(self):
            return aml

    class Registry(AzureMLRegistryResource):
        def ml_client(self):
            return aml

    class Batch(AzureMLBatchScorer):
        def ml_client(self):
            return aml

    trainer, registry, batch = (defs.resources[key] for key in ("trainer", "registry", "batch"))
    fields = {"poll_interval_seconds": 0.2, "message_interval_seconds": 0.2, **trainer_fields}
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        sensors=defs.sensors,
        schedules=defs.schedules,
        executor=defs.executor,
        resources={
            **defs.resources,
            "trainer": Trainer(
                **{**trainer.model_dump(exclude={"storage"}), **fields}, storage=trainer.storage
            ),
            "registry": Registry(**registry.model_dump()),
            "batch": Batch(**{**batch.model_dump(exclude={"storage"}), **fields}, storage=batch.storage),
        },
    )


@pytest.fixture
def aml(azure_settings, azurite, tmp_path):
    # What the cluster's managed identity gives the job; handed to the process, never to the job entity.
    return LocalAmlWorkspace(
        tmp_path / "aml", job_secrets={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    )


@pytest.fixture
def ingested(azure_settings, instance, aml):
    from mlops_assets.definitions import build_definitions

    defs = on_aml(build_definitions(azure_settings), aml)
    storage = defs.resources["storage"].get()
    assert list(storage.list_files("landing")) == []  # the profile never seeds a user's storage
    seed(storage, DIABETES)  # as `mlops-assets seed` would, asked to
    outcomes = ingest_new_files(defs, instance, storage, azure_settings.lock_dir)
    assert [o.partition for o in outcomes if o.success] == ["diabetes-part-1.csv"]
    return defs


def test_the_retraining_job_trains_on_aml_through_blob_pipes_and_registers_in_aml(
    azure_settings, instance, aml, ingested, azurite
):
    outcome = retrain(ingested, instance, azure_settings.lock_dir)
    assert outcome.success, outcome.errors
    candidate = outcome.candidate
    assert candidate["compute_backend"] == "azureml:mlw-mlops/cpu-cluster"
    assert candidate["artifact_uri"].startswith(f"{azure_settings.storage_url}/models/candidates/")
    assert outcome.registered["version"] == 1
    # The job read the training data itself, from the container: the manifest, then its files
    # (the rows it trained and held out are the manifest's, and the orchestrator read none).
    snapshot = outcome.training_data
    assert candidate["snapshot_uri"] == snapshot["uri"]
    assert snapshot["uri"].startswith(f"{azure_settings.storage_url}/training-data/")
    store = ingested.resources["storage"].get()
    manifest = store.read_json(snapshot["path"])
    assert [e["uri"].rsplit("/", 2)[-2] for e in manifest["batches"]] == ["batches"]
    assert all(store.exists(e["uri"].removeprefix(f"{store.root_url}/")) for e in manifest["batches"])
    assert candidate["n_train"] + candidate["n_holdout"] == sum(e["rows"] for e in manifest["batches"])
    assert candidate["holdout_uri"].startswith(f"{azure_settings.storage_url}/models/candidates/")

    # The job AML would store: code, command line, environment, compute, identity -- and no secret.
    (job,), meta = aml.recorder.last("jobs.create_or_update")
    assert meta["job_name"] == candidate["aml_job"] and meta["experiment"] == "mlops-assets-training"
    assert job["component"]["command"] == "python train.py"
    assert job["compute"] == "azureml:cpu-cluster"
    assert job["resources"] == {"instance_count": 1}
    assert job["identity"] == {"type": "managed_identity", "client_id": IDENTITY}
    assert job["environment"]["image"] == azure_settings.aml_environment_image
    assert "scikit-learn==1.9.1" in job["environment"]["conda_file"]["dependencies"][-1]["pip"]
    variables = job["environment_variables"]
    assert variables["AZURE_STORAGE_ACCOUNT_NAME"] == "devstoreaccount1"
    assert variables["AZURE_CLIENT_ID"] == IDENTITY
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(variables)
    serialised = json.dumps([job, meta], default=str)
    assert KEY not in serialised and "AccountKey" not in serialised
    # Only the trainer, the standalone modules it imports and the model project travel.
    code = aml.workdir / meta["job_name"] / "code"
    uploaded = [p for p in code.rglob("*") if p.is_file() and "__pycache__" not in p.parts]  # not what ran
    assert sorted(p.relative_to(code).as_posix() for p in uploaded) == [
        "mlops_assets/__init__.py",
        "mlops_assets/core/__init__.py",
        "mlops_assets/core/pipes_transport.py",
        "mlops_assets/project/__init__.py",
        "mlops_assets/project/code.py",
        "mlops_assets/project/environment.py",
        "mlops_assets/project/fitting.py",
        "mlops_assets/project/metrics.py",
        "mlops_assets/project/package.py",
        "mlops_assets/project/snapshot.py",
        "project/model.py",
        "project/project.toml",
        "project/seed.py",  # every module of the package: one may import another
        "train.py",
    ]

    # Messages and context went through the Pipes container, and nothing is left there.
    from azure.storage.blob import BlobServiceClient

    pipes = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        azure_settings.aml_pipes_container
    )
    assert list(pipes.list_blobs()) == []

    # The registry got the version from the AML stand-in, files and all.
    registry = ingested.resources["registry"].get_registry()
    (version,) = registry.list_versions()
    assert version.fingerprint == candidate["fingerprint"]
    manifest = json.loads(registry.read_file(1, "manifest.json"))
    assert manifest["sha256"] == candidate["artifact_sha256"]

    # Retraining on the same data: same fingerprint, nothing new registered.
    again = retrain(ingested, instance, azure_settings.lock_dir)
    assert again.success and [v.version for v in registry.list_versions()] == [1]


@pytest.mark.parametrize(
    ("behaviour", "state", "timeout"),
    [("canceled", "Canceled", 600), ("hang", "NotResponding", 2)],
)
def test_a_job_that_does_not_complete_fails_the_asset_naming_the_job_and_registers_nothing(
    azure_settings, instance, azurite, tmp_path, ingested, behaviour, state, timeout
):
    stuck = LocalAmlWorkspace(
        tmp_path / behaviour,
        job_secrets={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string},
        behaviour=behaviour,
    )
    defs = on_aml(ingested, stuck, timeout_seconds=timeout)
    outcome = retrain(defs, instance, azure_settings.lock_dir)
    assert not outcome.success
    (_,), meta = stuck.recorder.last("jobs.create_or_update")
    (message,) = [e for e in outcome.errors if "Azure ML job" in e]
    assert meta["job_name"] in message and state in message
    assert outcome.registered is None
    assert defs.resources["registry"].get_registry().list_versions() == []
    if behaviour == "hang":
        assert stuck.recorder.last("jobs.begin_cancel")[0] == (meta["job_name"],)
        assert "cancelled, now Canceled" in message


def test_a_job_whose_script_fails_names_the_job_and_registers_nothing(
    azure_settings, instance, azurite, tmp_path, ingested
):
    # The cluster's identity cannot read the storage: train.py really runs, and really fails.
    denied = LocalAmlWorkspace(
        tmp_path / "denied",
        job_secrets={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string.replace(KEY, "d3Jvbmc=")},
    )
    outcome = retrain(on_aml(ingested, denied), instance, azure_settings.lock_dir)
    assert not outcome.success
    (_,), meta = denied.recorder.last("jobs.create_or_update")
    assert any(f"Azure ML job {meta['job_name']} ended Failed" in e for e in outcome.errors), outcome.errors
    assert "Server failed to authenticate" in denied.log(meta["job_name"])  # the job's own log says why
    assert ingested.resources["registry"].get_registry().list_versions() == []


def test_the_aml_environment_pins_what_the_lock_installs_here():
    """A model trained on AML must be the model trained locally: same libraries, same versions."""
    import importlib.metadata

    import yaml

    from mlops_assets.training.aml_backend import TRAIN_ENVIRONMENT

    conda = yaml.safe_load(TRAIN_ENVIRONMENT.read_text())
    pins = dict(line.split("==") for line in conda["dependencies"][-1]["pip"])
    assert {"scikit-learn", "numpy", "pandas", "skops", "dagster-pipes", "adlfs"} <= set(pins)
    assert {name: importlib.metadata.version(name) for name in pins} == pins
    # The same packages as the platform's `train` dependency group (what a project's lock shares).
    import re
    import tomllib

    from mlops_assets_tests.conftest import REPO

    group = tomllib.loads((REPO / "pyproject.toml").read_text())["dependency-groups"]["train"]
    assert {re.match(r"[A-Za-z0-9._-]+", requirement)[0] for requirement in group} == set(pins)


def test_the_azure_profile_names_what_it_is_missing(settings, monkeypatch):
    from mlops_assets.resources import resources_for

    monkeypatch.setenv("MLOPS_PROFILE", "azure")
    get_settings.cache_clear()
    with pytest.raises(
        ValueError, match="MLOPS_AZURE_SUBSCRIPTION_ID, MLOPS_AZURE_RESOURCE_GROUP, MLOPS_AML_WORKSPACE"
    ):
        resources_for(get_settings())
    for name, value in {
        "AZURE_SUBSCRIPTION_ID": "s",
        "AZURE_RESOURCE_GROUP": "rg",
        "AML_WORKSPACE": "w",
        "STORAGE_URL": "file:///tmp/x",
    }.items():
        monkeypatch.setenv(f"MLOPS_{name}", value)
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="needs MLOPS_STORAGE_URL=az://"):
        resources_for(get_settings())
    monkeypatch.setenv("MLOPS_STORAGE_URL", "az://mlops")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="needs storage credentials"):
        resources_for(get_settings())
    monkeypatch.setenv("MLOPS_AZURE_STORAGE_ACCOUNT", "mlopsdata")
    get_settings.cache_clear()
    resources = resources_for(get_settings())
    assert type(resources["trainer"]).__name__ == "AzureMLTrainingBackend"
    assert type(resources["registry"]).__name__ == "AzureMLRegistryResource"
    assert resources["storage"].storage_account() == "mlopsdata"
    get_settings.cache_clear()


def test_storage_credentials_from_key_vault_never_reach_logs_or_metadata(
    settings, instance, azurite, monkeypatch
):

    from mlops_assets.core.storage import StorageIOManager, StorageResource
    from mlops_assets.definitions import build_definitions

    azure = use_azure_profile(
        monkeypatch,
        azurite.connection_string,
        AZURE_STORAGE_CONNECTION_STRING="",  # none in the environment: only in the vault
        KEY_VAULT_URL="https://kv-mlops.vault.azure.net",
        STORAGE_KEY_VAULT_SECRET="storage-connection-string",
    )
    defs = build_definitions(azure)
    configured = defs.resources["storage"]
    assert configured.connection_string is None
    assert (configured.key_vault_url, configured.key_vault_secret) == (
        "https://kv-mlops.vault.azure.net",
        "storage-connection-string",
    )
    asked: list[str] = []

    class Vault:  # Key Vault's data plane: SecretClient.get_secret
        def get_secret(self, name):
            asked.append(name)
            return type("Secret", (), {"value": azurite.connection_string})()

    class VaultStorage(StorageResource):
        def secret_client(self):
            return Vault()

    storage = VaultStorage(**configured.model_dump())
    seed(storage.get(), DIABETES)
    resources = {**defs.resources, "storage": storage, "io_manager": StorageIOManager(storage=storage)}
    on_vault = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=resources
    )
    outcomes = ingest_new_files(on_vault, instance, storage.get(), azure.lock_dir)
    assert [o.success for o in outcomes] == [True]
    assert storage.get().exists("assets/validated_batch/diabetes-part-1.csv.json")
    # Fetched when a run sets the resource up (a rotated secret reaches the next run), not per call.
    assert set(asked) == {"storage-connection-string"} and len(asked) <= 3

    entries = instance.all_logs(outcomes[0].run_id)
    text = "\n".join(f"{entry.user_message} {entry.dagster_event}" for entry in entries)
    assert "validated_batch" in text  # the run's events are there to search
    assert KEY not in text and "AccountKey" not in text
    get_settings.cache_clear()


def test_storage_going_away_mid_run_fails_it_clearly_and_the_next_run_starts_clean(
    settings, instance, tmp_path, monkeypatch
):
    """A private Azurite, stopped the moment the AML training job completes, in the middle of the
    retraining run: the run fails naming the storage, within bounded retries; once storage is back,
    the next run trains again and registers v1 -- nothing of the broken run is registered or read."""
    import time

    from mlops_assets.definitions import build_definitions
    from mlops_assets_tests import azurite as emulator

    location = tmp_path / "azurite-private"
    process, service = emulator.start(location)
    try:
        azure = use_azure_profile(monkeypatch, service.connection_string)
        stopped: list[float] = []

        def storage_goes_away():
            emulator.stop(process)
            stopped.append(time.monotonic())

        aml = LocalAmlWorkspace(
            tmp_path / "aml",
            job_secrets={"AZURE_STORAGE_CONNECTION_STRING": service.connection_string},
            on_completed=storage_goes_away,
        )
        defs = on_aml(build_definitions(azure), aml)
        storage = defs.resources["storage"].get()
        seed(storage, DIABETES)
        assert [o.success for o in ingest_new_files(defs, instance, storage, azure.lock_dir)] == [True]

        down = retrain(defs, instance, azure.lock_dir)
        assert stopped and not down.success
        # The storage SDK's own words, naming the address: "...port=NNNN): ... Connection refused".
        assert any(f"port={service.port}" in e and "Connection refused" in e for e in down.errors), (
            down.errors
        )
        assert time.monotonic() - stopped[0] < 90  # bounded retries, not the SDK's minutes per call
        registry = defs.resources["registry"].get_registry()
        assert registry.list_versions() == []

        process, _ = emulator.start_on(location, service.port)
        back = retrain(defs, instance, azure.lock_dir)
        assert back.success, back.errors
        assert [v.version for v in registry.list_versions()] == [1]
        assert back.registered["version"] == 1
    finally:
        emulator.stop(process)
        get_settings.cache_clear()


def test_batch_scoring_runs_as_an_aml_job_through_the_same_pipes_path(
    azure_settings, instance, aml, ingested
):
    import pandas as pd

    from mlops_assets.batch.assets import batch_predictions, scoring_inputs
    from mlops_assets.batch.automation import plan_scoring_inputs
    from mlops_assets_tests import data_files

    assert retrain(ingested, instance, azure_settings.lock_dir).success
    ingested.resources["registry"].get_registry().set_alias("production", 1)
    storage = ingested.resources["storage"].get()
    frame = data_files.held_back().drop(columns=[TARGET]).astype(object)
    frame.loc[3, "s1"] = "oops"
    storage.write_bytes("scoring-input/clinic.csv", data_files.csv_bytes(frame))

    plan = plan_scoring_inputs(storage, instance)
    instance.add_dynamic_partitions(scoring_inputs.name, plan.new_partitions)
    result = dg.materialize(
        [batch_predictions], partition_key="clinic.csv", resources=ingested.resources, instance=instance
    )
    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert (metadata["rows"].value, metadata["scored"].value, metadata["refused"].value) == (
        len(frame),
        len(frame) - 1,
        1,
    )
    assert metadata["compute_backend"].value == "azureml:mlw-mlops/cpu-cluster"

    (job,), meta = aml.recorder.last("jobs.create_or_update")
    assert metadata["aml_job"].value == meta["job_name"] and meta["job_name"].startswith("mlops-batch-")
    assert job["component"]["command"] == "python -m mlops_assets.batch.score_job"
    uploaded = {
        p.relative_to(aml.workdir / meta["job_name"] / "code").as_posix()
        for p in (aml.workdir / meta["job_name"] / "code").rglob("*.py")
    }
    assert uploaded == set(JOB_FILES)  # the job ran from these alone
    assert KEY not in json.dumps([job, meta], default=str)

    with storage.fs.open(storage.fs_path("scoring-output/clinic.parquet"), "rb") as handle:
        scored = pd.read_parquet(handle)
    assert (
        len(scored) == len(frame) - 1
        and 3 not in set(scored["row_id"])
        and set(scored["model_version"]) == {"1"}
    )
    with storage.fs.open(storage.fs_path("scoring-output/clinic.refused.parquet"), "rb") as handle:
        refused = pd.read_parquet(handle)
    assert refused[["row_id", "reason", "s1"]].values.tolist() == [[3, "s1: missing or not a number", "oops"]]


def test_a_sas_connection_string_works_for_files_and_for_blob_clients(azurite):
    """Account key, SAS or identity: a SAS (no account key anywhere) reaches the same storage."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import (
        AccountSasPermissions,
        BlobServiceClient,
        ResourceTypes,
        generate_account_sas,
    )

    from mlops_assets.core.storage import StorageResource
    from mlops_assets_tests.azurite import ACCOUNT

    container = f"sas-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    sas = generate_account_sas(
        ACCOUNT,
        KEY,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(
            read=True, write=True, list=True, delete=True, create=True, add=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    connection = f"BlobEndpoint={azurite.account_url};SharedAccessSignature={sas}"
    storage = StorageResource(root_url=f"az://{container}", connection_string=connection)
    storage.get().write_json("probe/value.json", {"ok": True})
    assert storage.get().read_json("probe/value.json") == {"ok": True}
    from mlops_assets.azure.blob import blob_resource

    resource = blob_resource(storage)
    assert resource.credential.credential_type == "sas"
    with resource.get_client() as blobs:
        names = [b.name for b in blobs.get_container_client(container).list_blobs()]
    assert names == ["probe/value.json"]
    assert storage.storage_account() == ACCOUNT  # from the endpoint: AML jobs need the name, not the SAS
