"""A released model as the scoring code sees it: found, verified, loaded with its fastest equal
predictor, and how it answers (``{"result": [...]}``, a classifier's ``"probabilities"``).

The project's service, ``score.py`` in Azure ML's own server, batch scoring and the release's
checks all use it, and none of them talks to the registry. What a request may hold is
``rows.py``'s.
"""

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops_assets.model.artifact import ArtifactError, load_verified_model
from mlops_assets.model.compiled import CompiledModel, compiled_model, first_difference
from mlops_assets.model.manifest import find_manifest, read_manifest
from mlops_assets.model.predictors import affine_predictor, labels_are_likeliest
from mlops_assets.model.rows import PayloadError, Rows, ServingSpec, rows_from_payload
from mlops_assets.project.package import PACKAGED_DIR, mount

# Where a release packages the version's project package (build context, AML code folder).
PACKAGED_PROJECT = Path(__file__).with_name(PACKAGED_DIR)


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
    compiled: CompiledModel | None = None  # its graph, checked at registration and at load
    serving_spec: ServingSpec = field(init=False, repr=False)  # the spec, or numbers only: built once
    version_header: bytes = field(init=False, repr=False)  # the X-Model-Version value, encoded once

    @property
    def answered_by(self) -> str:
        """What answers a plain request: the fastest of the predictors proven equal to the model."""
        if self.fast_path:
            return "affine map"
        if self.compiled is not None:
            return "onnx graph"
        return "the model"

    def __post_init__(self) -> None:
        object.__setattr__(self, "serving_spec", self.spec or ServingSpec.numbers_only(self.features))
        object.__setattr__(self, "version_header", self.version.encode())


def load_release(model_dir: str | os.PathLike, spec: ServingSpec | None = None) -> LoadedModel:
    """Find the manifest, verify the artifact's sha256 against it, then load it with skops,
    trusting beyond skops' defaults only the types the project's ``spec`` lists; with the project
    package the release packaged mounted first (the artifact's classes may be the project's)."""
    if PACKAGED_PROJECT.is_dir():
        mount(PACKAGED_PROJECT)
    manifest_path = find_manifest(model_dir)
    manifest = read_manifest(manifest_path)
    artifact_path = manifest_path.parent / manifest["artifact"]
    if not artifact_path.is_file():
        raise ArtifactError(f"{artifact_path}: the artifact the manifest names is missing")
    graph = None
    graph_file = manifest.get("compiled", {}).get("file")
    if graph_file:
        graph_path = manifest_path.parent / graph_file
        if not graph_path.is_file():
            raise ArtifactError(f"{graph_path}: the compiled graph the manifest names is missing")
        graph = graph_path.read_bytes()
    return loaded_model(manifest, artifact_path.read_bytes(), str(artifact_path), spec, graph)


def loaded_model(
    manifest: dict[str, Any],
    artifact: bytes,
    source: str,
    spec: ServingSpec | None = None,
    graph: bytes | None = None,
) -> LoadedModel:
    """The artifact verified against its manifest and loaded, with the fastest equal predictor;
    ``graph``: the compiled graph the manifest names, verified against its sha256 and checked on
    the manifest's smoke rows (a tampered or wrong graph is refused, naming it)."""
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
    compiled = _checked_graph(manifest, graph, serving_spec, source) if graph is not None else None
    return LoadedModel(
        name=str(manifest["model_name"]),
        version=str(manifest["version"]),
        features=features,
        sha256=manifest["sha256"],
        source=source,
        model=model,
        predict=fast or (compiled.predict if compiled is not None else model.predict),
        fast_path=fast is not None,
        bounded=bool(getattr(fast, "bounded", False)),
        spec=spec,
        classes=tuple(getattr(model, "classes_", ())) if hasattr(model, "predict_proba") else (),
        labels_from_proba=likeliest,
        compiled=compiled,
    )


def _checked_graph(manifest: dict[str, Any], graph: bytes, spec: ServingSpec, source: str) -> CompiledModel:
    """The graph, verified against the manifest's sha256, answering the manifest's smoke rows as
    the model did at registration (within the stated tolerance): a graph that does not is refused."""
    where = f"{source}: the compiled graph"
    categorical = [f.kind == "categorical" for f in spec.features]
    compiled = compiled_model(graph, manifest["compiled"], spec.names, categorical, where)
    smoke = manifest.get("smoke")
    if smoke:
        rows = rows_from_payload({"data": smoke["rows"]}, spec, len(smoke["rows"]))
        if spec.task == "regression":
            expected, found = (smoke["predictions"],), (compiled.predict(rows.values),)
        else:
            expected, found = (smoke["predictions"], None), (compiled.classify(rows.values)[0], None)
        differs = first_difference(spec.task, expected, found)
        if differs is not None:
            raise ArtifactError(
                f"{where} does not answer the manifest's smoke row {differs[0]} as the model did: {differs[1]}"
            )
    return compiled


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
    # The graph takes the rows as they are; the model may need a frame built from them.
    given = rows.cheapest if model.compiled is not None and not model.fast_path else rows.values
    if spec.task == "regression":
        return {"result": predict_checked(model, given)}
    labels, probabilities = classify(model, given)
    result: dict[str, Any] = {"result": [_label(v, spec.target_kind) for v in labels.tolist()]}
    if probabilities is not None:
        keys = [json_key(_label(c, spec.target_kind)) for c in model.classes]
        rows = probabilities.tolist()
        if len(keys) == 2:  # binary: a dict display per row, a sixth of dict(zip()) on 100 rows
            first, second = keys
            result["probabilities"] = [{first: p, second: q} for p, q in rows]
        else:
            result["probabilities"] = [dict(zip(keys, row, strict=True)) for row in rows]
    return result


def classify(model: LoadedModel, rows: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A classifier's labels and, when it has them, its class probabilities: one pass through the
    model when its label is the likeliest class (``labels_are_likeliest``, checked at load), or
    its compiled graph."""
    if model.compiled is not None:
        labels, probabilities = model.compiled.classify(rows)
        return labels, (probabilities if model.classes else None)
    if model.labels_from_proba:
        probabilities = np.asarray(model.model.predict_proba(rows))
        return np.asarray(model.model.classes_)[probabilities.argmax(axis=1)], probabilities
    labels = np.asarray(model.model.predict(rows))
    return labels, (np.asarray(model.model.predict_proba(rows)) if model.classes else None)
