"""Monitoring automation: the daily job and schedule, late scoring logs, drift -> retrain, failure alerts."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from mlops_assets.core.alerts import AlertWebhook
from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.core.storage import Storage, StorageResource
from mlops_assets.monitoring.assets import (
    NEW_BATCHES,
    SOURCE_FINGERPRINT,
    drift_report,
    scoring_days,
    scoring_logs,
)
from mlops_assets.monitoring.scoring_logs import fingerprint, source_files
from mlops_assets.training.automation import retraining_job

SCORING_LOGS_SENSOR = "scoring_logs_sensor"
DRIFT_RETRAIN_SENSOR = "drift_retrain_sensor"
FAILURE_ALERT_SENSOR = "alert_on_run_failure"
LOOKBACK_DAYS = 7  # late files older than this are left for a manual backfill

monitoring_job = dg.define_asset_job(
    "monitoring_job",
    selection=dg.AssetSelection.assets(scoring_logs).downstream(),
    partitions_def=scoring_days,
    tags={STAGE_TAG: "monitoring"},
    description="One day: compact the scoring logs, then the drift report over the trailing window.",
)


def recorded_fingerprint(instance: dg.DagsterInstance, day: str) -> str | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=scoring_logs.key, asset_partitions=[day]), limit=1
    ).records
    if not records:
        return None
    value = records[0].asset_materialization.metadata.get(SOURCE_FINGERPRINT)
    return value.value if value is not None else None


def stale_days(storage: Storage, instance: dg.DagsterInstance, today: date) -> list[tuple[str, str]]:
    """Finished days (before ``today``) whose log files changed since they were compacted, oldest first."""
    stale = []
    for back in range(LOOKBACK_DAYS, 0, -1):
        day = today - timedelta(days=back)
        files = source_files(storage, day)
        if not files:
            continue
        current = fingerprint(files)
        if recorded_fingerprint(instance, day.isoformat()) != current:
            stale.append((day.isoformat(), current))
    return stale


def drift_retrain_requests(
    instance: dg.DagsterInstance, after_storage_id: int
) -> tuple[list[dg.RunRequest], int]:
    """At most one retrain for the drift reports since the cursor, and only if new labelled data
    arrived since the last training (retraining on the same data changes nothing)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=drift_report.key, after_storage_id=after_storage_id),
        limit=100,
        ascending=True,
    ).records
    if not records:
        return [], after_storage_id
    worth = [
        r
        for r in records
        if r.asset_materialization.metadata["drifted"].value
        and r.asset_materialization.metadata[NEW_BATCHES].value
    ]
    requests = [
        dg.RunRequest(
            run_key=f"drift-{r.partition_key}-{r.storage_id}",
            tags={
                "mlops/trigger": "drift",
                "mlops/reason": f"drift on {r.partition_key} and new labelled data",
            },
        )
        for r in worth[-1:]
    ]
    return requests, records[-1].storage_id


def day_before(moment: datetime) -> str:
    return (moment.astimezone(UTC) - timedelta(days=1)).date().isoformat()


def build_monitoring_automation(
    sensor_status: dg.DefaultSensorStatus, schedule_status: dg.DefaultScheduleStatus
) -> dg.Definitions:
    @dg.sensor(
        name=SCORING_LOGS_SENSOR,
        job=monitoring_job,
        default_status=sensor_status,
        minimum_interval_seconds=300,
        description="A finished day whose scoring-log files changed (late or spilled batches) is compacted again.",
    )
    def scoring_logs_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
        today = datetime.now(UTC).date()
        requests = [
            dg.RunRequest(partition_key=day, run_key=f"scoring-logs-{day}-{digest[:16]}")
            for day, digest in stale_days(storage.get(), context.instance, today)
        ]
        return requests or dg.SkipReason("no finished day has new scoring-log files")

    @dg.schedule(
        name="monitoring_schedule",
        job=monitoring_job,
        cron_schedule="30 0 * * *",
        execution_timezone="UTC",
        default_status=schedule_status,
        description="Every day at 00:30 UTC: the day before (scoring logs, then drift).",
    )
    def monitoring_schedule(context: dg.ScheduleEvaluationContext):
        yesterday = day_before(context.scheduled_execution_time)
        return dg.RunRequest(partition_key=yesterday, run_key=f"monitoring-{yesterday}")

    @dg.sensor(
        name=DRIFT_RETRAIN_SENSOR,
        job=retraining_job,
        default_status=sensor_status,
        minimum_interval_seconds=60,
        description="Drift reported and new labelled data since the last training: one retraining_job run.",
    )
    def drift_retrain_sensor(context: dg.SensorEvaluationContext):
        requests, cursor = drift_retrain_requests(context.instance, int(context.cursor or 0))
        return dg.SensorResult(run_requests=requests, cursor=str(cursor))

    @dg.run_failure_sensor(
        name=FAILURE_ALERT_SENSOR,
        default_status=sensor_status,
        description="Posts a failed run (job, run id, message) to MLOPS_ALERT_WEBHOOK_URL.",
    )
    def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertWebhook):
        run = context.dagster_run
        partition = run.tags.get("dagster/partition")
        alerts.send(
            f"mlops-assets: {run.job_name}{f'[{partition}]' if partition else ''} run {run.run_id[:8]} failed: "
            f"{context.failure_event.message}",
            run_id=run.run_id,
            job=run.job_name,
        )

    return dg.Definitions(
        jobs=[monitoring_job],
        sensors=[scoring_logs_sensor, drift_retrain_sensor, alert_on_run_failure],
        schedules=[monitoring_schedule],
    )
