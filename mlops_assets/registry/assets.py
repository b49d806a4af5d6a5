"""model_evaluation (the gate) and registered_model (the registry version + release manifest)."""

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_assets.core import keys
from mlops_assets.core.storage import Storage, StorageResource, load_stored_value, relative_path
from mlops_assets.ingest.schema import FEATURES
from mlops_assets.registry.evaluation import (
    Decision,
    Scored,
    already_registered,
    bar_versions,
    decide,
)
from mlops_assets.registry.manifest import MANIFEST_NAME, build_manifest, smoke_block
from mlops_assets.registry.plots import prediction_plots_markdown
from mlops_assets.registry.protocol import (
    PRODUCTION_ALIAS,
    RELEASE_STATE_TAG,
    ModelRegistry,
    RegistryResource,
)
from mlops_assets.serving.artifact import ArtifactError, load_verified_model
from mlops_assets.training.assets import METRIC_NAMES
from mlops_assets.training.train import ARTIFACT_NAME, TARGET, holdout_mask, score

RELEASE_PREFIX = "models/released"


class EvaluationParams(dg.ConfigurableResource):
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Relative mse improvement required to promote (strict).",
    )


def _verified_model(data: bytes, sha256: str, source: str):
    """The model, or a step failure that names the artifact and the rule it broke."""
    try:
        return load_verified_model(data, sha256, source)
    except ArtifactError as exc:
        raise dg.Failure(str(exc)) from exc


def _holdout(storage: Storage, snapshot_path: str, holdout_percent: int) -> pd.DataFrame:
    frame = load_stored_value(storage, snapshot_path)
    return frame[holdout_mask(frame, holdout_percent)]


def _score_version(registry: ModelRegistry, version, holdout: pd.DataFrame) -> Scored:
    artifact = registry.read_file(version.version, ARTIFACT_NAME)
    model = _verified_model(artifact, version.tags["artifact_sha256"], f"version {version.version}")
    return Scored(f"version {version.version}", version.version, score(model, holdout))


def _comparison_table(decision: Decision) -> str:
    rows = [decision.candidate, *decision.compared]
    lines = ["| model | " + " | ".join(METRIC_NAMES) + " |", "|---" * (len(METRIC_NAMES) + 1) + "|"]
    for scored in rows:
        label = f"**{scored.label}**" if decision.bar and scored.label == decision.bar.label else scored.label
        lines.append(f"| {label} | " + " | ".join(f"{scored.metrics[m]:.4g}" for m in METRIC_NAMES) + " |")
    return "\n".join(lines)


@dg.asset(
    group_name="registry",
    kinds={"scikit-learn"},
    ins={
        "candidate_model": dg.AssetIn(key=keys.CANDIDATE_MODEL),
        "training_data": dg.AssetIn(key=keys.TRAINING_DATA),
    },
    description=(
        "The candidate against the bar (production and any version still being released; else the "
        "latest) on the same current holdout; promote only on a strict relative mse improvement."
    ),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    candidate_model: dict,
    training_data: dict,
    registry: RegistryResource,
    gate: EvaluationParams,
    storage: StorageResource,
) -> dg.Output[dict]:
    store, models = storage.get(), registry.get_registry()
    holdout = _holdout(store, training_data["path"], int(candidate_model["holdout_percent"]))
    artifact = store.read_bytes(relative_path(store, candidate_model["artifact_uri"]))
    model = _verified_model(artifact, candidate_model["artifact_sha256"], candidate_model["artifact_uri"])
    candidate = Scored("candidate", None, score(model, holdout))

    same = models.find_by_fingerprint(candidate_model["fingerprint"])
    if same is not None:
        decision = already_registered(candidate, same)
    else:
        bar = bar_versions(models.list_versions(), models.get_alias(PRODUCTION_ALIAS))
        decision = decide(candidate, [_score_version(models, v, holdout) for v in bar], gate.min_improvement)
    context.log.info(decision.reason)

    predicted = model.predict(holdout[list(FEATURES)].to_numpy(dtype="float64"))
    metadata = {
        "promote": decision.promote,
        "reason": decision.reason,
        "holdout_rows": len(holdout),
        "comparison": dg.MetadataValue.md(_comparison_table(decision)),
        "plots": dg.MetadataValue.md(
            prediction_plots_markdown(holdout[TARGET].to_numpy(), predicted, "candidate on the holdout")
        ),
    }
    if decision.bar is not None:
        metadata["bar"] = decision.bar.label
    return dg.Output(decision.to_dict(), metadata=metadata)


def _registration_tags(
    context: dg.AssetExecutionContext, candidate: dict, champion: str, bar: str
) -> dict[str, str]:
    keys = (
        *METRIC_NAMES,
        "data_version",
        "snapshot_uri",
        "holdout_hash",
        "code_version",
        "config_hash",
        "compute_backend",
        "artifact_sha256",
        "fingerprint",
        "alpha",
    )
    tags = {key: str(candidate[key]) for key in keys}
    tags |= {
        "dagster_run_id": context.run_id,
        "parent_champion_version": champion,
        "bar_version": bar,
        RELEASE_STATE_TAG: "registered",
    }
    return tags


@dg.asset(
    group_name="registry",
    kinds={"mlflow"},
    ins={"candidate_model": dg.AssetIn(key=keys.CANDIDATE_MODEL)},
    output_required=False,
    description=(
        "The promoted candidate as a registry version with its lineage tags and release manifest. "
        "Not promoted: a clean skip (the run succeeds) with the reason recorded."
    ),
)
def registered_model(
    context: dg.AssetExecutionContext,
    model_evaluation: dict,
    candidate_model: dict,
    registry: RegistryResource,
    storage: StorageResource,
):
    if not model_evaluation["promote"]:
        context.log.info(f"skipped: {model_evaluation['reason']}")
        yield dg.AssetObservation(
            asset_key=context.asset_key,
            metadata={"decision": "skipped", "reason": model_evaluation["reason"]},
        )
        return
    store, models = storage.get(), registry.get_registry()
    artifact = store.read_bytes(relative_path(store, candidate_model["artifact_uri"]))
    _verified_model(artifact, candidate_model["artifact_sha256"], candidate_model["artifact_uri"])
    champion = models.get_alias(PRODUCTION_ALIAS)
    bar = model_evaluation.get("bar") or {}
    tags = _registration_tags(
        context,
        candidate_model,
        champion=str(champion.version) if champion else "",
        bar=str(bar.get("version") or ""),
    )
    version = models.register(artifact, ARTIFACT_NAME, tags, {m: candidate_model[m] for m in METRIC_NAMES})
    # Release what the registry holds: if this fingerprint was registered before, that is its artifact.
    sha256 = version.tags["artifact_sha256"]
    artifact = models.read_file(version.version, ARTIFACT_NAME)
    model = _verified_model(artifact, sha256, f"version {version.version}")
    snapshot = relative_path(store, candidate_model["snapshot_uri"])
    holdout = _holdout(store, snapshot, int(candidate_model["holdout_percent"]))
    manifest = build_manifest(
        models.model_name,
        version.version,
        ARTIFACT_NAME,
        sha256,
        list(FEATURES),
        candidate_model,
        smoke=smoke_block(model, holdout, FEATURES),
    )
    # Written every time, so a registration interrupted before its manifest is repaired by a rerun.
    models.write_manifest(version.version, manifest)
    release_dir = f"{RELEASE_PREFIX}/{models.model_name}/{version.version}"
    store.write_bytes(f"{release_dir}/{ARTIFACT_NAME}", artifact)
    manifest_uri = store.write_json(f"{release_dir}/{MANIFEST_NAME}", manifest)
    context.log.info(f"registered {models.model_name} version {version.version}")
    yield dg.Output(
        {
            "model_name": models.model_name,
            "version": version.version,
            "manifest": manifest,
            "release_dir": release_dir,
        },
        metadata={
            "model_name": models.model_name,
            "version": version.version,
            "registry": registry.backend_name,
            "fingerprint": candidate_model["fingerprint"],
            "mse": candidate_model["mse"],
            "manifest": dg.MetadataValue.path(manifest_uri),
            "reason": model_evaluation["reason"],
        },
        data_version=dg.DataVersion(str(version.version)),
    )
