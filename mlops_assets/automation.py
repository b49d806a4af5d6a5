"""Jobs and sensors: what runs together, and what starts it."""

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mlops_assets.data.assets import (
    FEEDBACK_KEY,
    LANDING_PREFIX,
    landed_batch,
    landed_files,
    training_data,
    validated_batch,
)
from mlops_assets.instance import STAGE_TAG
from mlops_assets.registry.assets import registered_model
from mlops_assets.release.assets import model_versions, prod_deployment, qa_deployment, scoring_image
from mlops_assets.storage import Storage, StorageResource, StoredFile

RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
LANDING_SENSOR = "landing_sensor"
MAX_RUNS_PER_TICK = 25

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(landed_batch, validated_batch),
    partitions_def=landed_files,
    tags={STAGE_TAG: "ingest"},
    description="One landed file: copy, check (parse, schema, nulls, ranges, distribution), validate.",
)

retraining_job = dg.define_asset_job(
    "retraining_job",
    selection=dg.AssetSelection.assets(training_data).downstream()
    & dg.AssetSelection.assets(registered_model).upstream(),
    tags={STAGE_TAG: "training"},
    description="Training snapshot -> candidate (Pipes) -> evaluation -> registration (or a clean skip).",
)


release_job = dg.define_asset_job(
    "release_job",
    selection=dg.AssetSelection.assets(scoring_image, qa_deployment, prod_deployment),
    partitions_def=model_versions,
    tags={STAGE_TAG: "release"},
    description="One registered version (partition): scoring image (then QA and production).",
)
RELEASE_SENSOR = "release_sensor"


def is_ready(file: StoredFile) -> bool:
    """Uploaders write to a dot-, underscore- or .tmp/.part-named file, then rename it into place."""
    name = file.name
    return not (name.startswith((".", "_")) or name.endswith((".tmp", ".part")) or ".tmp-" in name)


@dataclass
class LandingPlan:
    new_partitions: list[str] = field(default_factory=list)
    run_requests: list[dg.RunRequest] = field(default_factory=list)


def run_keys_with_prefix(instance: dg.DagsterInstance, prefix: str) -> set[str]:
    """Every run key starting with ``prefix`` that has a run, in one query (not one per file)."""
    found = instance.get_run_tags(tag_keys=[RUN_KEY_TAG], value_prefix=prefix or None)
    return next((values for key, values in found if key == RUN_KEY_TAG), set())


def plan_files(
    storage: Storage,
    instance: dg.DagsterInstance,
    prefix: str,
    partitions: dg.DynamicPartitionsDefinition,
    job_name: str,
    run_key_prefix: str = "",
    limit: int = MAX_RUNS_PER_TICK,
) -> LandingPlan:
    """New or changed files under ``prefix``: decided from the instance (partitions, run keys)."""
    existing = set(instance.get_dynamic_partitions(partitions.name))
    launched = run_keys_with_prefix(instance, run_key_prefix)
    plan = LandingPlan()
    for file in storage.list_files(prefix):
        if not is_ready(file):
            continue
        key = posixpath.relpath(file.path, prefix)
        run_key = f"{run_key_prefix}{key}@{file.version}"
        if run_key in launched:
            continue
        if key not in existing:
            plan.new_partitions.append(key)
        plan.run_requests.append(dg.RunRequest(partition_key=key, run_key=run_key, job_name=job_name))
        if len(plan.run_requests) >= limit:
            break
    return plan


def plan_landing(
    storage: Storage, instance: dg.DagsterInstance, limit: int = MAX_RUNS_PER_TICK
) -> LandingPlan:
    return plan_files(storage, instance, LANDING_PREFIX, landed_files, ingest_job.name, limit=limit)


def build_file_sensor(
    name: str,
    job: Any,
    partitions: dg.DynamicPartitionsDefinition,
    plan: Callable[[Storage, dg.DagsterInstance], LandingPlan],
    status: dg.DefaultSensorStatus,
    interval: int,
    description: str,
) -> dg.SensorDefinition:
    """A sensor turning each new or changed file ``plan`` finds into a partition and one run."""

    @dg.sensor(
        name=name, job=job, minimum_interval_seconds=interval, default_status=status, description=description
    )
    def file_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
        found = plan(storage.get(), context.instance)
        requests = [partitions.build_add_request(found.new_partitions)] if found.new_partitions else []
        return dg.SensorResult(run_requests=found.run_requests, dynamic_partitions_requests=requests)

    return file_sensor


def build_landing_sensor(default_status: dg.DefaultSensorStatus, interval: int = 30) -> dg.SensorDefinition:
    return build_file_sensor(
        LANDING_SENSOR,
        ingest_job,
        landed_files,
        plan_landing,
        default_status,
        interval,
        "A new or changed file under landing/ becomes a partition and one ingest_job run.",
    )


RELEASES_PER_TICK = 10


def build_release_sensor(default_status: dg.DefaultSensorStatus, interval: int = 15) -> dg.SensorDefinition:
    """The seed's "model artifact trigger": each registered version gets its own release run, in order.

    Not an ``@asset_sensor``: that one sees only the latest materialization since its last tick,
    so of two versions registered in quick succession the first would never be released. This
    reads every registration after the cursor, oldest first; the run queue's release limit (and
    the stage lock in-process) then runs them one at a time in that order.
    """

    @dg.sensor(
        name=RELEASE_SENSOR,
        job=release_job,
        default_status=default_status,
        minimum_interval_seconds=interval,
        description="Each new registry version becomes a model_versions partition and one release_job run.",
    )
    def release_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=registered_model.key, after_storage_id=int(context.cursor or 0)),
            limit=RELEASES_PER_TICK,
            ascending=True,
        ).records
        versions = [str(r.asset_materialization.metadata["version"].value) for r in records]
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=v, run_key=f"release-{v}") for v in versions],
            dynamic_partitions_requests=[model_versions.build_add_request(versions)] if versions else [],
            cursor=str(records[-1].storage_id) if records else context.cursor,
        )

    return release_sensor


RETRAIN_SENSOR = "retrain_after_ingest_sensor"
INGEST_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass(frozen=True)
class RetrainPlan:
    run_key: str | None  # None: nothing to do now (``reason`` says why)
    newest: int  # storage id of the newest validated batch seen
    batches: int
    reason: str


def plan_retrain(instance: dg.DagsterInstance, after_storage_id: int) -> RetrainPlan:
    """One retrain for every batch validated since ``after_storage_id``, once no ingest is in flight.

    Debounced by the run queue itself: files that land together become ingest runs queued
    together, and the retrain waits until the last of them has finished, so a burst gives one
    retrain. A batch that failed its checks is never materialised and starts nothing.
    """
    records = sorted(
        (
            record
            for key in (validated_batch.key, FEEDBACK_KEY)
            for record in instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after_storage_id),
                limit=1000,
                ascending=True,
            ).records
        ),
        key=lambda record: record.storage_id,
    )
    if not records:
        return RetrainPlan(None, after_storage_id, 0, "no batch validated since the last retrain")
    in_flight = [
        run
        for job in (ingest_job.name, "feedback_job")
        for run in instance.get_run_records(dg.RunsFilter(job_name=job, statuses=INGEST_IN_FLIGHT), limit=1)
    ]
    if in_flight:
        return RetrainPlan(
            None,
            after_storage_id,
            len(records),
            f"{len(records)} new batch(es); waiting for ingest runs in flight",
        )
    newest = records[-1].storage_id
    return RetrainPlan(f"retrain-after-{newest}", newest, len(records), f"{len(records)} new batch(es)")


def build_retrain_sensor(default_status: dg.DefaultSensorStatus, interval: int = 30) -> dg.SensorDefinition:
    @dg.sensor(
        name=RETRAIN_SENSOR,
        job=retraining_job,
        default_status=default_status,
        minimum_interval_seconds=interval,
        description="Batches that passed validation lead to one retraining_job run (debounced over a burst).",
    )
    def retrain_after_ingest_sensor(context: dg.SensorEvaluationContext):
        plan = plan_retrain(context.instance, int(context.cursor or 0))
        if plan.run_key is None:
            return dg.SkipReason(plan.reason)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=plan.run_key, tags={"mlops/trigger": "new-data", "mlops/reason": plan.reason}
                )
            ],
            cursor=str(plan.newest),
        )

    return retrain_after_ingest_sensor


def build_schedules(
    default_status: dg.DefaultScheduleStatus, retrain_cron: str
) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name="retraining_schedule",
            job=retraining_job,
            cron_schedule=retrain_cron,
            execution_timezone="UTC",
            default_status=default_status,
            tags={"mlops/trigger": "schedule", "mlops/reason": "weekly retrain"},
            description="Retrain on a calendar as well (MLOPS_RETRAIN_CRON); a clean skip when nothing changed.",
        )
    ]


def build_automation_defs(
    running: bool, retrain_cron: str = "0 3 * * 1", sensor_interval: int = 30
) -> dg.Definitions:
    status = dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED
    schedule_status = dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
    from mlops_assets.batch.automation import build_batch_automation
    from mlops_assets.monitoring.automation import build_monitoring_automation

    core = dg.Definitions(
        jobs=[ingest_job, retraining_job, release_job],
        sensors=[
            build_landing_sensor(status, sensor_interval),
            build_retrain_sensor(status, sensor_interval),
            build_release_sensor(status, max(5, sensor_interval // 2)),
        ],
        schedules=build_schedules(schedule_status, retrain_cron),
    )
    return dg.Definitions.merge(
        core,
        build_monitoring_automation(status, schedule_status),
        build_batch_automation(status, sensor_interval),
    )
