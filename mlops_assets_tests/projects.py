"""The shipped model projects as tests use them: loaded once, with their seed data and a fit."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlops_assets.ingest.seed import split_seed
from mlops_assets.project.loader import ModelProject, load_project
from mlops_assets.project.locate import MODELS_DIR

__all__ = ["DIABETES", "FEATURES", "TARGET", "diabetes_frame", "fit_diabetes", "split_seed"]

DIABETES: ModelProject = load_project(MODELS_DIR / "diabetes")
FEATURES: list[str] = list(DIABETES.spec.feature_names)
TARGET: str = DIABETES.spec.target.name


def diabetes_frame() -> pd.DataFrame:
    return DIABETES.seed_frame()


def fit_diabetes(rows: pd.DataFrame, alpha: float = 0.5) -> Any:
    """The diabetes project's estimator fitted as the trainer fits it (named columns)."""
    module = DIABETES.model_module()
    return module.build_model({"alpha": alpha}).fit(rows[FEATURES], rows[TARGET].to_numpy())
