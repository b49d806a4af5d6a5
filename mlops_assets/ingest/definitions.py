"""Ingest domain: landed files and labels files, their checks, validated batches, training data."""

import dagster as dg

from mlops_assets.core.automation import sensor_status
from mlops_assets.ingest.assets import landed_batch, landed_batch_checks, training_data, validated_batch
from mlops_assets.ingest.automation import (
    build_feedback_sensor,
    build_landing_sensor,
    feedback_job,
    ingest_job,
)
from mlops_assets.ingest.feedback_batch import feedback_batch
from mlops_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    status = sensor_status(settings)
    return dg.Definitions(
        assets=[landed_batch, validated_batch, feedback_batch, training_data],
        asset_checks=landed_batch_checks,
        jobs=[ingest_job, feedback_job],
        sensors=[
            build_landing_sensor(status, settings.sensor_interval_seconds, settings.landing_settle_seconds),
            build_feedback_sensor(status),
        ],
    )
