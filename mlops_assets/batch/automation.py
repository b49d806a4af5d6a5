"""scoring_input_sensor: each new or changed file under scoring-input/ gets one batch_scoring_job run."""

import dagster as dg

from mlops_assets.batch.assets import INPUT_PREFIX, batch_scoring_job, scoring_inputs
from mlops_assets.core.file_sensors import FilePlan, build_file_sensor, plan_files
from mlops_assets.core.storage import Storage

SCORING_INPUT_SENSOR = "scoring_input_sensor"


def plan_scoring_inputs(storage: Storage, instance: dg.DagsterInstance) -> FilePlan:
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
    sensor = build_file_sensor(
        SCORING_INPUT_SENSOR,
        batch_scoring_job,
        scoring_inputs,
        plan_scoring_inputs,
        status,
        interval,
        "A new or changed file under scoring-input/ becomes a partition and one batch_scoring_job run.",
    )
    return dg.Definitions(jobs=[batch_scoring_job], sensors=[sensor])
