"""Faster predictors read off a fitted model, each kept only if proven equal to the model at load.

An affine map for a regressor that is one, sums per feature for an additive classifier, and for a
classifier whose label is its likeliest class, one pass through the model. Each is read off the
model itself (black-box: its answers to rows the spec allows), never from its class or attributes,
and checked on random rows the spec allows; a model that cannot be read so is asked as it is. Add
a predictor here, with the same proof, and choose it in ``loaded.loaded_model``.
"""

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mlops_assets.model.rows import ServingSpec, probe_rows, rows_from_payload
from mlops_assets.project.rules import MAX_ABS_VALUE, NUMBER_KINDS


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


def additive_classifier(model: Any, spec: ServingSpec, probes: int = 257) -> Callable | None:
    """A classifier whose log-odds against its first class are a sum of one term per feature (a
    logistic regression over scaled numbers, one-hot categories and imputed nulls, say) scores as
    a few numpy sums and a table look-up per category: the same probabilities without
    scikit-learn's per-call validation and column indexing (milliseconds a row for a small
    pipeline of column encoders). Each term is read off the model by changing that feature alone
    in one row, whatever the model is made of; the sum is kept only if it then gives the model's
    probabilities on ``probes`` random rows the spec allows (nulls included) and with each number
    at its extremes, else None: a model that cannot be read this way is asked, never refused.

    The scorer takes ``Rows.columns`` and answers (labels, probabilities), or None for a value it
    holds no term for (a category flagged as unknown): that request asks the model."""
    if spec.task == "regression" or not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        return None
    base, variants = _one_change_rows(spec)
    if base is None:
        return None
    try:
        odds = _log_odds(model, spec, [base, *(_changed(base, j, v) for j, v in variants)])
    except (ValueError, TypeError):
        return None
    if not np.isfinite(odds).all():
        return None
    origin, deltas = odds[0], odds[1:] - odds[0]
    zero = np.zeros_like(origin)
    numbers: list[int] = []  # features whose term is slope * (value - at), or a constant for null
    at, slopes, nulls = [], [], []
    tables: list[tuple[int, dict, np.ndarray]] = []  # categories: value -> row of the term matrix
    for j, feature in enumerate(spec.features):
        read = {v: deltas[i] for i, (k, v) in enumerate(variants) if k == j}
        if feature.kind == "categorical":
            terms = {base[j]: zero, **read}
            tables.append((j, {v: i for i, v in enumerate(terms)}, np.array(list(terms.values()))))
            continue
        other = next((v for v in read if v is not None), None)
        numbers.append(j)
        at.append(float(base[j]))
        slopes.append(zero if other is None else read[other] / (float(other) - float(base[j])))
        nulls.append(read.get(None, zero))
    at_ = np.array(at)
    slopes_, nulls_ = (np.array(terms).reshape(-1, len(zero)) for terms in (slopes, nulls))
    offset = origin - at_ @ slopes_
    classes = np.asarray(model.classes_)

    def score(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        matrix = np.column_stack([columns[j] for j in numbers]) if numbers else np.zeros((len(columns[0]), 0))
        missing = np.isnan(matrix)
        if missing.any():  # a null's term is its own: the value the model imputes is read off too
            sums = offset + np.where(missing, at_, matrix) @ slopes_ + missing @ nulls_
        else:
            sums = offset + matrix @ slopes_
        for j, index, terms in tables:
            try:
                sums += terms[[index[value] for value in columns[j].tolist()]]
            except KeyError:
                return None
        logits = np.hstack([np.zeros((len(sums), 1)), sums])
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        probabilities = weights / weights.sum(axis=1, keepdims=True)
        return classes[probabilities.argmax(axis=1)], probabilities

    # Random rows, and each number at its extremes (a split far out would show there).
    extremes = [
        _changed(base, j, bound)
        for j, f in enumerate(spec.features)
        if f.kind in NUMBER_KINDS
        for bound in ((math.ceil(f.low), math.floor(f.high)) if f.kind == "integer" else (f.low, f.high))
    ]
    data = [*probe_rows(spec, probes), *extremes]
    try:
        rows = rows_from_payload({"data": data}, spec, len(data))
        found = score(rows.columns) if rows.columns is not None else None
        expected = None if found is None else np.asarray(model.predict_proba(rows.values), dtype=np.float64)
    except (ValueError, TypeError):  # a row the model takes differently: it is asked as it is
        return None
    if found is None or found[1].shape != expected.shape:
        return None
    return score if np.allclose(found[1], expected, rtol=1e-9, atol=1e-12) else None


def _one_change_rows(spec: ServingSpec) -> tuple[list | None, list[tuple[int, Any]]]:
    """A row the spec allows, and each (feature, value) that changes one feature of it: a second
    number, true, every other category, null where the feature takes it."""
    base: list = []
    variants: list[tuple[int, Any]] = []
    for j, f in enumerate(spec.features):
        if f.kind == "categorical":
            if not f.categories:
                return None, []
            base.append(f.categories[0])
            variants += [(j, c) for c in f.categories[1:]]
        elif f.kind == "boolean":
            base.append(False)
            variants.append((j, True))
        else:
            at = min(max(0.0, f.low), f.high)
            at = float(math.ceil(at)) if f.kind == "integer" else at
            other = at + 1 if at + 1 <= f.high else at - 1
            base.append(at)
            if other >= f.low:
                variants.append((j, other))
        if f.nullable:
            variants.append((j, None))
    return base, variants


def _changed(row: list, index: int, value: Any) -> list:
    changed = list(row)
    changed[index] = value
    return changed


def _log_odds(model: Any, spec: ServingSpec, data: list[list]) -> np.ndarray:
    """log P(class k) - log P(first class), k = 1.., for each row."""
    values = rows_from_payload({"data": data}, spec, len(data)).values
    with np.errstate(divide="ignore", invalid="ignore"):  # a class never given: not additive
        logs = np.log(np.asarray(model.predict_proba(values), dtype=np.float64))
        return logs[:, 1:] - logs[:, :1]
