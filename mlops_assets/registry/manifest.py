"""The release manifest: what the scoring service needs to know, and verify, about a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.project.loader import ModelProject
from mlops_assets.serving.artifact import MANIFEST_NAME
from mlops_assets.training.assets import reported_metrics

__all__ = ["MANIFEST_NAME", "build_manifest", "smoke_block"]
SMOKE_ROWS = 3


def build_manifest(
    model_name: str,
    version: int,
    artifact_name: str,
    sha256: str,
    project: ModelProject,
    candidate: dict[str, Any],
    smoke: dict[str, list] | None = None,
) -> dict[str, Any]:
    spec = project.spec
    manifest = {
        "model_name": model_name,
        "version": version,
        "artifact": artifact_name,
        "sha256": sha256,
        "features": list(spec.feature_names),
        "target": spec.target.name,
        "task": spec.task,
        "project": {
            "name": spec.name,
            "spec_version": spec.version,
            "spec_digest": candidate["spec_digest"],
            "model_code_digest": candidate["model_code_digest"],
        },
        "training_data_version": candidate["data_version"],
        "fingerprint": candidate["fingerprint"],
        "primary_metric": spec.evaluation.primary_metric,
        "metrics": reported_metrics(candidate),
    }
    if smoke is not None:
        manifest["smoke"] = smoke
    return manifest


def smoke_block(model: Any, rows: pd.DataFrame, features: Sequence[str]) -> dict[str, list]:
    """A few rows and the registered model's own predictions for them: what every deployment of
    this version must answer (releases check it, never trusting the deployed copy to say)."""
    sample = rows[list(features)].head(SMOKE_ROWS)
    predictions = np.asarray(model.predict(sample))
    values = sample.astype(object).where(sample.notna(), None).to_numpy().tolist()
    return {"rows": values, "predictions": predictions.tolist()}
