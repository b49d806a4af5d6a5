"""Every asset's key, in one place: how one domain names another's asset without importing it.

A domain that reads another's asset (as an input, a dependency or a record in the instance) uses
these constants, never a string; a test checks they are exactly the code location's asset keys.
"""

import dagster as dg

# ingest
LANDED_BATCH = dg.AssetKey("landed_batch")
VALIDATED_BATCH = dg.AssetKey("validated_batch")
FEEDBACK_BATCH = dg.AssetKey("feedback_batch")
TRAINING_DATA = dg.AssetKey("training_data")
# training
CANDIDATE_MODEL = dg.AssetKey("candidate_model")
# registry
MODEL_EVALUATION = dg.AssetKey("model_evaluation")
REGISTERED_MODEL = dg.AssetKey("registered_model")
# release
SCORING_IMAGE = dg.AssetKey("scoring_image")
QA_DEPLOYMENT = dg.AssetKey("qa_deployment")
PROD_DEPLOYMENT = dg.AssetKey("prod_deployment")
# monitoring
SCORING_LOGS = dg.AssetKey("scoring_logs")
DRIFT_REPORT = dg.AssetKey("drift_report")
# batch
BATCH_PREDICTIONS = dg.AssetKey("batch_predictions")

# The stage each asset runs in (its job's mlops/stage tag; a test checks they agree). A run of
# several stages' assets (the UI's asset graph) counts as the first of these it touches.
STAGE_OF: dict[dg.AssetKey, str] = {
    LANDED_BATCH: "ingest",
    VALIDATED_BATCH: "ingest",
    FEEDBACK_BATCH: "ingest",
    TRAINING_DATA: "training",
    CANDIDATE_MODEL: "training",
    MODEL_EVALUATION: "training",
    REGISTERED_MODEL: "training",
    SCORING_IMAGE: "release",
    QA_DEPLOYMENT: "release",
    PROD_DEPLOYMENT: "release",
    SCORING_LOGS: "monitoring",
    DRIFT_REPORT: "monitoring",
    BATCH_PREDICTIONS: "batch",
}
STAGE_PRECEDENCE = ("release", "training", "ingest", "monitoring", "batch")


def stage_of_selection(selection) -> str | None:
    """The stage a run of these assets counts as: the first in STAGE_PRECEDENCE it touches."""
    touched = {STAGE_OF.get(key) for key in selection}
    return next((stage for stage in STAGE_PRECEDENCE if stage in touched), None)
