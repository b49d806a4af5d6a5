"""The local profile end to end on a real Dagster instance, real MLflow and real Pipes subprocesses."""

import json
import re

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.core.file_sensors import RUN_KEY_TAG, SENSOR_NAME_TAG
from mlops_assets.ingest.assets import landed_batch, landed_files, validated_batch
from mlops_assets.ingest.automation import LANDING_SENSOR
from mlops_assets.ingest.seed import land_held_back, seed
from mlops_assets.model.artifact import load_verified_model, sha256_hex
from mlops_assets.ops.runner import ingest_new_files, retrain
from mlops_assets_tests import data_files
from mlops_assets_tests.projects import DIABETES

REQUIRED_TAGS = {
    "mse", "rmse", "r2", "mae", "data_version", "snapshot_uri", "holdout_hash", "code_version",
    "model_code_digest", "spec_digest", "project", "spec_version", "primary_metric", "columns_digest",
    "dagster_run_id", "compute_backend", "parent_champion_version", "artifact_sha256", "fingerprint",
}  # fmt: skip


@pytest.fixture
def seeded(settings, storage, instance, defs):
    seed(storage, DIABETES)
    return defs


def registry_of(defs):
    return defs.resources["registry"].get_registry()


def test_first_file_trains_version_one_and_the_held_back_file_retrains(settings, storage, instance, seeded):
    defs = seeded
    (first,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert (first.partition, first.success, first.rows, first.failed_checks) == (
        "diabetes-part-1.csv",
        True,
        331,
        [],
    )

    one = retrain(defs, instance, settings.lock_dir)
    assert one.success and one.registered["version"] == 1
    assert one.evaluation["promote"] and "first candidate" in one.evaluation["reason"]
    version = registry_of(defs).get_version(1)
    assert set(version.tags) >= REQUIRED_TAGS
    assert version.tags["compute_backend"] == "local-subprocess"
    assert version.tags["dagster_run_id"] == one.run_id
    assert version.tags["data_version"] == one.training_data["data_version"]

    # The release manifest beside the artifact, in storage and in the registry, verifies the bytes.
    release_dir = one.registered["release_dir"]
    manifest = json.loads(storage.read_bytes(f"{release_dir}/manifest.json"))
    assert manifest["version"] == 1 and manifest["sha256"] == version.tags["artifact_sha256"]
    assert sha256_hex(storage.read_bytes(f"{release_dir}/model.skops")) == manifest["sha256"]
    assert json.loads(registry_of(defs).read_file(1, "manifest.json")) == manifest
    assert manifest["features"] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    # The smoke block: holdout rows and the registered artifact's own predictions for them.
    smoke = manifest["smoke"]
    assert len(smoke["rows"]) == 3 and all(len(row) == 10 for row in smoke["rows"])
    model = load_verified_model(storage.read_bytes(f"{release_dir}/model.skops"), manifest["sha256"], "v1")
    rows = pd.DataFrame(smoke["rows"], columns=manifest["features"])
    assert model.predict(rows).tolist() == smoke["predictions"]

    assert land_held_back(storage, DIABETES)
    (second,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert second.success and second.rows == 111
    two = retrain(defs, instance, settings.lock_dir)
    assert two.success and two.training_data["rows"] == 442
    assert two.evaluation["bar"]["version"] == 1  # compared with version 1 on the same new holdout
    versions = registry_of(defs).list_versions()
    assert [v.version for v in versions] == ([1, 2] if two.evaluation["promote"] else [1])

    # Nothing new: the run succeeds, nothing is registered, and the reason is recorded.
    again = retrain(defs, instance, settings.lock_dir)
    assert again.success and again.registered is None
    assert "identical to version" in again.evaluation["reason"]
    assert len(registry_of(defs).list_versions()) == len(versions)
    observation = instance.fetch_observations(dg.AssetKey("registered_model"), limit=1).records[0]
    assert observation.asset_observation.metadata["decision"].value == "skipped"


BAD_FILES = {
    "missing-column.csv": (data_files.missing_column, "column s6 missing (schema check)"),
    "text-value.csv": (data_files.text_value, "column bmi must be numeric"),
    "nulls.csv": (data_files.nulls, "column bp has 2 empty value(s)"),
    "out-of-range.csv": (data_files.out_of_range, "column age has 1 value(s) outside [0, 120]"),
    "not-csv.csv": (data_files.not_csv, "binary content, not a CSV file (parse check)"),
    "changed-units.csv": (data_files.changed_units, "column s1 mean"),
}


def test_train_py_runs_with_an_allow_listed_environment_not_the_operator_s(
    settings, storage, instance, seeded, monkeypatch, tmp_path
):
    import sys

    from mlops_assets.training.backends import SubprocessTrainingBackend

    secrets = {
        "MLOPS_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook-token-123",
        "MLOPS_AZURE_STORAGE_CONNECTION_STRING": "AccountKey=c2VjcmV0",
        "AZURE_CLIENT_SECRET": "hunter2",
        "GITHUB_TOKEN": "ghp_operator",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    dump = tmp_path / "train-env.txt"
    python = tmp_path / "python"  # records the environment train.py is given, then runs it
    python.write_text(f'#!/bin/sh\nenv > "{dump}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    defs = dg.Definitions(
        assets=seeded.assets,
        asset_checks=seeded.asset_checks,
        jobs=seeded.jobs,
        resources={**seeded.resources, "trainer": SubprocessTrainingBackend(python_executable=str(python))},
        executor=seeded.executor,
    )
    ingest_new_files(defs, instance, storage, settings.lock_dir)
    trained = retrain(defs, instance, settings.lock_dir)
    assert trained.success and trained.registered["version"] == 1, trained.errors
    given = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert {"PATH", "DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"} <= set(given)
    assert not set(secrets) & set(given)
    assert not any(value in dump.read_text() for value in secrets.values())


def test_bad_files_are_refused_by_name_and_never_break_training(settings, storage, instance, seeded):
    defs = seeded
    ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert retrain(defs, instance, settings.lock_dir).registered["version"] == 1
    for name, (make_bytes, _) in BAD_FILES.items():
        storage.write_bytes(f"landing/{name}", make_bytes())

    outcomes = {o.partition: o for o in ingest_new_files(defs, instance, storage, settings.lock_dir)}
    assert set(outcomes) == set(BAD_FILES)
    for name, (_, expected) in BAD_FILES.items():
        outcome = outcomes[name]
        assert not outcome.success, name
        said = outcome.failed_checks + outcome.errors  # a file that does not parse fails landed_batch
        assert any(f"landing/{name}: " in m and expected in m for m in said), outcome
        assert outcome.rows is None
        # The run's headline in the UI is the failed step's description: the rule and the rows.
        failed = [
            record.dagster_event
            for record in instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        ]
        headline = failed[0].step_failure_data.user_failure_data.description
        assert len(failed) == 1 and f"landing/{name}: " in headline and expected in headline, name
        if name in {"text-value.csv", "nulls.csv", "out-of-range.csv"}:
            assert re.search(r"row \d+", headline), headline  # the first offending rows
    materialized = instance.get_materialized_partitions(validated_batch.key)
    assert materialized == {"diabetes-part-1.csv"}
    # The file that is no CSV shows failed in landed_batch too (not green), with the parse problem
    # as its run's only error; the files that parse landed and failed their checks.
    landed = instance.get_materialized_partitions(landed_batch.key)
    assert landed == set(BAD_FILES) - {"not-csv.csv"} | {"diabetes-part-1.csv"}
    assert outcomes["not-csv.csv"].errors == [
        "landing/not-csv.csv: binary content, not a CSV file (parse check)"
    ]

    # Registered versions untouched; training still works on the batches that passed.
    after_bad = retrain(defs, instance, settings.lock_dir)
    assert after_bad.success and after_bad.training_data["batches"] == ["diabetes-part-1.csv"]
    assert [v.version for v in registry_of(defs).list_versions()] == [1]

    # The next good file still trains.
    land_held_back(storage, DIABETES)
    (good,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert good.success
    latest = retrain(defs, instance, settings.lock_dir)
    assert latest.success and latest.training_data["rows"] == 442

    # A bad file re-listed is not ingested again (run keys live in the instance).
    assert ingest_new_files(defs, instance, storage, settings.lock_dir) == []


def test_a_batch_replaced_by_a_failing_version_or_deleted_stops_feeding_training(
    settings, storage, instance, seeded
):
    defs = seeded
    land_held_back(storage, DIABETES)
    ingest_new_files(defs, instance, storage, settings.lock_dir)
    both = retrain(defs, instance, settings.lock_dir)
    assert both.training_data["batches"] == ["diabetes-part-1.csv", "diabetes-part-2.csv"]

    # The same name, a version with an impossible age: its checks fail, its old parquet stays.
    storage.write_bytes("landing/diabetes-part-2.csv", data_files.out_of_range())
    (replaced,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert not replaced.success
    assert "diabetes-part-2.csv" in instance.get_materialized_partitions(validated_batch.key)
    after = retrain(defs, instance, settings.lock_dir)
    assert after.success and after.training_data["batches"] == ["diabetes-part-1.csv"]
    assert after.training_data["rows"] == 331

    # Deleted from landing/: left out as well, with the reason in the metadata.
    storage.fs.rm(storage.fs_path("landing/diabetes-part-1.csv"))
    gone = retrain(defs, instance, settings.lock_dir)
    assert not gone.success
    assert any(
        "no validated batch to train on" in e
        and "diabetes-part-1.csv: no longer under landing/" in e
        and "diabetes-part-2.csv: its newest version did not pass its checks" in e
        for e in gone.errors
    ), gone.errors


def test_drifted_valid_batch_passes_with_a_visible_warning(settings, storage, instance, seeded):
    defs = seeded
    storage.write_bytes("landing/drifted.csv", data_files.drifted())
    outcomes = {o.partition: o for o in ingest_new_files(defs, instance, storage, settings.lock_dir)}
    drifted = outcomes["drifted.csv"]
    assert drifted.success and drifted.rows == 111
    assert any("column bmi drifted" in w for w in drifted.warnings)
    assert drifted.failed_checks == []


def test_a_file_with_columns_the_spec_does_not_name_passes_and_says_which(
    settings, storage, instance, seeded
):
    defs = seeded
    frame = DIABETES.seed_frame().head(60).assign(clinic="north", visit_id=range(60))
    storage.write_bytes("landing/wider.csv", frame.to_csv(index=False).encode())
    outcomes = {o.partition: o for o in ingest_new_files(defs, instance, storage, settings.lock_dir)}
    wider = outcomes["wider.csv"]
    assert wider.success and wider.rows == 60 and wider.failed_checks == []
    said = "landing/wider.csv: 2 column(s) the spec does not name, left out: clinic, visit_id"
    assert any(said in warning for warning in wider.warnings), wider.warnings
    run_log = [record.user_message for record in instance.all_logs(wider.run_id)]
    assert any(said in message for message in run_log)


def test_validated_batch_alone_refuses_a_bad_partition(settings, storage, instance, seeded):
    defs = seeded
    storage.write_bytes("landing/nulls.csv", data_files.nulls())
    instance.add_dynamic_partitions(landed_files.name, ["nulls.csv"])
    result = dg.materialize(
        [landed_batch, validated_batch],
        partition_key="nulls.csv",
        resources=defs.resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert (
        "landing/nulls.csv: column bp has 2 empty value(s)"
        in failure.step_failure_data.user_failure_data.description
    )
    assert "nulls.csv" not in instance.get_materialized_partitions(validated_batch.key)


def test_landing_sensor_requests_each_file_version_once(settings, storage, instance, seeded):
    defs = seeded
    sensor = defs.resolve_sensor_def(LANDING_SENSOR)
    storage.write_bytes("landing/.upload-in-progress.csv", b"age,sex\n1,")
    storage.write_bytes("landing/half.csv.part", b"age,sex\n1,")

    def tick() -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            return sensor(context)

    result = tick()
    (request,) = result.run_requests
    assert request.partition_key == "diabetes-part-1.csv"
    assert request.run_key.startswith("diabetes-part-1.csv@")
    assert result.dynamic_partitions_requests[0].partition_keys == ["diabetes-part-1.csv"]

    # Run it the way the demo does: tagged as the daemon would, so the next tick skips it.
    ingest_new_files(defs, instance, storage, settings.lock_dir)
    run = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key}))[0]
    assert run.tags[SENSOR_NAME_TAG] == LANDING_SENSOR
    assert tick().run_requests == []

    # The same name with new content is a new version of the file: one more run, same partition.
    storage.write_bytes("landing/diabetes-part-1.csv", data_files.csv_bytes(data_files.held_back()))
    (changed,) = tick().run_requests
    assert changed.partition_key == "diabetes-part-1.csv" and changed.run_key != request.run_key
    assert tick().dynamic_partitions_requests == []


def test_a_landed_file_is_parsed_and_checked_once_and_read_by_its_checks_and_the_gate(
    settings, storage, instance, seeded, monkeypatch
):
    """landed_batch makes the one pass (kept by the file's sha256 and the configuration the rules
    read); the six checks and validated_batch read it, so the file is parsed once per run: a pass
    that somebody edits shows in what they report. Other thresholds make a pass of their own."""
    from mlops_assets.ingest import checked

    defs = seeded
    ingest_new_files(defs, instance, storage, settings.lock_dir)  # the seed's file first: its own pass
    before = {f.path for f in storage.list_files(checked.CHECKED_PREFIX, versions=False)}
    storage.write_bytes("landing/first.csv", DIABETES.seed_frame().head(80).to_csv(index=False).encode())
    parsed = []
    real = checked.read_batches
    monkeypatch.setattr(checked, "read_batches", lambda *a: parsed.append(a[0]) or real(*a))
    (first,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert first.success and first.rows == 80
    assert parsed == ["landing/first.csv"]  # in-process: every step of the run shared one parse
    kept = sorted({f.path for f in storage.list_files(checked.CHECKED_PREFIX, versions=False)} - before)
    assert [p.rsplit(".", 1)[1] for p in kept] == ["json"]  # the outcomes; the typed rows in batches/
    (reference,) = [f.path for f in storage.list_files("assets/validated_batch") if "first.csv" in f.path]
    batch = storage.read_json(reference)
    assert storage.exists(batch["path"]) and batch["rows"] == 80

    # What the checks and the gate report is the pass's: an outcome edited in storage shows.
    outcomes_path = next(p for p in kept if p.endswith(".json"))
    kept_pass = json.loads(storage.read_bytes(outcomes_path))
    kept_pass["outcomes"]["ranges"].update(
        passed=False, problems=["landing/first.csv: planted (ranges check)"]
    )
    storage.write_bytes(outcomes_path, json.dumps(kept_pass).encode())
    again = dg.materialize(
        [landed_batch, validated_batch],
        partition_key="first.csv",
        resources=defs.resources,
        instance=instance,
        raise_on_error=False,
    )
    failure = next(e for e in again.all_events if e.is_step_failure)
    assert (
        failure.step_failure_data.user_failure_data.description == "landing/first.csv: planted (ranges check)"
    )

    # Other thresholds: a pass of their own, made from the file again.
    from mlops_assets.ingest.config import ValidationConfig

    stricter = {**defs.resources, "validation": ValidationConfig(hard_mean_shift_sd=3.5)}
    redone = dg.materialize(
        [landed_batch, validated_batch], partition_key="first.csv", resources=stricter, instance=instance
    )
    assert redone.success
    assert len(list(storage.list_files(checked.CHECKED_PREFIX, versions=False))) == len(before) + 2
    assert storage.read_json(reference) == batch  # the same rows: the same batch, kept once

    # A partition an earlier version landed (its value the bytes, no copy): its gate says what to do,
    # and landing it again replaces that value with the copy's reference.
    value = "assets/landed_batch/first.csv"
    storage.remove(f"{value}.json")
    storage.write_bytes(f"{value}.bin", storage.read_bytes("landing/first.csv"))
    gate = dg.materialize(
        [landed_batch, validated_batch],
        selection=[validated_batch],
        partition_key="first.csv",
        resources=stricter,
        instance=instance,
        raise_on_error=False,
    )
    failure = next(e for e in gate.all_events if e.is_step_failure)
    assert failure.step_failure_data.user_failure_data.description == (
        "landing/first.csv: landed by an earlier version, which kept no copy to check; "
        "materialize landed_batch for it again (the file is still in landing/)"
    )
    again = dg.materialize(
        [landed_batch, validated_batch],
        partition_key="first.csv",
        resources=stricter,
        instance=instance,
    )
    assert again.success and not storage.exists(f"{value}.bin") and storage.exists(f"{value}.json")
