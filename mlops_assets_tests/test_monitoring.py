"""Scoring logs compacted per day: real request-log lines, a real service, the late-file sensor."""

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from mlops_assets.monitoring.assets import scoring_logs
from mlops_assets.monitoring.automation import stale_days
from mlops_assets.monitoring.scoring_logs import compact_day, source_files
from mlops_assets.serving.request_log import record_line
from mlops_assets_tests.projects import CHURN, CHURN_ROWS, DIABETES, FEATURES
from mlops_assets_tests.serving_support import SAMPLE, Service, write_release

ROW = SAMPLE["data"][0]


def _line(request_id: str, at: datetime, version: str = "1", rows: int = 1, synthetic: bool = False) -> bytes:
    body = ('{"data": [' + ", ".join([str(ROW)] * rows) + "]}").encode()
    response = ('{"result": [' + ", ".join(["150.5"] * rows) + "]}").encode()
    return record_line(request_id, at.timestamp(), version, body, response, 1.25, synthetic, None)


def _write(storage, folder_day: date, name: str, *lines: bytes, flushed: datetime | None = None) -> None:
    """A batch as the writer names it: flush time in ms first."""
    flushed = flushed or datetime(folder_day.year, folder_day.month, folder_day.day, 12, tzinfo=UTC)
    stamp = int(flushed.timestamp() * 1000)
    storage.write_bytes(f"scoring-logs/date={folder_day.isoformat()}/{stamp}-{name}.jsonl", b"".join(lines))


def test_a_day_is_its_records_by_time_without_synthetic_or_duplicates(storage):
    day = date(2026, 11, 20)
    noon = datetime(2026, 11, 20, 12, tzinfo=UTC)
    late = datetime(2026, 11, 20, 23, 59, 59, 500000, tzinfo=UTC)  # flushed after midnight
    _write(
        storage,
        day,
        "a",
        _line("r1", noon, "1", rows=2),
        _line("smoke", noon, synthetic=True),
        b"{not json\n",
    )
    after_midnight = late + timedelta(seconds=1)
    next_day = day + timedelta(days=1)
    _write(
        storage, next_day, "b", _line("r2", late, "2"), _line("next", after_midnight), flushed=after_midnight
    )
    _write(storage, next_day, "retry", _line("r2", late, "2"), flushed=after_midnight)  # delivered twice
    # the next day's later batches are not this day's sources at all
    two_hours_on = late + timedelta(hours=2)
    _write(storage, next_day, "later", _line("r9", two_hours_on), flushed=two_hours_on)
    assert len(source_files(storage, day)) == 3

    frame, summary = compact_day(storage, day, source_files(storage, day), FEATURES)

    assert list(frame["request_id"]) == ["r1", "r1", "r2"] and list(frame["row_index"]) == [0, 1, 0]
    assert list(frame[list(FEATURES)].iloc[0]) == [float(v) for v in ROW]
    assert (summary.requests, summary.rows) == (2, 3)
    assert summary.model_versions == {"1": 1, "2": 1}  # a day with two model versions
    assert (summary.synthetic_excluded, summary.duplicates_removed, summary.malformed_lines) == (1, 1, 1)
    assert summary.latency_ms == {"p50": 1.25, "p95": 1.25, "p99": 1.25}


def test_rows_by_name_and_by_position_compact_into_the_project_s_typed_columns(storage):
    """The churn project's requests as the service logs them: text categories, booleans, a null,
    by name and by position; the labels of a boolean target as 1.0/0.0, as training types them."""
    kinds = {name: column.kind for name, column in CHURN.spec.features.items()}
    noon = datetime(2026, 11, 21, 12, tzinfo=UTC)
    by_position = [[row[f] for f in kinds] for row in CHURN_ROWS]
    lines = [
        record_line(
            rid,
            noon.timestamp(),
            "1",
            json.dumps({"data": rows}).encode(),
            b'{"result": [true, false]}',
            2.0,
            False,
            None,
        )
        for rid, rows in (("by-name", CHURN_ROWS), ("by-position", by_position))
    ]
    _write(storage, noon.date(), "churn", *lines)
    frame, summary = compact_day(storage, noon.date(), source_files(storage, noon.date()), kinds, "boolean")
    assert summary.rows == 4 and summary.malformed_lines == 0
    named, positional = frame[frame.request_id == "by-name"], frame[frame.request_id == "by-position"]
    columns = list(kinds)
    pd.testing.assert_frame_equal(
        named[columns].reset_index(drop=True), positional[columns].reset_index(drop=True)
    )
    assert list(named["plan"]) == ["basic", "premium"] and frame["plan"].dtype == object
    assert list(named["paperless"]) == [1.0, 0.0] and named["support_calls"].isna().tolist() == [False, True]
    assert list(frame["prediction"]) == [1.0, 0.0, 1.0, 0.0]


def test_an_empty_day_is_an_empty_table_with_the_columns(storage):
    frame, summary = compact_day(
        storage, date(2026, 11, 1), source_files(storage, date(2026, 11, 1)), FEATURES
    )
    assert frame.empty and "prediction" in frame.columns and summary.requests == 0


@pytest.mark.slow
def test_the_service_s_own_log_compacts_and_a_late_file_makes_the_sensor_ask_again(
    settings, storage, instance, defs, tmp_path
):
    write_release(tmp_path / "release", 4)
    service = Service(settings.home_dir, tmp_path / "release").wait_live()
    try:
        service.wait_version("4")
        for _ in range(3):
            assert service.score().status_code == 200
        assert service.score(**{"x-mlops-synthetic": "true"}).status_code == 200
    finally:
        service.stop()  # a graceful stop flushes the log
    today = datetime.now(UTC).date()
    materialized = dg.materialize(
        [scoring_logs], partition_key=today.isoformat(), resources=defs.resources, instance=instance
    )
    metadata = materialized.asset_materializations_for_node("scoring_logs")[0].metadata
    assert metadata["requests"].value == 3 and metadata["rows"].value == 6
    assert metadata["model_versions"].value == {"4": 3} and metadata["synthetic_excluded"].value == 1
    table = pd.read_parquet(storage.uri(f"assets/scoring_logs/{today.isoformat()}.parquet"))
    assert len(table) == 6 and set(table["model_version"]) == {"4"}

    # Yesterday too (just after midnight, the service's first batches of today can be its sources).
    dg.materialize(
        [scoring_logs],
        partition_key=(today - timedelta(days=1)).isoformat(),
        resources=defs.resources,
        instance=instance,
    )
    assert stale_days(storage, instance, today) == []
    # A finished day: compacted once, then a spilled batch for it arrives late.
    past = today - timedelta(days=2)
    noon = datetime(past.year, past.month, past.day, 12, tzinfo=UTC)
    _write(storage, past, "first", _line("p1", noon))
    assert [day for day, _ in stale_days(storage, instance, today)] == [past.isoformat()]
    dg.materialize(
        [scoring_logs], partition_key=past.isoformat(), resources=defs.resources, instance=instance
    )
    assert stale_days(storage, instance, today) == []  # nothing new: the sensor asks for nothing
    _write(storage, past, "spilled-during-outage", _line("p2", noon))
    ((day, digest),) = stale_days(storage, instance, today)
    assert day == past.isoformat()
    sensor = defs.resolve_sensor_def("scoring_logs_sensor")
    with dg.build_sensor_context(
        instance=instance, resources={"storage": defs.resources["storage"]}
    ) as context:
        (request,) = sensor(context)
    assert (
        request.partition_key == past.isoformat() and request.run_key == f"scoring-logs-{day}-{digest[:16]}"
    )
    again = dg.materialize([scoring_logs], partition_key=day, resources=defs.resources, instance=instance)
    assert again.asset_materializations_for_node("scoring_logs")[0].metadata["requests"].value == 2


def test_the_monitoring_schedule_compacts_yesterday(defs):
    from mlops_assets.monitoring.automation import day_before

    schedule = defs.resolve_schedule_def("monitoring_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
        "30 0 * * *",
        "UTC",
        "monitoring_job",
    )
    assert day_before(datetime(2026, 11, 24, 0, 30, tzinfo=UTC)) == "2026-11-23"
    assert day_before(datetime(2026, 3, 1, 0, 30, tzinfo=UTC)) == "2026-02-28"


def test_psi_and_ks_tell_a_shift_from_noise():
    import numpy as np

    from mlops_assets.monitoring.drift import DriftThresholds, drift_table, psi

    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000)})
    same = pd.DataFrame({"a": rng.normal(0, 1, 500), "b": rng.normal(0, 1, 500)})
    shifted = same.assign(b=same["b"] + 1.5)
    assert psi(reference["a"].to_numpy(), same["a"].to_numpy()) < 0.05
    assert psi(reference["b"].to_numpy(), shifted["b"].to_numpy()) > 0.5
    table = drift_table(reference, shifted, ["a", "b"], DriftThresholds())
    assert table.set_index("feature")["drifted"].to_dict() == {"a": False, "b": True}
    too_few = drift_table(reference, shifted.head(10), ["a", "b"], DriftThresholds(min_rows=30))
    assert not too_few["drifted"].any()  # ten rows are not judged


def test_a_category_column_drifts_by_its_shares_and_unseen_categories_are_counted():
    import numpy as np

    from mlops_assets.monitoring.drift import DriftThresholds, drift_table

    rng = np.random.default_rng(11)
    plans = ["basic", "standard", "premium"]
    reference = pd.DataFrame(
        {"plan": rng.choice(plans, 3000, p=[0.5, 0.3, 0.2]), "x": rng.normal(0, 1, 3000)}
    )
    same = pd.DataFrame({"plan": rng.choice(plans, 800, p=[0.5, 0.3, 0.2]), "x": rng.normal(0, 1, 800)})
    moved = same.assign(plan=rng.choice([*plans, "gold"], 800, p=[0.1, 0.2, 0.4, 0.3]))
    kinds = {"plan": "categorical", "x": "numeric"}
    quiet = drift_table(reference, same, kinds, DriftThresholds()).set_index("feature")
    assert (
        not quiet["drifted"].any()
        and quiet.loc["plan", "test"] == "chi2"
        and quiet.loc["plan", "unseen"] == 0
    )
    loud = drift_table(reference, moved, kinds, DriftThresholds()).set_index("feature")
    assert loud["drifted"].to_dict() == {"plan": True, "x": False}
    assert loud.loc["plan", "unseen"] == (moved["plan"] == "gold").sum() and loud.loc["plan", "psi"] > 0.5
    assert (loud.loc["plan", "train"], loud.loc["plan", "prod"]) == ("basic", "premium")


def _rows_as_log(frame: pd.DataFrame, day: date, prefix: str) -> bytes:
    """Scored requests of ten rows each, as the service logs them, at noon of ``day``."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    lines = []
    for start in range(0, len(frame), 10):
        chunk = frame.iloc[start : start + 10][list(FEATURES)].to_numpy().tolist()
        body = ('{"data": ' + str(chunk) + "}").encode()
        response = ('{"result": [' + ", ".join(["100.0"] * len(chunk)) + "]}").encode()
        lines.append(
            record_line(f"{prefix}-{start}", noon.timestamp(), "1", body, response, 1.0, False, None)
        )
    return b"".join(lines)


@pytest.mark.slow
def test_drift_report_over_a_window_flags_a_shifted_feature(settings, storage, instance, defs, webhook):
    from mlops_assets.core.alerts import AlertWebhook
    from mlops_assets.ingest.seed import seed
    from mlops_assets.monitoring.assets import drift_report
    from mlops_assets.monitoring.automation import drift_retrain_requests
    from mlops_assets.ops.runner import ingest_new_files, retrain
    from mlops_assets_tests import data_files
    from mlops_assets_tests.projects import diabetes_frame

    seed(storage, DIABETES)
    ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert retrain(defs, instance, settings.lock_dir).registered  # version 1: its snapshot is the reference

    today = datetime.now(UTC).date()
    quiet, shifted = today - timedelta(days=2), today - timedelta(days=1)
    rows = diabetes_frame().sample(200, random_state=3)
    _write(storage, quiet, "normal", _rows_as_log(rows, quiet, "q"))
    _write(storage, shifted, "units", _rows_as_log(rows.assign(bmi=rows["bmi"] + 12), shifted, "s"))

    receiver = webhook
    resources = {**defs.resources, "alerts": AlertWebhook(url=receiver.url)}

    def report(day: date):
        result = dg.materialize(
            [scoring_logs, drift_report],
            partition_key=day.isoformat(),
            resources=resources,
            instance=instance,
        )
        (check,) = result.get_asset_check_evaluations()
        return result.asset_materializations_for_node("drift_report")[0].metadata, check

    first, first_check = report(quiet)
    assert first_check.passed and first["window_days"].value == [quiet.isoformat()]
    assert first["rows"].value == 200 and first["summary"].value == "no drift"

    second, second_check = report(shifted)
    assert second["window_days"].value == [quiet.isoformat(), shifted.isoformat()]  # the trailing window
    assert not second_check.passed and second_check.severity == dg.AssetCheckSeverity.WARN
    assert second_check.metadata["drifted_features"].value == "bmi"
    assert "| bmi " in second["table"].value and second["plots"].value.count("![") == len(FEATURES)
    assert "version 1" in second["against"].value

    # Drift, but nothing new to learn from: an alert, and no retrain.
    (alert,) = receiver.received
    assert alert["text"] == (
        f"mlops-assets: drift on {shifted.isoformat()} in bmi; no new labelled data since the last "
        "training: retraining would change nothing, waiting"
    )
    assert drift_retrain_requests(instance, 0)[0] == []
    # New labelled data arrives (a batch passes validation): the next drift report asks for one retrain.
    storage.write_bytes("landing/fresh.csv", data_files.csv_bytes(data_files.held_back()))
    (fresh,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert fresh.success
    report(shifted)
    assert (
        "1 new labelled batch(es) since the last training: retraining is requested"
        in receiver.received[-1]["text"]
    )
    (request,), _ = drift_retrain_requests(instance, 0)
    assert (
        request.run_key.startswith(f"drift-{shifted.isoformat()}-")
        and request.tags["mlops/trigger"] == "drift"
    )


def test_alerts_go_to_the_webhook_only_when_one_is_set_and_never_fail_a_run():
    from mlops_assets.core.alerts import AlertWebhook
    from mlops_assets_tests.webhook import Receiver

    with Receiver() as receiver:
        assert AlertWebhook(url=receiver.url).send("drift on 2026-11-20 in bmi", job="monitoring_job")
        assert AlertWebhook(url=None).send("nobody hears this") is False
    assert receiver.received == [{"text": "drift on 2026-11-20 in bmi", "job": "monitoring_job"}]
    sas = "https://reg.blob.core.windows.net/logs/run.txt?sv=2024-05-04&se=2026-12-01&sp=r&sig=AbC%2Fd3f"
    with Receiver() as receiver:
        assert AlertWebhook(url=receiver.url).send(f"build failed; log: {sas}.", job=f"x {sas}")
    (posted,) = receiver.received
    assert "sig=" not in json.dumps(posted)
    assert (
        posted["text"]
        == "build failed; log: https://reg.blob.core.windows.net/logs/run.txt?<SAS token removed>."
    )
    with Receiver(status=500) as broken:
        assert AlertWebhook(url=broken.url).send("still no exception") is False
    assert AlertWebhook(url="http://127.0.0.1:9/closed").send("nothing listens") is False


def test_a_failed_run_is_posted_with_its_job_partition_and_reason(settings, storage, instance, defs):
    from mlops_assets.core.alerts import AlertWebhook
    from mlops_assets.ops.runner import ingest_new_files
    from mlops_assets_tests import data_files
    from mlops_assets_tests.webhook import Receiver

    storage.write_bytes("landing/broken.csv", data_files.missing_column())
    (outcome,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
    run = instance.get_run_by_id(outcome.run_id)
    failure = next(
        e
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    )
    sensor = defs.resolve_sensor_def("alert_on_run_failure")
    with Receiver() as receiver:
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure",
            dagster_event=failure.dagster_event,
            dagster_instance=instance,
            dagster_run=run,
            resources={"alerts": AlertWebhook(url=receiver.url)},
        )
        sensor(context.for_run_failure())
    (alert,) = receiver.received
    assert alert["text"].startswith(f"mlops-assets: ingest_job[broken.csv] run {run.run_id[:8]} failed")
    assert alert["run_id"] == run.run_id and alert["job"] == "ingest_job"


def test_the_alert_webhook_url_is_a_secret_the_ui_never_shows(settings, instance, webhook, monkeypatch):
    """A webhook URL carries its credential (Slack, Teams): the code location holds an EnvVar
    naming it, a run resolves it and posts, and neither the resource, the run nor the settings
    show it."""
    import json

    import dagster as dg

    from mlops_assets.core.alerts import AlertWebhook
    from mlops_assets.definitions import build_definitions
    from mlops_assets.settings import get_settings

    secret_url = f"{webhook.url}?token=s3cr3t-t0ken"
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", secret_url)
    get_settings.cache_clear()
    defs = build_definitions(get_settings())
    alerts = defs.resources["alerts"]
    assert isinstance(alerts.url, dg.EnvVar) and alerts.url.env_var_name == "MLOPS_ALERT_WEBHOOK_URL"
    assert "s3cr3t" not in json.dumps(alerts.model_dump(), default=str)
    assert "s3cr3t" not in repr(get_settings())

    @dg.asset
    def noisy(alerts: AlertWebhook) -> None:
        assert alerts.send("drift on a feature")

    result = dg.materialize([noisy], resources={"alerts": alerts}, instance=instance)
    assert result.success and webhook.received == [{"text": "drift on a feature"}]
    run = instance.get_run_by_id(result.run_id)
    assert "s3cr3t" not in json.dumps(run.run_config, default=str)
    assert not any("s3cr3t" in str(e) for e in instance.all_logs(result.run_id))
    get_settings.cache_clear()
