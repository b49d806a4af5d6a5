"""Registered versions for release tests, made as registered_model makes them (real MLflow)."""

import skops.io as sio

from mlops_assets.ingest.seed import diabetes_frame, split_seed
from mlops_assets.registry.manifest import build_manifest
from mlops_assets.serving.artifact import sha256_hex
from mlops_assets.training import train


def register(
    defs, alpha: float, tamper: bool = False, manifest_version: int | None = None, smoke: dict | None = None
) -> int:
    """A real registration in the MLflow registry, as registered_model makes it."""
    models = defs.resources["registry"].get_registry()
    artifact = sio.dumps(train.fit(split_seed(diabetes_frame())[0], alpha))
    sha = sha256_hex(artifact)
    tags = {"fingerprint": f"fp-{alpha}", "artifact_sha256": "0" * 64 if tamper else sha}
    version = models.register(artifact, "model.skops", tags, {"mse": 1.0}).version
    candidate = {
        "data_version": "d",
        "fingerprint": tags["fingerprint"],
        "mse": 1.0,
        "rmse": 1.0,
        "r2": 0.5,
        "mae": 1.0,
    }
    models.write_manifest(
        version,
        build_manifest(
            models.model_name,
            manifest_version or version,
            "model.skops",
            sha,
            list(train.FEATURES),
            candidate,
            smoke=smoke,
        ),
    )
    return version
