"""Ingest automation: a landed file or a labels file becomes a partition and one run."""

import dagster as dg

from mlops_assets.core import keys
from mlops_assets.core.file_sensors import MAX_RUNS_PER_TICK, FilePlan, build_file_sensor, plan_files
from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.core.storage import Storage, StorageResource
from mlops_assets.ingest.assets import LANDING_PREFIX, landed_batch, landed_files, validated_batch
from mlops_assets.ingest.feedback_batch import LABELS_PREFIX, PENDING, feedback_batch, feedback_files

LANDING_SENSOR = "landing_sensor"
FEEDBACK_SENSOR = "feedback_sensor"

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(landed_batch, validated_batch),
    partitions_def=landed_files,
    tags={STAGE_TAG: "ingest"},
    description="One landed file: copy, check (parse, schema, nulls, ranges, distribution), validate.",
)


feedback_job = dg.define_asset_job(
    "feedback_job",
    selection=dg.AssetSelection.assets(feedback_batch),
    partitions_def=feedback_files,
    tags={STAGE_TAG: "ingest"},
    description="One labels file: join with the compacted scoring logs, check, keep for training.",
)


def plan_landing(
    storage: Storage,
    instance: dg.DagsterInstance,
    limit: int = MAX_RUNS_PER_TICK,
    settle_seconds: float = 0.0,
) -> FilePlan:
    """``settle_seconds``: 0 for a caller that wrote the files itself (the demo, the CLI)."""
    return plan_files(
        storage,
        instance,
        LANDING_PREFIX,
        landed_files,
        ingest_job.name,
        limit=limit,
        settle_seconds=settle_seconds,
    )


def plan_feedback(storage: Storage, instance: dg.DagsterInstance) -> tuple[list[str], list[dg.RunRequest]]:
    """New or changed labels files, and files with pending labels once newer scoring logs are compacted."""
    plan = plan_files(
        storage, instance, LABELS_PREFIX, feedback_files, feedback_job.name, run_key_prefix="labels/"
    )
    requested = {r.partition_key for r in plan.run_requests}
    newest_logs = instance.fetch_materializations(keys.SCORING_LOGS, limit=1).records
    if newest_logs:
        logs_id = newest_logs[0].storage_id
        # Two queries whatever the number of labels files: each file's latest batch, then those
        # of them older than the newest compacted logs (the only ones a retry could help).
        latest = instance.event_log_storage.get_latest_storage_id_by_partition(
            feedback_batch.key, dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        older = sorted(i for key, i in latest.items() if i < logs_id and key not in requested)
        records = (
            instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=feedback_batch.key, storage_ids=older), limit=len(older)
            ).records
            if older
            else []
        )
        for record in sorted(records, key=lambda r: r.partition_key or ""):
            if record.asset_materialization.metadata[PENDING].value:
                plan.run_requests.append(
                    dg.RunRequest(
                        partition_key=record.partition_key,
                        run_key=f"labels/{record.partition_key}@retry-after-{logs_id}",
                        job_name=feedback_job.name,
                    )
                )
    return plan.new_partitions, plan.run_requests


def build_landing_sensor(
    default_status: dg.DefaultSensorStatus, interval: int = 30, settle_seconds: float = 10.0
) -> dg.SensorDefinition:
    return build_file_sensor(
        LANDING_SENSOR,
        ingest_job,
        landed_files,
        lambda storage, instance: plan_landing(storage, instance, settle_seconds=settle_seconds),
        default_status,
        interval,
        f"A new or changed file under landing/, unchanged for {settle_seconds:g} s, becomes a partition "
        "and one ingest_job run.",
    )


def build_feedback_sensor(default_status: dg.DefaultSensorStatus, interval: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name=FEEDBACK_SENSOR,
        job=feedback_job,
        default_status=default_status,
        minimum_interval_seconds=interval,
        description="A new labels file under labels/ (or one with pending labels, once more logs are compacted) "
        "becomes a feedback_files partition and a feedback_job run.",
    )
    def feedback_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
        new, requests = plan_feedback(storage.get(), context.instance)
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[feedback_files.build_add_request(new)] if new else [],
        )

    return feedback_sensor
