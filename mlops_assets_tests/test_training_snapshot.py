"""training_data by reference: a manifest of the kept batches (path and digest each), made from
their statistics without reading a row in the code location; the trainer reads the files itself,
and a snapshot stays what it was: a file changed under it is refused, naming it."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlops_assets.ingest.assets import training_data
from mlops_assets.ingest.reference import compute_reference, merged_reference, read_reference
from mlops_assets.ingest.seed import seed
from mlops_assets.ingest.tally import BatchTally
from mlops_assets.ingest.training_data import sample_snapshot
from mlops_assets.ingest.validation import parse_batch, typed_frame
from mlops_assets.ops.runner import ingest_new_files
from mlops_assets.project.snapshot import SnapshotError
from mlops_assets.storage.fsstore import Storage
from mlops_assets.training import train
from mlops_assets_tests import data_files
from mlops_assets_tests.projects import CHURN, DIABETES


def _land_three(storage, defs, instance, settings) -> None:
    seed(storage, DIABETES)
    held_back = data_files.held_back()
    storage.write_bytes("landing/second.csv", data_files.csv_bytes(held_back.head(60)))
    storage.write_bytes("landing/third.csv", data_files.csv_bytes(held_back.tail(51)))
    outcomes = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert [o.success for o in outcomes] == [True, True, True]


def test_training_data_over_several_batches_reads_no_row_and_names_each_file_by_digest(
    settings, storage, instance, defs, monkeypatch
):
    _land_three(storage, defs, instance, settings)

    opened = []

    def record(name, real):
        def recording(self, path, *args, **kwargs):
            opened.append(path)
            return real(self, path, *args, **kwargs)

        monkeypatch.setattr(Storage, name, recording)

    for name in ("read_bytes", "local_file", "copied"):
        record(name, getattr(Storage, name))

    def no_rows(*_, **__):
        raise AssertionError("the code location read rows of a batch")

    for module, name in ((pd, "read_parquet"), (pq, "read_table"), (pq, "ParquetFile"), (pq, "read_schema")):
        monkeypatch.setattr(module, name, no_rows)
    result = dg.materialize([training_data], resources=defs.resources, instance=instance)
    monkeypatch.undo()
    assert result.success
    assert not [path for path in opened if path.endswith(".parquet")], opened

    snapshot = result.output_for_node("training_data")
    assert snapshot["rows"] == 331 + 111 and len(snapshot["batches"]) == 3
    manifest = storage.read_json(snapshot["path"])
    assert manifest["data_version"] == snapshot["data_version"]
    assert [entry["batch"] for entry in manifest["batches"]] == snapshot["batches"]
    for entry in manifest["batches"]:
        assert entry["uri"].endswith(f"batches/{entry['sha256']}.parquet")

    # The trainer reads the files: the rows of the three batches, each tagged, in order.
    frame = train.read_snapshot(snapshot["uri"])
    assert len(frame) == snapshot["rows"] and frame["batch"].unique().tolist() == snapshot["batches"]
    # The reference is merged from the batches' statistics: the moments of all the rows, exactly.
    merged, whole = read_reference(storage), compute_reference(frame, DIABETES.spec, source="rows")
    assert merged.rows == whole.rows
    for name, column in whole.columns.items():
        ours = merged.columns[name]
        assert (ours.mean, ours.std, ours.min, ours.max) == pytest.approx(
            (column.mean, column.std, column.min, column.max), rel=1e-9
        )
        assert len(ours.sample) == min(2000, whole.rows) and set(ours.sample) <= set(frame[name])

    # What drift compares with: a sample of each batch in proportion to its rows, a batch at a time.
    sample = sample_snapshot(storage, snapshot["uri"], 100)
    per_batch = sample["batch"].value_counts().to_dict()
    assert per_batch == {e["batch"]: -(-100 * e["rows"] // snapshot["rows"]) for e in manifest["batches"]}
    assert len(sample_snapshot(storage, snapshot["uri"], 10_000)) == snapshot["rows"]

    # The same batches again: the same version. A batch's file changed under the snapshot: refused.
    again = dg.materialize([training_data], resources=defs.resources, instance=instance)
    assert again.output_for_node("training_data")["data_version"] == snapshot["data_version"]
    changed = manifest["batches"][1]
    path = changed["uri"].removeprefix(f"{storage.root_url}/")
    storage.write_bytes(
        path, storage.read_bytes(manifest["batches"][0]["uri"].removeprefix(f"{storage.root_url}/"))
    )
    with pytest.raises(SnapshotError, match=f"{changed['uri']}: its bytes are not those training data"):
        train.read_snapshot(snapshot["uri"])


def test_the_reference_merged_from_batch_statistics_is_that_of_their_rows():
    """Churn (categories, booleans, integers): two batches' statistics merge to the shares and
    moments of all their rows; the sample is of their rows, as large as the reference keeps."""
    rows = CHURN.seed_frame()
    halves = [rows.iloc[: len(rows) // 3], rows.iloc[len(rows) // 3 :]]
    statistics, frames = [], []
    for salt, half in enumerate(halves):
        batch = parse_batch("landing/x.csv", data_files.csv_bytes(half))
        tally = BatchTally("landing/x.csv", CHURN.spec, salt=salt)
        tally.add(batch)
        statistics.append(tally.statistics())
        frames.append(typed_frame(batch, CHURN.spec))
    merged = merged_reference(statistics, CHURN.spec, source="two")
    typed = pd.concat(frames, ignore_index=True)
    whole = compute_reference(typed, CHURN.spec, source="rows")
    assert merged.rows == whole.rows == len(rows)
    assert (
        set(merged.categories)
        == set(whole.categories)
        == {"plan", "region", "paperless", CHURN.spec.target.name}
    )
    for name, shares in whole.categories.items():
        assert merged.categories[name] == pytest.approx(shares)
    for name, column in whole.columns.items():
        ours = merged.columns[name]
        assert (ours.mean, ours.std, ours.min, ours.max) == pytest.approx(
            (column.mean, column.std, column.min, column.max), rel=1e-9
        )
        assert len(ours.sample) == min(2000, typed[name].notna().sum())


def test_a_retrain_over_several_batches_reads_no_whole_file_of_rows_in_the_code_location(
    settings, storage, instance, defs, monkeypatch
):
    """train.py (a process of its own) reads the batches and writes the holdout beside the
    artifact; the evaluation hands that file to the project runner (another process): the code
    location reads the holdout's first rows only, for the smoke block."""
    from mlops_assets.ops.runner import retrain

    _land_three(storage, defs, instance, settings)

    def no_rows(*_, **__):
        raise AssertionError("the code location read a whole file of rows")

    monkeypatch.setattr(pd, "read_parquet", no_rows)
    monkeypatch.setattr(pq, "read_table", no_rows)
    outcome = retrain(defs, instance, settings.lock_dir)
    assert outcome.success, outcome.errors
    assert outcome.registered["version"] == 1
    candidate = outcome.candidate
    assert candidate["holdout_uri"].endswith(f"{candidate['fingerprint']}/holdout.parquet")
    monkeypatch.undo()
    holdout = pd.read_parquet(storage.fs_path(candidate["holdout_uri"].removeprefix(f"{storage.root_url}/")))
    assert len(holdout) == candidate["n_holdout"] > 0
