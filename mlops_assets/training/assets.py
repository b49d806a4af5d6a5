"""candidate_model: train.py run through Pipes on the profile's compute."""

import dagster as dg

from mlops_assets.core import keys
from mlops_assets.core.storage import StorageResource
from mlops_assets.training.backends import TrainingBackend, TrainingParams

CANDIDATE_PREFIX = "models/candidates"
METRIC_NAMES = ("mse", "rmse", "r2", "mae")


@dg.asset(
    group_name="training",
    ins={"training_data": dg.AssetIn(key=keys.TRAINING_DATA)},
    kinds={"scikit-learn", "python"},
    description="A Ridge model fitted on the training snapshot, with metrics on the content-hash holdout.",
)
def candidate_model(
    context: dg.AssetExecutionContext,
    training_data: dict,
    trainer: TrainingBackend,
    training: TrainingParams,
    storage: StorageResource,
) -> dg.Output[dict]:
    extras = {
        "snapshot_uri": training_data["uri"],
        "data_version": training_data["data_version"],
        "output_uri": storage.get().uri(CANDIDATE_PREFIX),
        "alpha": training.alpha,
        "holdout_percent": training.holdout_percent,
    }
    result = trainer.run_training(context, extras)
    result["compute_backend"] = trainer.backend_name
    context.log.info(
        "candidate "
        + result["fingerprint"]
        + ": "
        + ", ".join(f"{name}={result[name]:.4g}" for name in METRIC_NAMES)
    )
    metadata = {name: result[name] for name in (*METRIC_NAMES, "n_train", "n_holdout")}
    metadata |= {
        "fingerprint": result["fingerprint"],
        "data_version": result["data_version"],
        "compute_backend": result["compute_backend"],
        "artifact": dg.MetadataValue.path(result["artifact_uri"]),
        "artifact_sha256": result["artifact_sha256"],
    }
    if "aml_job" in result:
        metadata["aml_job"] = result["aml_job"]
    return dg.Output(result, metadata=metadata, data_version=dg.DataVersion(result["fingerprint"]))
