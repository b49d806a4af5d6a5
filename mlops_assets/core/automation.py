"""Whether a code location's sensors and schedules start running: only in the local profile.

On a team deployment (the azure profile) an operator turns them on in the UI, once storage and
compute are in place; locally, `make dev` should pick up a landed file without a click.
"""

import dagster as dg

from mlops_assets.settings import Settings


def sensor_status(settings: Settings) -> dg.DefaultSensorStatus:
    running = settings.profile == "local"
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def schedule_status(settings: Settings) -> dg.DefaultScheduleStatus:
    running = settings.profile == "local"
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
