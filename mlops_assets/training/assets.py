"""candidate_model: train.py run through Pipes on the profile's compute, following the model project."""

import dagster as dg

from mlops_assets.core import keys
from mlops_assets.core.project import ModelProjectResource
from mlops_assets.core.stage_lock import StageLock
from mlops_assets.core.storage import StorageResource
from mlops_assets.project.spec import ProjectSpec
from mlops_assets.training.backends import TrainingBackend

CANDIDATE_PREFIX = "models/candidates"


def trainer_extras(spec: ProjectSpec) -> dict:
    """What train.py reads of the project's spec (its extras beside the data's and the output's)."""
    extras = {
        "task": spec.task,
        "features": list(spec.feature_names),
        "target": spec.target.name,
        "target_kind": spec.target.kind,
        "params": dict(spec.params),
        "holdout_percent": spec.evaluation.holdout_percent,
    }
    if spec.native_categories:  # only where set: a project that leaves it sends what it sent
        extras["categories"] = spec.native_categories
    return extras


def reported_metrics(result: dict) -> dict[str, float]:
    """The metrics the trainer reported, in the catalogue's order."""
    return {name: float(result[name]) for name in str(result["metric_names"]).split(",") if name}


@dg.asset(
    group_name="training",
    ins={"training_data": dg.AssetIn(key=keys.TRAINING_DATA)},
    kinds={"scikit-learn", "python"},
    description=(
        "The model project's estimator fitted on the training snapshot, with the task's metrics on "
        "the content-hash holdout."
    ),
)
def candidate_model(
    context: dg.AssetExecutionContext,
    training_data: dict,
    trainer: TrainingBackend,
    project: ModelProjectResource,
    storage: StorageResource,
    stage_lock: StageLock,  # held for the whole run: one run of this stage at a time
) -> dg.Output[dict]:
    model_project = project.get()
    spec = model_project.spec
    extras = {
        "snapshot_uri": training_data["uri"],
        "data_version": training_data["data_version"],
        "output_uri": storage.get().uri(CANDIDATE_PREFIX),
        **trainer_extras(spec),
    }
    result = trainer.run_training(context, extras, model_project, python=project.own_python(model_project))
    result["compute_backend"] = trainer.backend_name
    result |= {"project": spec.name, "spec_version": spec.version}
    metrics = reported_metrics(result)
    context.log.info(
        f"candidate {result['fingerprint']}: " + ", ".join(f"{n}={v:.4g}" for n, v in metrics.items())
    )
    metadata = {**metrics, "n_train": result["n_train"], "n_holdout": result["n_holdout"]}
    metadata |= {
        "fingerprint": result["fingerprint"],
        "project": spec.name,
        "model_kind": result["model_kind"],
        "data_version": result["data_version"],
        "compute_backend": result["compute_backend"],
        "artifact": dg.MetadataValue.path(result["artifact_uri"]),
        "artifact_sha256": result["artifact_sha256"],
    }
    if "aml_job" in result:
        metadata["aml_job"] = result["aml_job"]
    return dg.Output(result, metadata=metadata, data_version=dg.DataVersion(result["fingerprint"]))
