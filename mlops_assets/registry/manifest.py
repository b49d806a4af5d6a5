"""The release manifest: what the scoring service needs to know, and verify, about a model."""

from __future__ import annotations

from typing import Any

from mlops_assets.serving.artifact import MANIFEST_NAME

__all__ = ["MANIFEST_NAME", "build_manifest"]


def build_manifest(
    model_name: str,
    version: int,
    artifact_name: str,
    sha256: str,
    features: list[str],
    candidate: dict[str, Any],
) -> dict[str, Any]:
    return {
        "model_name": model_name,
        "version": version,
        "artifact": artifact_name,
        "sha256": sha256,
        "features": features,
        "training_data_version": candidate["data_version"],
        "fingerprint": candidate["fingerprint"],
        "metrics": {name: candidate[name] for name in ("mse", "rmse", "r2", "mae")},
    }
