"""Batch domain: every file under scoring-input/ scored in bulk with the production model."""

import dagster as dg

from mlops_assets.batch.assets import batch_predictions
from mlops_assets.batch.automation import build_batch_automation
from mlops_assets.core.automation import sensor_status
from mlops_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions.merge(
        dg.Definitions(assets=[batch_predictions]),
        build_batch_automation(sensor_status(settings), settings.sensor_interval_seconds),
    )
