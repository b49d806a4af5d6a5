"""landing_sensor on Azure Blob Storage, for real against Azurite: etags, no double runs, outages."""

import time
import uuid

import dagster as dg
import pytest

from mlops_assets.core.storage import StorageIOManager, StorageResource
from mlops_assets.ingest.assets import landed_batch, landed_files, validated_batch
from mlops_assets.ingest.automation import LANDING_SENSOR, plan_landing
from mlops_assets.ops.runner import sensor_tags
from mlops_assets_tests import data_files


@pytest.fixture
def blob_storage(azurite):
    from azure.storage.blob import BlobServiceClient

    container = f"mlops-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    return StorageResource(root_url=f"az://{container}", connection_string=azurite.connection_string)


def _tick(defs, instance, storage: StorageResource) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    with dg.build_sensor_context(instance=instance, resources={"storage": storage}) as context:
        return sensor(context)


def _ingest_as_the_daemon_would(defs, instance, storage: StorageResource, request: dg.RunRequest):
    instance.add_dynamic_partitions(landed_files.name, [request.partition_key])
    return dg.materialize(
        [landed_batch, validated_batch],
        partition_key=request.partition_key,
        resources={**defs.resources, "storage": storage, "io_manager": StorageIOManager(storage=storage)},
        instance=instance,
        tags=sensor_tags(LANDING_SENSOR, request.run_key),
    )


def test_new_and_changed_blobs_each_start_one_ingest_run(settings, instance, defs, blob_storage):
    store = blob_storage.get()
    frame = data_files.held_back()
    store.write_bytes("landing/a.csv", data_files.csv_bytes(frame.iloc[:50]))
    store.write_bytes("landing/b.csv", data_files.csv_bytes(frame.iloc[50:]))
    store.write_bytes("landing/c.csv.part", b"age,sex\n1,")  # an upload under a temporary name

    first = _tick(defs, instance, blob_storage)
    etags = {f.path: f.version for f in store.list_files("landing")}
    assert [(r.partition_key, r.run_key) for r in first.run_requests] == [
        ("a.csv", f"a.csv@{etags['landing/a.csv']}"),
        ("b.csv", f"b.csv@{etags['landing/b.csv']}"),
    ]
    assert first.dynamic_partitions_requests[0].partition_keys == ["a.csv", "b.csv"]
    for request in first.run_requests:
        assert _ingest_as_the_daemon_would(defs, instance, blob_storage, request).success
    kept = store.read_json("assets/validated_batch/a.csv.json")
    assert store.exists(kept["path"])  # the batch itself lives in the container, kept by its digest

    # A second evaluation, a restarted sensor (no cursor at all): nothing twice.
    assert _tick(defs, instance, blob_storage).run_requests == []

    # The same name uploaded again with other bytes: a new etag, one new run for the same partition.
    store.write_bytes("landing/a.csv", data_files.csv_bytes(frame.iloc[:40]))
    (changed,) = _tick(defs, instance, blob_storage).run_requests
    assert changed.partition_key == "a.csv" and changed.run_key != first.run_requests[0].run_key


def test_storage_unreachable_fails_the_tick_and_the_next_one_catches_up(
    settings, instance, defs, blob_storage, azurite
):
    blob_storage.get().write_bytes("landing/late.csv", data_files.csv_bytes(data_files.held_back()))
    closed = StorageResource(
        root_url=blob_storage.root_url,
        connection_string=azurite.connection_string.replace(str(azurite.port), "9"),  # nothing listens
    )
    started = time.monotonic()
    with pytest.raises(Exception) as failed:  # the tick fails and Dagster shows the error on it
        plan_landing(closed.get(), instance)
    assert "Cannot connect to host 127.0.0.1:9" in str(failed.value)
    assert time.monotonic() - started < 30  # well inside Dagster's 60 s sensor evaluation limit
    (request,) = _tick(defs, instance, blob_storage).run_requests  # nothing skipped for good
    assert request.partition_key == "late.csv"


def test_every_blob_client_retries_a_bounded_number_of_times(azurite):
    """A connection string (Azurite, tested live), and an account whose credential adlfs picks
    (a managed or workload identity on ACI and AKS: never asked for a token here) get the same
    bounded retries, not the SDK's minutes per call."""
    from mlops_assets.storage.fsstore import BLOB_RETRIES, Storage, credential_options
    from mlops_assets_tests.serving_support import free_port

    by_key = Storage("az://bounded", **credential_options(azurite.connection_string, None))
    by_identity = Storage(
        "az://bounded", **credential_options(None, "mlopsstore"), account_host=f"127.0.0.1:{free_port()}"
    )
    for storage in (by_key, by_identity):
        policy = storage.fs.service_client._config.retry_policy
        assert (policy.total_retries, policy.initial_backoff, policy.increment_base) == (
            BLOB_RETRIES["retry_total"],
            BLOB_RETRIES["initial_backoff"],
            BLOB_RETRIES["increment_base"],
        )
    assert by_identity.fs.service_client.url.startswith("https://127.0.0.1:")
    assert not by_key.exists("nothing-here.csv")  # the rebuilt client still reaches the account
