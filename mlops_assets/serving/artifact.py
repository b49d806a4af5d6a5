"""A released model as the scoring code sees it: found, verified, loaded safely, and scored.

Standard library, numpy, skops (and pandas for a model that takes named columns): the project's
service, ``score.py`` in Azure ML's own server and the release smoke tests all use it, and none
of them talks to the registry. What a request may hold is ``features.py``'s.
"""

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    from mlops_assets.serving.features import (
        MAX_ABS_VALUE,
        NUMBER_KINDS,
        PayloadError,
        Rows,
        ServingSpec,
        probe_rows,
        rows_from_payload,
    )
except ImportError:  # deployed as a folder (Azure ML code configuration): features.py sits beside
    from features import (
        MAX_ABS_VALUE,
        NUMBER_KINDS,
        PayloadError,
        Rows,
        ServingSpec,
        probe_rows,
        rows_from_payload,
    )

MANIFEST_NAME = "manifest.json"
MANIFEST_KEYS = ("model_name", "version", "artifact", "sha256", "features")


class ArtifactError(ValueError):
    """The artifact is not the one the manifest names, or holds types we do not trust."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_verified_model(
    data: bytes, expected_sha256: str, source: str = "model artifact", trusted: Iterable[str] = ()
) -> Any:
    """The artifact, if its sha256 matches and it holds only types skops trusts by default (numpy,
    scikit-learn's estimators) or that ``trusted`` lists (the model project's spec)."""
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise ArtifactError(f"{source}: sha256 {actual} does not match the expected {expected_sha256}")
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(data=data))
    unknown = untrusted - set(trusted)
    if unknown:
        raise ArtifactError(f"{source}: refusing to load untrusted types {sorted(unknown)}")
    return sio.loads(data, trusted=sorted(untrusted))


def find_manifest(root: str | os.PathLike) -> Path:
    """The one manifest.json under ``root``, searching subfolders as Azure ML mounts models."""
    root = Path(root)
    found = sorted(
        Path(folder) / MANIFEST_NAME
        for folder, _, files in os.walk(root, followlinks=True)
        if MANIFEST_NAME in files
    )
    if not found:
        raise ArtifactError(f"{root}: no {MANIFEST_NAME} in it or its subfolders")
    if len(found) > 1:
        raise ArtifactError(f"{root}: {len(found)} manifests ({', '.join(map(str, found))}); expected one")
    return found[0]


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    features: tuple[str, ...]
    sha256: str
    source: str
    model: Any
    predict: Callable[[np.ndarray], np.ndarray]
    fast_path: bool  # True when predict is the collapsed affine map, verified against the model
    bounded: bool = False  # True when no input within ±MAX_ABS_VALUE can make a prediction overflow
    spec: ServingSpec | None = None  # None: numbers only (a model folder without its project's spec)
    classes: tuple = ()  # a classifier's labels, in predict_proba's column order
    labels_from_proba: bool = False  # its label is always the likeliest class: one pass gives both
    additive: Callable | None = None  # its probabilities as a sum per feature (additive_classifier)
    serving_spec: ServingSpec = field(init=False, repr=False)  # the spec, or numbers only: built once
    version_header: bytes = field(init=False, repr=False)  # the X-Model-Version value, encoded once

    def __post_init__(self) -> None:
        object.__setattr__(self, "serving_spec", self.spec or ServingSpec.numbers_only(self.features))
        object.__setattr__(self, "version_header", self.version.encode())


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


def load_release(model_dir: str | os.PathLike, spec: ServingSpec | None = None) -> LoadedModel:
    """Find the manifest, verify the artifact's sha256 against it, then load it with skops,
    trusting beyond skops' defaults only the types the project's ``spec`` lists."""
    manifest_path = find_manifest(model_dir)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise ArtifactError(f"{manifest_path}: manifest lacks {', '.join(missing)}")
    artifact_path = manifest_path.parent / manifest["artifact"]
    if not artifact_path.is_file():
        raise ArtifactError(f"{artifact_path}: the artifact the manifest names is missing")
    return loaded_model(manifest, artifact_path.read_bytes(), str(artifact_path), spec)


def loaded_model(
    manifest: dict[str, Any], artifact: bytes, source: str, spec: ServingSpec | None = None
) -> LoadedModel:
    """The artifact verified against its manifest and loaded, with the fastest equal predictor."""
    features = tuple(manifest["features"])
    if spec is not None and spec.names != features:
        raise ArtifactError(
            f"{source}: the manifest's features {list(features)} are not the spec's {list(spec.names)}"
        )
    trusted = spec.trusted_types if spec is not None else ()
    model = load_verified_model(artifact, manifest["sha256"], source, trusted)
    names = getattr(model, "feature_names_in_", None)
    if names is not None and tuple(names) != features:
        raise ArtifactError(f"{source}: fitted on columns {list(names)}, the manifest says {list(features)}")
    # Rows arrive in the manifest's order, which is the order the model was fitted on (checked
    # above): scikit-learn's per-call warning about unnamed columns says nothing here.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    serving_spec = spec or ServingSpec.numbers_only(features)
    numbers_regression = serving_spec.all_numbers and serving_spec.task == "regression"
    fast = affine_predictor(model, len(features)) if numbers_regression else None
    likeliest = serving_spec.task != "regression" and labels_are_likeliest(model, serving_spec)
    return LoadedModel(
        name=str(manifest["model_name"]),
        version=str(manifest["version"]),
        features=features,
        sha256=manifest["sha256"],
        source=source,
        model=model,
        predict=fast or model.predict,
        fast_path=fast is not None,
        bounded=bool(getattr(fast, "bounded", False)),
        spec=spec,
        classes=tuple(getattr(model, "classes_", ())) if hasattr(model, "predict_proba") else (),
        labels_from_proba=likeliest,
        additive=additive_classifier(model, serving_spec) if likeliest else None,
    )


def predict_checked(model: LoadedModel, rows: np.ndarray) -> np.ndarray:
    """Predictions, all finite: extreme (if finite) inputs can overflow a linear model's output."""
    predictions = model.predict(rows)
    if model.bounded or predictions.dtype.kind not in "fc":
        return predictions
    finite = np.isfinite(predictions)
    if not finite.all():
        index = int(np.argmin(finite))
        raise PayloadError(
            422, f"row {index}: the values are too extreme to score (the prediction overflows)"
        )
    return predictions


def _label(value: Any, target_kind: str) -> Any:
    if target_kind == "boolean":
        return bool(value)
    if target_kind == "integer":
        return int(value)
    if target_kind == "categorical":
        return str(value)
    return float(value)


def json_key(label: Any) -> str:
    """A class label as a JSON object key: booleans as JSON writes them."""
    return ("true" if label else "false") if isinstance(label, bool) else str(label)


def score_rows(model: LoadedModel, rows: Rows) -> dict[str, Any]:
    """``{"result": [...]}``: a regressor's numbers, a classifier's labels (as the target's kind:
    true/false, whole numbers, text) and, when the model has them, ``"probabilities"``: one
    object per row, class label to probability."""
    spec = model.serving_spec
    if spec.task == "regression":
        return {"result": predict_checked(model, rows.values)}
    columns = rows.columns if model.additive and not rows.flags else None
    found = model.additive(columns) if columns else None
    labels, probabilities = found or classify(model, rows.values)
    result: dict[str, Any] = {"result": [_label(v, spec.target_kind) for v in labels.tolist()]}
    if probabilities is not None:
        keys = [json_key(_label(c, spec.target_kind)) for c in model.classes]
        result["probabilities"] = [dict(zip(keys, row, strict=True)) for row in probabilities.tolist()]
    return result


def classify(model: LoadedModel, rows: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A classifier's labels and, when it has them, its class probabilities: one pass through the
    model when its label is the likeliest class (``labels_are_likeliest``, checked at load)."""
    if model.labels_from_proba:
        probabilities = np.asarray(model.model.predict_proba(rows))
        return np.asarray(model.model.classes_)[probabilities.argmax(axis=1)], probabilities
    labels = np.asarray(model.model.predict(rows))
    return labels, (np.asarray(model.model.predict_proba(rows)) if model.classes else None)
