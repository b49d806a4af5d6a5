"""The code location: every domain's whole definitions, merged, with the profile's resources.

Each domain owns its stage (assets, checks, jobs, sensors, schedules) and builds it from the
settings; nothing is picked out of a domain's defs here, so whatever a domain adds is served.
"""

import dagster as dg

from mlops_assets import quiet_api_stage_warnings
from mlops_assets.batch.definitions import build_defs as batch_defs
from mlops_assets.ingest.definitions import build_defs as ingest_defs
from mlops_assets.monitoring.definitions import build_defs as monitoring_defs
from mlops_assets.registry.definitions import build_defs as registry_defs
from mlops_assets.release.definitions import build_defs as release_defs
from mlops_assets.resources import resources_for
from mlops_assets.settings import Settings, claim_home, get_settings
from mlops_assets.training.definitions import build_defs as training_defs

quiet_api_stage_warnings()

DOMAINS = {
    "ingest": ingest_defs,
    "training": training_defs,
    "registry": registry_defs,
    "release": release_defs,
    "monitoring": monitoring_defs,
    "batch": batch_defs,
}


def build_definitions(settings: Settings) -> dg.Definitions:
    claim_home(settings)  # the code location of a home that holds another project refuses to load
    merged = dg.Definitions.merge(
        *(build(settings) for build in DOMAINS.values()),
        dg.Definitions(
            resources=resources_for(settings),
            # per-step subprocesses re-import the world (~18 s vs ~2.5 s for this graph)
            executor=dg.in_process_executor,
        ),
    )
    return with_source_code_references(merged, project_naming(settings))


def project_naming(settings: Settings):
    """What the UI shows of the model project on each asset: its groups prefixed with the project's
    name (`diabetes_training`), and the gate's description with the project's own metric. A spec
    that does not load leaves them plain: the code location still loads, and its runs say why."""
    from mlops_assets.core import keys
    from mlops_assets.project.loader import current_project
    from mlops_assets.project.metrics import task_metrics
    from mlops_assets.project.spec import ProjectError

    try:  # the resource's own cached load: the code location reads the project once
        spec = current_project(settings.project_dir).spec
    except ProjectError:
        return lambda asset_spec: asset_spec
    evaluation = spec.evaluation
    better = {"minimize": "lower", "maximize": "higher"}[
        task_metrics(spec.task)[evaluation.primary_metric].direction
    ]
    gate = (
        "The candidate against the bar (production and any version still being released; else the "
        f"latest) on the same current holdout; promote only if its {evaluation.primary_metric} "
        f"({better} is better) improves on the bar's by more than {evaluation.min_improvement:.2%}, relative."
    )

    def named(asset_spec: dg.AssetSpec) -> dg.AssetSpec:
        described = {"description": gate} if asset_spec.key == keys.MODEL_EVALUATION else {}
        return asset_spec.replace_attributes(group_name=f"{spec.name}_{asset_spec.group_name}", **described)

    return named


def with_source_code_references(defs: dg.Definitions, naming=lambda asset_spec: asset_spec) -> dg.Definitions:
    """The same definitions, every asset linked to its source and named by ``naming`` (Definitions
    has no public copy)."""
    return dg.Definitions(
        assets=dg.with_source_code_references(dg.map_asset_specs(naming, list(defs.assets or []))),
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        sensors=defs.sensors,
        schedules=defs.schedules,
        resources=defs.resources,
        executor=defs.executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )


defs = build_definitions(get_settings())
