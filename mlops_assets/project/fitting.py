"""A project's model fitted as the trainer fits it: standalone (the trainer ships it to Azure ML
beside itself), imported by the project runner for ``project --build`` too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops_assets.project.code import MODEL_FILE, load_module, require_function


def as_model_input(frame: Any, categories: dict[str, list[str]] | None) -> Any:
    """``frame`` as the model takes it: each column of ``categories`` (the spec's
    ``native_categories``) as a pandas Categorical over exactly the spec's categories, whatever
    the rows hold, so training and serving agree on the codes (a value outside them is missing);
    the frame itself where there are none."""
    if not categories:
        return frame
    import pandas as pd

    frame = frame.copy()
    for name, allowed in categories.items():
        if name in frame.columns:
            frame[name] = pd.Categorical(frame[name].astype(object), categories=list(allowed))
    return frame


def fit(project_dir: Path, rows: Any, features: list[str], target: str, params: dict) -> Any:
    """The project's ``train(frame, params)`` if it has one, else ``build_model(params).fit``."""
    model_file = project_dir / MODEL_FILE
    module = load_module(project_dir, MODEL_FILE)
    if callable(getattr(module, "train", None)):
        return module.train(rows[[*features, target]].reset_index(drop=True), dict(params))
    require_function(module, model_file, "build_model")
    return module.build_model(dict(params)).fit(rows[features], rows[target].to_numpy())
