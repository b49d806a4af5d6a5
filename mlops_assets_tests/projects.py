"""The shipped model projects as tests use them: loaded once, with their seed data and a fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio

from mlops_assets.ingest.seed import split_seed
from mlops_assets.ingest.validation import parse_batch, typed_frame
from mlops_assets.model.artifact import sha256_hex
from mlops_assets.project.loader import ModelProject, load_project
from mlops_assets.project.locate import MODELS_DIR

__all__ = [
    "CHURN",
    "CHURN_ROWS",
    "CUSTOM_TRANSFORMER",
    "DIABETES",
    "FEATURES",
    "TARGET",
    "custom_transformer_project",
    "diabetes_frame",
    "fit_diabetes",
    "fit_project",
    "split_seed",
    "typed_rows",
    "typed_seed",
    "write_project_release",
]

DIABETES: ModelProject = load_project(MODELS_DIR / "diabetes")
FEATURES: list[str] = list(DIABETES.spec.feature_names)
TARGET: str = DIABETES.spec.target.name


def diabetes_frame() -> pd.DataFrame:
    return DIABETES.seed_frame()


def fit_diabetes(rows: pd.DataFrame, alpha: float = 0.5) -> Any:
    """The diabetes project's estimator fitted as the trainer fits it (named columns)."""
    module = DIABETES.model_module()
    return module.build_model({"alpha": alpha}).fit(rows[FEATURES], rows[TARGET].to_numpy())


CHURN: ModelProject = load_project(MODELS_DIR / "churn")
# Two churn requests by name: every feature kind, a null in the nullable one.
CHURN_ROWS = [
    {
        "plan": "basic",
        "region": "north",
        "tenure_months": 3,
        "monthly_charge": 21.5,
        "support_calls": 4,
        "paperless": True,
    },
    {
        "plan": "premium",
        "region": "west",
        "tenure_months": 100,
        "monthly_charge": 80.0,
        "support_calls": None,
        "paperless": False,
    },
]


def typed_seed(project: ModelProject) -> pd.DataFrame:
    """The project's seed rows as training sees them: written to CSV, validated and typed."""
    raw = project.seed_frame().to_csv(index=False).encode()
    return typed_frame(parse_batch("seed.csv", raw), project.spec)


def fit_project(project: ModelProject, frame: pd.DataFrame) -> Any:
    features = list(project.spec.feature_names)
    model = project.model_module().build_model(dict(project.spec.params))
    return model.fit(frame[features], frame[project.spec.target.name].to_numpy())


def write_project_release(
    folder: Path, project: ModelProject, model: Any, version: int = 1
) -> tuple[bytes, dict]:
    """The release folder the pipeline writes (artifact + manifest); returns both."""
    artifact = sio.dumps(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.skops").write_bytes(artifact)
    manifest = {
        "model_name": project.spec.name,
        "version": version,
        "artifact": "model.skops",
        "sha256": sha256_hex(artifact),
        "features": list(project.spec.feature_names),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return artifact, manifest


def typed_rows(project: ModelProject, rows_by_name: list[dict]) -> pd.DataFrame:
    """Request rows (by name, JSON values) as the typed frame the model was fitted on."""
    frame = pd.DataFrame(rows_by_name, columns=list(project.spec.feature_names))
    for name, column in project.spec.features.items():
        if column.kind != "categorical":
            frame[name] = frame[name].map(lambda v: np.nan if v is None else float(v)).astype(np.float64)
    return frame


# A team's project with a class of its own: a transformer in a helper module that model.py
# imports, listed among the artifact's trusted types. Its artifact loads only where the package does.
CUSTOM_TRANSFORMER = "model_project.features.ClipToTrainingRange"
_FEATURES_MODULE = '''"""Feature engineering of the team's own: values clipped to the range seen in training."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class ClipToTrainingRange(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        values = np.asarray(X, dtype=float)
        self.low_, self.high_ = values.min(axis=0), values.max(axis=0)
        return self

    def transform(self, X):
        return np.clip(np.asarray(X, dtype=float), self.low_, self.high_)
'''
_MODEL_MODULE = '''"""Diabetes with clipping first: the transformer lives in features.py, a module of this package."""

from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from .features import ClipToTrainingRange


def build_model(params: dict) -> Pipeline:
    return make_pipeline(ClipToTrainingRange(), StandardScaler(), Ridge(alpha=float(params["alpha"])))
'''


def custom_transformer_project(folder: Path) -> Path:
    """The diabetes project copied to ``folder`` with a custom transformer in a helper module."""
    import shutil

    shutil.copytree(MODELS_DIR / "diabetes", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "features.py").write_text(_FEATURES_MODULE)
    (folder / "model.py").write_text(_MODEL_MODULE)
    spec = folder / "project.toml"
    spec.write_text(
        spec.read_text()
        .replace('name = "diabetes"', 'name = "clipped"')
        .replace("trusted_types = []", f'trusted_types = ["{CUSTOM_TRANSFORMER}"]')
    )
    return folder
