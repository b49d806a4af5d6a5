"""Registered versions for release tests, made as registered_model makes them (real MLflow)."""

import skops.io as sio

from mlops_assets.model.artifact import sha256_hex
from mlops_assets.model.smoke import smoke_block
from mlops_assets.registry.manifest import build_manifest
from mlops_assets_tests.projects import DIABETES, FEATURES, diabetes_frame, fit_diabetes, split_seed


def register(
    defs,
    alpha: float,
    tamper: bool = False,
    manifest_version: int | None = None,
    smoke: dict | None = None,
    without_smoke: bool = False,
) -> int:
    """A real registration in the MLflow registry, as registered_model makes it: the smoke block is
    the held-back rows and this model's predictions unless ``smoke`` says otherwise."""
    models = defs.resources["registry"].get_registry()
    first, held_back = split_seed(diabetes_frame())
    model = fit_diabetes(first, alpha)
    artifact = sio.dumps(model)
    sha = sha256_hex(artifact)
    tags = {"fingerprint": f"fp-{alpha}", "artifact_sha256": "0" * 64 if tamper else sha}
    version = models.register(artifact, "model.skops", tags, {"mse": 1.0}).version
    candidate = {
        "data_version": "d",
        "fingerprint": tags["fingerprint"],
        "metric_names": "mse,rmse,mae,r2",
        "mse": 1.0,
        "rmse": 1.0,
        "mae": 1.0,
        "r2": 0.5,
        "spec_digest": DIABETES.spec_digest,
        "model_code_digest": DIABETES.code_digest,
    }
    if smoke is None and not without_smoke:
        smoke = smoke_block(model, held_back, FEATURES)
    models.write_manifest(
        version,
        build_manifest(
            models.model_name,
            manifest_version or version,
            "model.skops",
            sha,
            DIABETES,
            candidate,
            smoke=smoke,
        ),
    )
    return version
