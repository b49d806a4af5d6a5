"""The release manifest: what the scoring service needs to know, and verify, about a model."""

from __future__ import annotations

from typing import Any

from mlops_assets.model.manifest import MANIFEST_NAME
from mlops_assets.project.loader import ModelProject
from mlops_assets.project.package import MANIFEST_KEY, manifest_block
from mlops_assets.training.assets import reported_metrics

__all__ = ["MANIFEST_NAME", "build_manifest"]


def build_manifest(
    model_name: str,
    version: int,
    artifact_name: str,
    sha256: str,
    project: ModelProject,
    candidate: dict[str, Any],
    smoke: dict[str, list] | None = None,
    sources: dict[str, str] | None = None,
    compiled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``sources``: the project package the candidate was trained with (ModelProject.sources);
    ``compiled``: the version's graph (``model/compiled.py``: its file, sha256 and how it is fed)
    or why it has none."""
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
        # What a request may hold and the artifact's trusted types, as this version was trained:
        # every release of it packages these, whatever the project's spec says by then.
        "serving_spec": spec.serving_dict(),
    }
    if sources is not None:
        # Its code, every module: a release, a restore and batch scoring load the version with the
        # classes it was trained with, whatever the project's folder holds by then.
        manifest[MANIFEST_KEY] = manifest_block(sources)
    if smoke is not None:
        manifest["smoke"] = smoke
    if compiled is not None:
        manifest["compiled"] = compiled
    return manifest
