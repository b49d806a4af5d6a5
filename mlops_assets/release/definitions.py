"""Release domain: per registered version, the scoring image, QA and production, started by a registration."""

import dagster as dg

from mlops_assets.core.alert_rules import AlertThresholds
from mlops_assets.core.automation import sensor_status
from mlops_assets.release.assets import prod_deployment, qa_deployment, scoring_image
from mlops_assets.release.automation import build_health_sensor, build_release_sensor, release_job
from mlops_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[scoring_image, qa_deployment, prod_deployment],
        jobs=[release_job],
        sensors=[
            build_release_sensor(sensor_status(settings), max(5, settings.sensor_interval_seconds // 2)),
            build_health_sensor(
                sensor_status(settings),
                AlertThresholds.from_settings(settings),
                settings.sensor_interval_seconds,
            ),
        ],
    )
