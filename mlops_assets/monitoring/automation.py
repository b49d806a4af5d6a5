"""The monitoring job, its daily schedule and the sensor that compacts a day again when late files arrive."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from mlops_assets.instance import STAGE_TAG
from mlops_assets.monitoring.assets import SOURCE_FINGERPRINT, scoring_days, scoring_logs
from mlops_assets.monitoring.scoring_logs import fingerprint, source_files
from mlops_assets.storage import Storage, StorageResource

SCORING_LOGS_SENSOR = "scoring_logs_sensor"
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

    return dg.Definitions(
        jobs=[monitoring_job], sensors=[scoring_logs_sensor], schedules=[monitoring_schedule]
    )
