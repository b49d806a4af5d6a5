"""scoring_input_sensor: each new or changed file under scoring-input/ gets one batch_scoring_job run."""

import dagster as dg

from mlops_assets.automation import LandingPlan, plan_files
from mlops_assets.batch.assets import INPUT_PREFIX, batch_scoring_job, scoring_inputs
from mlops_assets.storage import Storage, StorageResource

SCORING_INPUT_SENSOR = "scoring_input_sensor"


def plan_scoring_inputs(storage: Storage, instance: dg.DagsterInstance) -> LandingPlan:
    # Run keys carry the folder: the same file name under landing/ is another file.
    return plan_files(
        storage,
        instance,
        INPUT_PREFIX,
        scoring_inputs,
        batch_scoring_job.name,
        run_key_prefix=f"{INPUT_PREFIX}/",
    )


def build_batch_automation(status: dg.DefaultSensorStatus, interval: int = 30) -> dg.Definitions:
    @dg.sensor(
        name=SCORING_INPUT_SENSOR,
        job=batch_scoring_job,
        minimum_interval_seconds=interval,
        default_status=status,
        description="A new or changed file under scoring-input/ becomes a partition and one batch_scoring_job run.",
    )
    def scoring_input_sensor(
        context: dg.SensorEvaluationContext, storage: StorageResource
    ) -> dg.SensorResult:
        plan = plan_scoring_inputs(storage.get(), context.instance)
        requests = [scoring_inputs.build_add_request(plan.new_partitions)] if plan.new_partitions else []
        return dg.SensorResult(run_requests=plan.run_requests, dynamic_partitions_requests=requests)

    return dg.Definitions(jobs=[batch_scoring_job], sensors=[scoring_input_sensor])
