"""The release manifest: what the scoring service needs to know, and verify, about a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.serving.artifact import MANIFEST_NAME

__all__ = ["MANIFEST_NAME", "build_manifest", "smoke_block"]
SMOKE_ROWS = 3


def build_manifest(
    model_name: str,
    version: int,
    artifact_name: str,
    sha256: str,
    features: list[str],
    candidate: dict[str, Any],
    smoke: dict[str, list] | None = None,
) -> dict[str, Any]:
    manifest = {
        "model_name": model_name,
        "version": version,
        "artifact": artifact_name,
        "sha256": sha256,
        "features": features,
        "training_data_version": candidate["data_version"],
        "fingerprint": candidate["fingerprint"],
        "metrics": {name: candidate[name] for name in ("mse", "rmse", "r2", "mae")},
    }
    if smoke is not None:
        manifest["smoke"] = smoke
    return manifest


def smoke_block(model: Any, rows: pd.DataFrame, features: Sequence[str]) -> dict[str, list]:
    """A few rows and the registered model's own predictions for them: what every deployment of
    this version must answer (releases check it, never trusting the deployed copy to say)."""
    sample = rows[list(features)].head(SMOKE_ROWS).to_numpy(dtype=float)
    return {"rows": sample.tolist(), "predictions": np.asarray(model.predict(sample), dtype=float).tolist()}
