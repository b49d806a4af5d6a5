"""The code location: each domain's definitions, merged, with the profile's resources."""

import dagster as dg

from mlops_assets import quiet_api_stage_warnings
from mlops_assets.settings import Settings, get_settings

quiet_api_stage_warnings()


def build_definitions(settings: Settings) -> dg.Definitions:
    from mlops_assets.automation import build_automation_defs
    from mlops_assets.batch.definitions import defs as batch_defs
    from mlops_assets.data.definitions import defs as data_defs
    from mlops_assets.monitoring.definitions import defs as monitoring_defs
    from mlops_assets.profiles import resources_for
    from mlops_assets.registry.definitions import defs as registry_defs
    from mlops_assets.release.definitions import defs as release_defs
    from mlops_assets.training.definitions import defs as training_defs

    domains = dg.Definitions.merge(
        data_defs, training_defs, registry_defs, release_defs, monitoring_defs, batch_defs
    )
    linked = dg.Definitions(
        assets=dg.with_source_code_references(list(domains.assets or [])),
        asset_checks=domains.asset_checks,
        executor=dg.in_process_executor,  # per-step subprocesses re-import the world (~18 s vs ~2.5 s)
        resources=resources_for(settings),
    )
    return dg.Definitions.merge(
        linked,
        build_automation_defs(
            running=settings.profile == "local",
            retrain_cron=settings.retrain_cron,
            sensor_interval=settings.sensor_interval_seconds,
        ),
    )


defs = build_definitions(get_settings())
