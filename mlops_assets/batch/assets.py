"""batch_predictions: every file under scoring-input/ scored in bulk with the production model."""

import json

import dagster as dg

from mlops_assets.batch.backends import BatchJob, BatchScorer
from mlops_assets.core import keys
from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.core.project import ModelProjectResource
from mlops_assets.core.storage import StorageResource
from mlops_assets.model.artifact import ArtifactError, verify_sha256
from mlops_assets.model.batch_scoring import BatchInputError, output_paths
from mlops_assets.model.manifest import MANIFEST_NAME
from mlops_assets.project.spec import ProjectError
from mlops_assets.registry.assets import RELEASE_PREFIX
from mlops_assets.registry.protocol import PRODUCTION_ALIAS
from mlops_assets.registry.resource import RegistryResource
from mlops_assets.runner.client import Artifact, ProjectRunError

INPUT_PREFIX = "scoring-input"
OUTPUT_PREFIX = "scoring-output"
EVERY_ROW_SCORED = "every_row_scored"

scoring_inputs = dg.DynamicPartitionsDefinition(name="scoring_inputs")


def production_model(
    registry: RegistryResource, serving_spec: dict
) -> tuple[Artifact, dict, dict, bytes | None]:
    """The version holding the production alias: its artifact (bytes checked against its
    manifest's sha256, trusting only the types the spec it was registered with lists), its
    manifest, that spec (``serving_spec``, today's, only where it has none) and its compiled
    graph, if it has one (checked against its sha256 where it loads). It loads in the project
    runner, never here."""
    models = registry.get_registry()
    version = models.get_alias(PRODUCTION_ALIAS)
    if version is None:
        raise dg.Failure(
            description=f"{models.model_name} has no {PRODUCTION_ALIAS} version yet: release one (release_job) first"
        )
    manifest = json.loads(models.read_file(version.version, MANIFEST_NAME))
    source = f"{models.model_name} v{version.version} ({PRODUCTION_ALIAS})"
    # The version's own rules, as it was trained; today's spec only for a version without them.
    own_spec = manifest.get("serving_spec") or serving_spec
    artifact = models.read_file(version.version, manifest["artifact"])
    try:
        verify_sha256(artifact, manifest["sha256"], source)
    except ArtifactError as exc:
        raise dg.Failure(description=str(exc)) from exc
    trusted = tuple(own_spec.get("trusted_types", ())) if own_spec else ()
    graph_file = manifest.get("compiled", {}).get("file")
    graph = models.read_file(version.version, graph_file) if graph_file else None
    return Artifact(artifact, manifest["sha256"], trusted, source), manifest, own_spec, graph


@dg.asset(
    partitions_def=scoring_inputs,
    group_name="batch",
    kinds={"scikit-learn", "parquet"},
    deps=[keys.REGISTERED_MODEL],
    check_specs=[
        dg.AssetCheckSpec(
            EVERY_ROW_SCORED,
            asset=keys.BATCH_PREDICTIONS,
            description="Rows refused (with their reasons in the .refused.parquet beside the output).",
        )
    ],
    description="scoring-input/<file> scored with the production model, each column read by the model "
    "project's spec: scoring-output/<file>.parquet (row_id, prediction, a classifier's probability_<label> "
    "columns, model_version); refused rows with their reason in <file>.refused.parquet.",
)
def batch_predictions(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    registry: RegistryResource,
    batch: BatchScorer,
    project: ModelProjectResource,
) -> dg.MaterializeResult:
    store, name = storage.get(), context.partition_key
    artifact, manifest, serving_spec, graph = production_model(registry, project.get().spec.serving_dict())
    model_name, model_version = manifest["model_name"], manifest["version"]
    input_path = f"{INPUT_PREFIX}/{name}"
    output, refused = output_paths(input_path, INPUT_PREFIX, OUTPUT_PREFIX)
    context.log.info(f"scoring {input_path} with {model_name} v{model_version} ({batch.backend_name})")
    job = BatchJob(
        storage=store,
        input_path=input_path,
        output_path=output,
        refused_path=refused,
        artifact=artifact,
        manifest=manifest,
        artifact_path=f"{RELEASE_PREFIX}/{model_name}/{model_version}/{manifest['artifact']}",
        runner=project.version_runner(manifest),
        serving_spec=serving_spec,
        graph=graph,
    )
    try:
        result = batch.score(context, job)
    except BatchInputError as exc:
        raise dg.Failure(description=f"{input_path}: {exc}") from exc
    except (ArtifactError, ProjectError, ProjectRunError) as exc:
        raise dg.Failure(description=f"{input_path}: {exc}") from exc
    except FileNotFoundError as exc:
        raise dg.Failure(description=f"{input_path}: not found (removed after it was seen?)") from exc
    rows, scored, rejected = result["rows"], result["scored"], result["refused"]
    rate = rows / result["seconds"] if result["seconds"] else 0.0
    summary = f"{scored} of {rows} rows scored in {result['seconds']:.2f} s ({rate:,.0f} rows/s)"
    if rejected:
        context.log.warning(f"{input_path}: {summary}; {rejected} refused: {result['reasons']}")
    else:
        context.log.info(f"{input_path}: {summary}")
    metadata = {
        "rows": rows,
        "scored": scored,
        "refused": rejected,
        "flagged_values": result.get("flagged", 0),
        "model_version": str(model_version),
        "model_sha256": manifest["sha256"],
        "output": dg.MetadataValue.path(store.uri(output)),
        "refused_rows": dg.MetadataValue.path(store.uri(refused)) if rejected else "none",
        "rows_per_second": round(rate),
        "compute_backend": batch.backend_name,
    }
    if "aml_job" in result:
        metadata["aml_job"] = result["aml_job"]
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=EVERY_ROW_SCORED,
                passed=rejected == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"refused": rejected, "reasons": dg.MetadataValue.json(result["reasons"])},
            )
        ],
    )


batch_scoring_job = dg.define_asset_job(
    "batch_scoring_job",
    selection=[batch_predictions],
    partitions_def=scoring_inputs,
    tags={STAGE_TAG: "batch"},
)
