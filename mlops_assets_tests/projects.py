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


# A new user's first real model, made from `mlops-assets init --task binary` one file at a time as
# README's "Bring your own model, from zero" says: boosted trees (HistGradientBoosting) behind a
# ColumnTransformer, a transformer of the team's own in a helper module, and sample data kept in a
# file of the folder that seed.py reads with pathlib. Its artifact holds types skops does not trust
# by default (the transformer, scikit-learn's TreePredictor): the project's own test names them.
TREE_TYPES = (
    "model_project.transforms.CapAmount",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
_TREE_TRANSFORMS = '''"""The team's own step: amounts capped at a fixed ceiling (outliers are data-entry mistakes)."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class CapAmount(TransformerMixin, BaseEstimator):
    def __init__(self, ceiling: float = 2000.0):
        self.ceiling = ceiling

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        capped = X.copy()
        capped["amount"] = np.minimum(capped["amount"], self.ceiling)
        return capped
'''
_TREE_MODEL = '''"""Boosted trees over the spec's columns: categories as ordinals, numbers as they are."""

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OrdinalEncoder

from .transforms import CapAmount

CATEGORIES = ["channel", "segment"]
NUMBERS = ["age_days", "amount", "visits", "member"]


def build_model(params: dict) -> Pipeline:
    columns = ColumnTransformer(
        [
            ("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), CATEGORIES),
            ("numbers", "passthrough", NUMBERS),
        ]
    )
    trees = HistGradientBoostingClassifier(
        max_iter=int(params["max_iter"]), learning_rate=float(params["learning_rate"]), random_state=0
    )
    return make_pipeline(CapAmount(), columns, trees)
'''
_TREE_SEED = '''"""The sample data: a file kept in this folder."""

from pathlib import Path

import pandas as pd

DATA = Path(__file__).parent / "data" / "sample.csv"


def seed_frame() -> pd.DataFrame:
    frame = pd.read_csv(DATA)
    frame["visits"] = frame["visits"].astype("Int64")  # not always recorded
    return frame
'''


def make_tree_project(folder: Path) -> None:
    """``folder`` (made by `init --task binary`) turned into the tree project above, its
    ``[artifact] trusted_types`` left as init wrote it."""
    seed = load_project(folder).seed_frame()
    (folder / "data").mkdir()
    seed.to_csv(folder / "data" / "sample.csv", index=False)
    (folder / "transforms.py").write_text(_TREE_TRANSFORMS)
    (folder / "model.py").write_text(_TREE_MODEL)
    (folder / "seed.py").write_text(_TREE_SEED)
    spec = folder / "project.toml"
    text = spec.read_text()
    params = text.split("[params]\n")[1].split("\n\n")[0]
    spec.write_text(text.replace(params, "max_iter = 60\nlearning_rate = 0.1"))
