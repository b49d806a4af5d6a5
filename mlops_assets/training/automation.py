"""Training automation: retrain after new validated batches (debounced) and on a calendar."""

from dataclasses import dataclass

import dagster as dg

from mlops_assets.core import keys
from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.ingest.automation import feedback_job, ingest_job

retraining_job = dg.define_asset_job(
    "retraining_job",
    selection=dg.AssetSelection.assets(keys.TRAINING_DATA).downstream()
    & dg.AssetSelection.assets(keys.REGISTERED_MODEL).upstream(),
    tags={STAGE_TAG: "training"},
    description="Training snapshot -> candidate (Pipes) -> evaluation -> registration (or a clean skip).",
)

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
            for key in (keys.VALIDATED_BATCH, keys.FEEDBACK_BATCH)
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
        for job in (ingest_job.name, feedback_job.name)
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


def build_retraining_schedule(
    default_status: dg.DefaultScheduleStatus, retrain_cron: str
) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="retraining_schedule",
        job=retraining_job,
        cron_schedule=retrain_cron,
        execution_timezone="UTC",
        default_status=default_status,
        tags={"mlops/trigger": "schedule", "mlops/reason": "weekly retrain"},
        description="Retrain on a calendar as well (MLOPS_RETRAIN_CRON); a clean skip when nothing changed.",
    )
