"""Monitoring domain: a day's scoring logs, drift over a window of them, and what acts on both."""

import dagster as dg

from mlops_assets.core.automation import schedule_status, sensor_status
from mlops_assets.monitoring.assets import drift_report, scoring_logs
from mlops_assets.monitoring.automation import build_monitoring_automation
from mlops_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions.merge(
        dg.Definitions(assets=[scoring_logs, drift_report]),
        build_monitoring_automation(sensor_status(settings), schedule_status(settings)),
    )
