"""Training domain: candidate_model, the retraining job, what starts it (new data, a calendar)."""

import dagster as dg

from mlops_assets.core.automation import schedule_status, sensor_status
from mlops_assets.settings import Settings
from mlops_assets.training.assets import candidate_model
from mlops_assets.training.automation import build_retrain_sensor, build_retraining_schedule, retraining_job


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[candidate_model],
        jobs=[retraining_job],
        sensors=[build_retrain_sensor(sensor_status(settings), settings.sensor_interval_seconds)],
        schedules=[build_retraining_schedule(schedule_status(settings), settings.retrain_cron)],
    )
