"""Jobs and sensors: what runs together, and what starts it."""

import posixpath
from dataclasses import dataclass, field

import dagster as dg

from mlops_assets.data.assets import (
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


def _has_run(instance: dg.DagsterInstance, run_key: str) -> bool:
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1))


def plan_landing(
    storage: Storage, instance: dg.DagsterInstance, limit: int = MAX_RUNS_PER_TICK
) -> LandingPlan:
    """New or changed files under landing/: decided from the instance (partitions, run keys)."""
    existing = set(instance.get_dynamic_partitions(landed_files.name))
    plan = LandingPlan()
    for file in storage.list_files(LANDING_PREFIX):
        if not is_ready(file):
            continue
        key = posixpath.relpath(file.path, LANDING_PREFIX)
        run_key = f"{key}@{file.version}"
        if _has_run(instance, run_key):
            continue
        if key not in existing:
            plan.new_partitions.append(key)
        plan.run_requests.append(dg.RunRequest(partition_key=key, run_key=run_key, job_name=ingest_job.name))
        if len(plan.run_requests) >= limit:
            break
    return plan


def build_landing_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(
        name=LANDING_SENSOR,
        job=ingest_job,
        minimum_interval_seconds=30,
        default_status=default_status,
        description="A new or changed file under landing/ becomes a partition and one ingest_job run.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
        plan = plan_landing(storage.get(), context.instance)
        requests = [landed_files.build_add_request(plan.new_partitions)] if plan.new_partitions else []
        return dg.SensorResult(run_requests=plan.run_requests, dynamic_partitions_requests=requests)

    return landing_sensor


RELEASES_PER_TICK = 10


def build_release_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
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
        minimum_interval_seconds=15,
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


def build_automation_defs(running: bool) -> dg.Definitions:
    status = dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED
    return dg.Definitions(
        jobs=[ingest_job, retraining_job, release_job],
        sensors=[build_landing_sensor(status), build_release_sensor(status)],
    )
