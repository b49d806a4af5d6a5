"""Labels arriving later under labels/: read, joined with compacted scoring logs, into training_data."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.ingest.feedback import LabelsError, join_labels, read_labels
from mlops_assets.serving.request_log import record_line
from mlops_assets_tests.projects import DIABETES, FEATURES

SPEC = DIABETES.spec


def _logs(*requests: tuple[str, int]) -> pd.DataFrame:
    rows = [
        {"request_id": rid, "row_index": i, **{f: float(i + 1) for f in FEATURES}}
        for rid, count in requests
        for i in range(count)
    ]
    return pd.DataFrame(rows)


def test_labels_are_matched_pending_or_unknown_with_a_reason():
    labels = read_labels(
        "labels/x.csv", b"request_id,row_index,progression\nr1,0,150\nr1,1,160\nr1,5,1\nr9,0,99\n", SPEC
    )
    logs = _logs(("r1", 2))
    waiting = join_labels(labels, logs, still_waiting=True, spec=SPEC)
    assert waiting.matched == 2 and list(waiting.frame["progression"]) == [150.0, 160.0]
    assert list(waiting.frame["age"]) == [1.0, 2.0]  # the features of the scored rows, not of the labels file
    assert waiting.unknown == ["r1#5: the request had 2 row(s)"] and waiting.pending == ["r9#0"]
    expired = join_labels(labels, logs, still_waiting=False, spec=SPEC)
    assert expired.pending == [] and "r9#0: no such request in the compacted scoring logs" in expired.unknown


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"request_id,progression\nr1,3\n", r"column\(s\) row_index missing"),
        (
            b"request_id,row_index,progression\nr1,0,abc\n",
            r"column progression is not a number on line\(s\) 2",
        ),
        (b"request_id,row_index,progression\nr1,-1,3\n", "row_index must be a whole number >= 0"),
        (b"", "not a CSV file"),
    ],
)
def test_a_bad_labels_file_is_refused_by_name(raw, message):
    with pytest.raises(LabelsError, match=message):
        read_labels("labels/bad.csv", raw, SPEC)


@pytest.mark.slow
def test_labels_join_the_logs_feed_training_data_and_pending_ones_are_retried(
    settings, storage, instance, defs
):
    from mlops_assets.ingest.automation import FEEDBACK_SENSOR, plan_feedback
    from mlops_assets.ingest.feedback_batch import feedback_files
    from mlops_assets.ingest.seed import seed, split_seed
    from mlops_assets.monitoring.assets import scoring_logs
    from mlops_assets.ops.runner import execute, ingest_new_files, retrain, sensor_tags
    from mlops_assets.training.automation import plan_retrain
    from mlops_assets_tests.projects import diabetes_frame

    seed(storage, DIABETES)
    ingest_new_files(defs, instance, storage, settings.lock_dir)
    first = retrain(defs, instance, settings.lock_dir)
    assert first.registered

    held = split_seed(diabetes_frame())[1].head(4)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    noon = datetime(yesterday.year, yesterday.month, yesterday.day, 12, tzinfo=UTC)

    def log(day, request_id, rows):
        stamp = int(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp() * 1000)
        body = ('{"data": ' + str(rows[list(FEATURES)].to_numpy().tolist()) + "}").encode()
        response = ('{"result": [' + ", ".join(["100.0"] * len(rows)) + "]}").encode()
        line = record_line(
            request_id,
            noon.timestamp() if day == yesterday else noon.timestamp() + 86_400,
            "1",
            body,
            response,
            1.0,
            False,
            None,
        )
        storage.write_bytes(f"scoring-logs/date={day.isoformat()}/{stamp}-w-{request_id}.jsonl", line)

    log(yesterday, "req-a", held.head(3))
    dg.materialize(
        [scoring_logs], partition_key=yesterday.isoformat(), resources=defs.resources, instance=instance
    )
    targets = held["progression"].tolist()
    storage.write_bytes(
        "labels/week-47.csv",
        (
            "request_id,row_index,progression\n"
            f"req-a,0,{targets[0]}\nreq-a,1,{targets[1]}\nreq-a,2,{targets[2]}\n"
            "req-a,7,100\n"  # a row that request never had
            f"req-b,0,{targets[3]}\n"  # a request not compacted yet (today's)
        ).encode(),
    )
    storage.write_bytes("labels/garbled.csv", b"request_id;row;target\n")

    new, requests = plan_feedback(storage, instance)
    assert sorted(new) == ["garbled.csv", "week-47.csv"] and {r.run_key.split("@")[0] for r in requests} == {
        "labels/garbled.csv",
        "labels/week-47.csv",
    }
    instance.add_dynamic_partitions(feedback_files.name, new)
    keys = {r.partition_key: r.run_key for r in requests}

    def run(partition: str, run_key: str):  # tagged as the daemon tags a sensor's run
        tags = sensor_tags(FEEDBACK_SENSOR, run_key)
        return execute(defs, instance, "feedback_job", settings.lock_dir, partition_key=partition, tags=tags)

    garbled = run("garbled.csv", keys["garbled.csv"])
    assert not garbled.success
    labelled = run("week-47.csv", keys["week-47.csv"])
    assert labelled.success
    metadata = labelled.asset_materializations_for_node("feedback_batch")[0].metadata
    assert (metadata["matched"].value, metadata["pending"].value, metadata["unknown"].value) == (3, 1, 1)
    assert metadata["unknown_examples"].value == "req-a#7: the request had 3 row(s)"
    # Production answered 100.0 for each: its error on the three labelled rows, for the UI to plot.
    expected_mae = sum(abs(100.0 - t) for t in targets[:3]) / 3
    assert metadata["production_mae"].value == pytest.approx(expected_mae, rel=1e-6)
    assert {"production_mse", "production_rmse", "production_r2"} <= set(metadata)

    plan = plan_retrain(instance, 0)
    assert plan.run_key and plan.batches == 2  # the landed batch and the feedback batch
    second = retrain(defs, instance, settings.lock_dir)
    assert second.training_data["rows"] == 331 + 3

    # Today's request is compacted: the file with a pending label is joined again, once.
    today = datetime.now(UTC).date()
    log(today, "req-b", held.tail(1))
    dg.materialize(
        [scoring_logs], partition_key=today.isoformat(), resources=defs.resources, instance=instance
    )
    _, retries = plan_feedback(storage, instance)
    (retry,) = [r for r in retries if r.partition_key == "week-47.csv"]
    assert retry.run_key.startswith("labels/week-47.csv@retry-after-")
    again = run("week-47.csv", retry.run_key)
    assert again.asset_materializations_for_node("feedback_batch")[0].metadata["matched"].value == 4
    _, after = plan_feedback(storage, instance)
    assert [r for r in after if r.partition_key == "week-47.csv"] == []
