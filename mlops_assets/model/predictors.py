"""Faster predictors read off a fitted model, each kept only if proven equal to the model at load.

An affine map for a regressor that is one (four to five times faster than its compiled graph:
``bench/predictors.py``), and for a classifier whose label is its likeliest class, one pass
through the model. Each is read off the model itself (black-box: its answers to rows the spec
allows), never from its class or attributes, and checked on random rows the spec allows; a model
that cannot be read so is answered by its compiled graph (``compiled.py``) or asked as it is. A
reading belongs here only where it measures clearly faster than the graph on the same model.
"""

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mlops_assets.model.rows import ServingSpec, probe_rows, rows_from_payload
from mlops_assets.project.rules import MAX_ABS_VALUE


def affine_predictor(model: Any, n_features: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """A regressor that is one affine map (scalers into a linear model, say) scores as X @ w + b:
    the same numbers for a fraction of scikit-learn's per-call validation cost. The map is read off
    the model itself (its output at 0 and at each unit vector), whatever it is made of, and returned
    only if it then agrees with ``model.predict`` on random points: anything else gets None."""
    from sklearn.base import is_regressor

    if not is_regressor(model) or hasattr(model, "predict_proba"):
        return None
    # A model fitted on named columns warns when given a bare matrix; its names are the manifest's.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        try:
            corners = np.vstack([np.zeros(n_features), np.eye(n_features)])
            basis = np.asarray(model.predict(corners), dtype=np.float64)
        except (ValueError, TypeError):  # it needs named columns, or another number of them
            return None
        if basis.shape != (n_features + 1,):
            return None
        bias, weights = float(basis[0]), basis[1:] - basis[0]

        def predict(rows: np.ndarray) -> np.ndarray:
            return rows @ weights + bias

        predict.bounded = bool(np.isfinite(MAX_ABS_VALUE * np.abs(weights).sum() + abs(bias)))
        rng = np.random.default_rng(0)
        probe = rng.normal(scale=rng.choice([1.0, 1e2, 1e4], size=n_features), size=(257, n_features))
        expected = np.asarray(model.predict(probe), dtype=np.float64)
    scale = float(np.abs(expected).max()) or 1.0
    if not np.allclose(predict(probe), expected, rtol=1e-9, atol=1e-9 * scale):
        return None
    return predict


def labels_are_likeliest(model: Any, spec: ServingSpec, probes: int = 257) -> bool:
    """True when a classifier's ``predict`` answers the class its ``predict_proba`` rates likeliest
    (so one pass through the model gives both), checked on random rows the spec allows. Most of
    scikit-learn's classifiers predict that way; one calibrated or thresholded apart does not."""
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        return False
    rows = rows_from_payload({"data": probe_rows(spec, probes)}, spec, probes).values
    try:
        predicted = np.asarray(model.predict(rows))
        likeliest = np.asarray(model.classes_)[np.asarray(model.predict_proba(rows)).argmax(axis=1)]
    except (ValueError, TypeError):
        return False
    return predicted.shape == likeliest.shape and bool((predicted == likeliest).all())
