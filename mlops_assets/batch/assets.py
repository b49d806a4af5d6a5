"""batch_predictions: every file under scoring-input/ scored in bulk with the production model."""

import json

import dagster as dg

from mlops_assets.batch.scoring import BatchInputError, output_paths, score_file
from mlops_assets.instance import STAGE_TAG
from mlops_assets.registry.protocol import PRODUCTION_ALIAS, RegistryResource
from mlops_assets.serving.artifact import MANIFEST_NAME, ArtifactError, loaded_model
from mlops_assets.storage import StorageResource

INPUT_PREFIX = "scoring-input"
OUTPUT_PREFIX = "scoring-output"
EVERY_ROW_SCORED = "every_row_scored"

scoring_inputs = dg.DynamicPartitionsDefinition(name="scoring_inputs")


def production_model(registry: RegistryResource):
    """The version holding the production alias, its artifact verified against its manifest."""
    models = registry.get_registry()
    version = models.get_alias(PRODUCTION_ALIAS)
    if version is None:
        raise dg.Failure(
            description=f"{models.model_name} has no {PRODUCTION_ALIAS} version yet: release one (release_job) first"
        )
    manifest = json.loads(models.read_file(version.version, MANIFEST_NAME))
    source = f"{models.model_name} v{version.version} ({PRODUCTION_ALIAS})"
    try:
        return loaded_model(manifest, models.read_file(version.version, manifest["artifact"]), source)
    except ArtifactError as exc:
        raise dg.Failure(description=str(exc)) from exc


@dg.asset(
    partitions_def=scoring_inputs,
    group_name="batch",
    kinds={"scikit-learn", "parquet"},
    deps=["registered_model"],
    check_specs=[
        dg.AssetCheckSpec(
            EVERY_ROW_SCORED,
            asset="batch_predictions",
            description="Rows refused (with their reasons in the .refused.parquet beside the output).",
        )
    ],
    description="scoring-input/<file> scored with the production model: scoring-output/<file>.parquet "
    "(row_id, prediction, model_version); refused rows with their reason in <file>.refused.parquet.",
)
def batch_predictions(
    context: dg.AssetExecutionContext, storage: StorageResource, registry: RegistryResource
) -> dg.MaterializeResult:
    store, name = storage.get(), context.partition_key
    model = production_model(registry)
    input_path = f"{INPUT_PREFIX}/{name}"
    output, refused = output_paths(input_path, INPUT_PREFIX, OUTPUT_PREFIX)
    context.log.info(f"scoring {input_path} with {model.name} v{model.version}")
    try:
        result = score_file(
            store.fs,
            store.fs_path(input_path),
            store.fs_path(output),
            store.fs_path(refused),
            model.predict,
            model.features,
            model.version,
            progress=lambda rows: context.log.debug(f"{input_path}: {rows} rows read"),
        )
    except BatchInputError as exc:
        raise dg.Failure(description=f"{input_path}: {exc}") from exc
    except FileNotFoundError as exc:
        raise dg.Failure(description=f"{input_path}: not found (removed after it was seen?)") from exc
    summary = f"{result.scored} of {result.rows} rows scored in {result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s)"
    if result.refused:
        context.log.warning(f"{input_path}: {summary}; {result.refused} refused: {result.reasons}")
    else:
        context.log.info(f"{input_path}: {summary}")
    return dg.MaterializeResult(
        metadata={
            "rows": result.rows,
            "scored": result.scored,
            "refused": result.refused,
            "model_version": model.version,
            "model_sha256": model.sha256,
            "output": dg.MetadataValue.path(store.uri(output)),
            "refused_rows": dg.MetadataValue.path(store.uri(refused)) if result.refused else "none",
            "rows_per_second": round(result.rows_per_second),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=EVERY_ROW_SCORED,
                passed=result.refused == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"refused": result.refused, "reasons": dg.MetadataValue.json(result.reasons)},
            )
        ],
    )


batch_scoring_job = dg.define_asset_job(
    "batch_scoring_job",
    selection=[batch_predictions],
    partitions_def=scoring_inputs,
    tags={STAGE_TAG: "batch"},
)
