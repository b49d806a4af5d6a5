"""Release automation: each registered version becomes a model_versions partition and one release run."""

import dagster as dg

from mlops_assets.core import keys
from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.release.assets import model_versions, prod_deployment, qa_deployment, scoring_image

RELEASE_SENSOR = "release_sensor"

release_job = dg.define_asset_job(
    "release_job",
    selection=dg.AssetSelection.assets(scoring_image, qa_deployment, prod_deployment),
    partitions_def=model_versions,
    tags={STAGE_TAG: "release"},
    description="One registered version (partition): scoring image (then QA and production).",
)

RELEASES_PER_TICK = 10


def build_release_sensor(default_status: dg.DefaultSensorStatus, interval: int = 15) -> dg.SensorDefinition:
    """The seed's "model artifact trigger": each registered version gets its own release run, in order.

    Not an ``@asset_sensor``: that one sees only the latest materialization since its last tick,
    so of two versions registered in quick succession the first would never be released. This
    reads every registration after the cursor, oldest first; the run queue's release limit (and
    the stage lock in-process) then runs them one at a time in that order.
    """

    @dg.sensor(
        name=RELEASE_SENSOR,
        job=release_job,
        default_status=default_status,
        minimum_interval_seconds=interval,
        description="Each new registry version becomes a model_versions partition and one release_job run.",
    )
    def release_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=keys.REGISTERED_MODEL, after_storage_id=int(context.cursor or 0)),
            limit=RELEASES_PER_TICK,
            ascending=True,
        ).records
        versions = [str(r.asset_materialization.metadata["version"].value) for r in records]
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=v, run_key=f"release-{v}") for v in versions],
            dynamic_partitions_requests=[model_versions.build_add_request(versions)] if versions else [],
            cursor=str(records[-1].storage_id) if records else context.cursor,
        )

    return release_sensor
